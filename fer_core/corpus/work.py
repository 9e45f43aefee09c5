"""The per-file step of a corpus job, the same for every engine: hash the file, skip it if its result is
already there, else run the recognizer on it and write its rows as one Parquet part, atomically.

Layout of ``OUT_DIR`` (see docs/corpus.md):

* ``faces/<key>.parquet``: the rows of one input file (none for a file without a face or that failed);
* ``done/<key>.json``: the completion marker of that file (rows, frames, error), written after its part,
  so a file is complete exactly when its marker exists.

``key`` is ``<sha256 of the content, 24 hex>-<options hash, 12 hex>-<path hash, 16 hex>``: a rerun with
the same content, options and path finds the marker and skips the file; a file killed half-way has no
marker and is done again, its part replaced (same name), so no row is ever duplicated.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import InputError
from .inputs import file_sha256, media_kind, path_hash
from .schema import SCHEMA_VERSION, faces_schema

FACES_DIR, DONE_DIR = "faces", "done"
#: Fields of the record :func:`process_file` returns for each input (and the engines collect).
RECORD_SCHEMA: pa.Schema = pa.schema([
    ("path", pa.string()), ("sha256", pa.string()), ("key", pa.string()), ("media", pa.string()),
    ("status", pa.string()),  # "processed", "skipped" (complete from an earlier run) or "failed" (retried next run)
    ("rows", pa.int64()), ("frames", pa.int64()), ("error_type", pa.string()), ("reason", pa.string()),
    ("seconds", pa.float64()), ("worker", pa.string()), ("node", pa.string()), ("peak_rss_mb", pa.float64()),
])



def detection_options(recognizer: Any) -> dict[str, Any]:
    """The settings besides the model that decide which faces a recognizer finds, for :class:`JobOptions`:
    its backend, its detector's threshold, min_face_size (``None``: adaptive), verify, face_prob_threshold,
    trusted_score, max_side and backend, and :data:`fer_core.options.PHOTO_MIN_FACE_SIZE` (the still-photo
    size used when min_face_size is adaptive)."""
    from ..options import PHOTO_MIN_FACE_SIZE

    det = recognizer.detector
    return {"backend": recognizer.backend, "detector_backend": det.backend, "threshold": float(det.threshold),
            "min_face_size": det.min_face_size, "verify": bool(det.verify),
            "face_prob_threshold": float(det.face_prob_threshold), "trusted_score": float(det.trusted_score),
            "max_side": int(det.max_side), "photo_min_face_size": int(PHOTO_MIN_FACE_SIZE)}


@dataclass(frozen=True)
class JobOptions:
    """What a file's result depends on, besides its content.

    Attributes:
        model_id: ``None`` for the bundled model, else a Hub repo id or a local folder (as given).
        model: the model's name for the output (the recognizer's ``source``).
        revision: the Hub commit, or for a folder or the bundled model ``sha256:<hex>`` of its files.
        labels: the model's labels, in output order.
        sample_fps: videos: frames analysed per second (``None``: every frame).
        detect_every: videos: run the detector on every n-th analysed frame (1: every one).
        detection: the recognizer's backend and its detector's settings (threshold, min_face_size, verify,
            face_prob_threshold, trusted_score, max_side, detector backend) and
            :data:`fer_core.options.PHOTO_MIN_FACE_SIZE` (:func:`detection_options`).
        version: ``fer_core.__version__`` (the detection and verification rules change between releases).
    """

    model_id: str | None
    model: str
    revision: str
    labels: tuple[str, ...]
    sample_fps: float | None = None
    detect_every: int = 1
    detection: dict[str, Any] = field(default_factory=dict)
    version: str = ""

    @property
    def options_hash(self) -> str:
        """12 hex chars of SHA-256 over the schema version, model, revision, labels, video options, detection
        settings and library version: results made with other values never share a key or an OUT_DIR."""
        blob = json.dumps({"schema": SCHEMA_VERSION, "model": self.model, "revision": self.revision,
                           "labels": list(self.labels), "sample_fps": self.sample_fps,
                           "detect_every": self.detect_every, "detection": self.detection,
                           "version": self.version}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable fields, with ``options_hash``."""
        return {**asdict(self), "labels": list(self.labels), "options_hash": self.options_hash}


def part_key(sha256: str, options_hash: str, path: str | os.PathLike) -> str:
    """The name (without suffix) of a file's part and marker: ``<sha256[:24]>-<options_hash>-<path hash>``."""
    return f"{sha256[:24]}-{options_hash}-{path_hash(path)}"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a hidden temporary file beside ``path``, then rename it over ``path``: readers and
    a rerun see either nothing or the whole file, never a part of it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_part(table: pa.Table, path: Path) -> None:
    """Write ``table`` as one Parquet file at ``path``, atomically (temporary file + rename; temporary
    names start with ``.``, which ``pyarrow.dataset`` and pandas skip)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, MiB (``getrusage``: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _image_table(recognizer: Any, path: Path, sha: str, job: JobOptions) -> tuple[pa.Table, int]:
    from ..io import load_image

    faces = recognizer.predict(load_image(path))
    columns: dict[str, list] = {
        "path": [str(path)] * len(faces), "sha256": [sha] * len(faces), "media": ["image"] * len(faces),
        "frame": [0] * len(faces), "time_s": [0.0] * len(faces), "face_id": list(range(1, len(faces) + 1)),
        "x1": [f.box[0] for f in faces], "y1": [f.box[1] for f in faces],
        "x2": [f.box[2] for f in faces], "y2": [f.box[3] for f in faces],
        "score": [f.score for f in faces], "label": [f.label for f in faces],
    }
    for prefix in ("", "raw_"):
        for label in job.labels:
            columns[prefix + label] = [f.probs[label] for f in faces]
    columns |= {"model": [job.model] * len(faces), "revision": [job.revision] * len(faces)}
    return pa.Table.from_pydict(columns, schema=faces_schema(job.labels)), 1


def _video_table(recognizer: Any, path: Path, sha: str, job: JobOptions) -> tuple[pa.Table, int, str | None]:
    analysis = recognizer.analyze_video(path, sample_fps=job.sample_fps, detect_every=job.detect_every,
                                        progress=False)
    rows = list(analysis.rows)
    columns: dict[str, list] = {
        "path": [str(path)] * len(rows), "sha256": [sha] * len(rows), "media": ["video"] * len(rows),
        "frame": [r.frame for r in rows], "time_s": [r.time_s for r in rows], "face_id": [r.face_id for r in rows],
        "x1": [r.box[0] for r in rows], "y1": [r.box[1] for r in rows],
        "x2": [r.box[2] for r in rows], "y2": [r.box[3] for r in rows],
        "score": [r.score for r in rows], "label": [r.label for r in rows],
    }
    for i, label in enumerate(job.labels):
        columns[label] = [float(r.probs[i]) for r in rows]
    for i, label in enumerate(job.labels):
        columns["raw_" + label] = [float(r.raw_probs[i]) for r in rows]
    columns |= {"model": [job.model] * len(rows), "revision": [job.revision] * len(rows)}
    return pa.Table.from_pydict(columns, schema=faces_schema(job.labels)), len(analysis.frames), analysis.error


def process_file(recognizer: Any, path: str | os.PathLike, out_dir: str | os.PathLike, job: JobOptions
                 ) -> dict[str, Any]:
    """Do one input file of a corpus job, or skip it if a marker says it is complete.

    Args:
        recognizer: a loaded :class:`~fer_core.recognizer.EmotionRecognizer` (loaded once per process).
        path: the input file (absolute, as :func:`~fer_core.corpus.inputs.expand_inputs` gives it).
        out_dir: the job's output folder; ``faces/`` and ``done/`` must exist in it.
        job: the job's options (model, video options).

    Returns:
        A record with the fields of :data:`RECORD_SCHEMA`: ``status`` ``"processed"`` (rows written, marker
        written), ``"skipped"`` (marker found: the earlier run's record), or ``"failed"`` (the file could
        not be read, or an unexpected error: no marker, so the next run tries again). A bad image or video
        (:class:`~fer_core.errors.InputError`) is *processed*, with ``error_type`` and ``reason`` and no
        rows: its content will not get better on a rerun. A damaged video whose first frames decode keeps
        their rows and has ``error_type`` ``"PartialVideo"``. ``seconds`` is the file's processing time
        (wall, including hashing); ``peak_rss_mb`` this process's peak RSS so far.

    Never raises for a problem with the file itself; errors writing ``out_dir`` propagate.
    """
    start = time.perf_counter()
    path = Path(path)
    out = Path(out_dir)
    record: dict[str, Any] = {"path": str(path), "sha256": None, "key": None, "media": media_kind(path),
                              "status": "failed", "rows": 0, "frames": 0, "error_type": None, "reason": None,
                              "worker": f"{socket.gethostname()}:{os.getpid()}", "node": None}

    def done(**fields: Any) -> dict[str, Any]:
        record.update(fields)
        record["seconds"] = time.perf_counter() - start
        record["peak_rss_mb"] = peak_rss_mb()
        return record

    try:
        sha = file_sha256(path)
    except OSError as exc:
        return done(error_type=type(exc).__name__, reason=exc.strerror or str(exc))
    key = part_key(sha, job.options_hash, path)
    record |= {"sha256": sha, "key": key}
    marker = out / DONE_DIR / f"{key}.json"
    if marker.exists():
        try:
            saved = json.loads(marker.read_text())
            return done(**{k: saved.get(k) for k in ("rows", "frames", "error_type", "reason")}, status="skipped")
        except (OSError, ValueError):
            pass  # an unreadable marker: do the file again
    table, frames, error_type, reason = None, 0, None, None
    try:
        if record["media"] == "video":
            table, frames, partial = _video_table(recognizer, path, sha, job)
            if partial:
                error_type, reason = "PartialVideo", partial
        else:
            table, frames = _image_table(recognizer, path, sha, job)
    except InputError as exc:
        error_type, reason = type(exc).__name__, exc.reason
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop a corpus; retried on the next run
        return done(error_type=type(exc).__name__, reason=str(exc) or repr(exc))
    rows = 0 if table is None else table.num_rows
    part = out / FACES_DIR / f"{key}.parquet"
    if rows:
        write_part(table, part)
    elif part.exists():
        part.unlink()  # an older part of the same key (cannot normally happen: same content, same options)
    saved = {"path": str(path), "sha256": sha, "key": key, "media": record["media"], "rows": rows, "frames": frames,
             "error_type": error_type, "reason": reason}
    atomic_write_bytes(marker, json.dumps(saved).encode())
    return done(rows=rows, frames=frames, error_type=error_type, reason=reason, status="processed")

"""A whole corpus job: expand the inputs, pick and run an engine, then write ``errors.parquet`` and
``manifest.json``. The engines only differ in where :func:`~fer_core.corpus.work.process_file` runs."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..errors import InvalidArgumentError
from .inputs import expand_inputs
from .schema import ERRORS_SCHEMA, SCHEMA_VERSION
from .work import DONE_DIR, FACES_DIR, JobOptions, atomic_write_bytes, detection_options, write_part

ENGINES = ("auto", "local", "ray")
#: ``engine="auto"`` uses Ray from this many files on (when Ray is installed), or when a cluster address
#: is given (``address`` or ``RAY_ADDRESS``); below, the local engine (no cluster start-up cost).
AUTO_RAY_FILES: int = 1000
MANIFEST_NAME, ERRORS_NAME = "manifest.json", "errors.parquet"


def model_identity(recognizer: Any, model_id: str | os.PathLike | None) -> tuple[str, str]:
    """``(model, revision)`` naming the model in the output: its source (``"bundled default"``, a folder or a
    Hub id) and its Hub commit, or for a folder (and the bundled model) ``"sha256:<16 hex>"`` over its
    ``config.json``, ``model.onnx`` and ``model.safetensors``, so a changed model never reuses old results."""
    if recognizer.revision:
        return recognizer.source, recognizer.revision
    from ..recognizer import DEFAULT_MODEL_DIR

    folder = Path(getattr(recognizer.classifier, "folder", None) or (model_id or DEFAULT_MODEL_DIR))
    digest = hashlib.sha256()
    for name in ("config.json", "model.onnx", "model.safetensors"):
        if (folder / name).is_file():
            digest.update(name.encode())
            with open(folder / name, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    digest.update(chunk)
    return recognizer.source, f"sha256:{digest.hexdigest()[:16]}"


def _ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def choose_engine(engine: str, n_files: int, address: str | None) -> str:
    """``"local"`` or ``"ray"`` for ``engine`` (``"auto"``: see :data:`AUTO_RAY_FILES`).

    Raises:
        InvalidArgumentError: an unknown engine, or ``"ray"`` without Ray installed.
    """
    if engine not in ENGINES:
        raise InvalidArgumentError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "auto":
        wanted = bool(address or os.environ.get("RAY_ADDRESS")) or n_files >= AUTO_RAY_FILES
        return "ray" if wanted and _ray_available() else "local"
    if engine == "ray" and not _ray_available():
        raise InvalidArgumentError("engine 'ray' needs Ray: pip install 'fer-core[scale]'")
    return engine


def prepare_out_dir(out_dir: Path, job: JobOptions) -> None:
    """Create ``faces/`` and ``done/``, remove temporary files a killed run left, and refuse a folder that
    holds another job's results.

    Raises:
        InvalidArgumentError: ``out_dir/manifest.json`` has another options hash (model, revision, video
            options, detection settings, fer_core version or schema version), or is not a corpus manifest.
    """
    manifest = out_dir / MANIFEST_NAME
    if manifest.exists():
        try:
            previous = json.loads(manifest.read_text())["options"]["options_hash"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InvalidArgumentError(f"{manifest} is not a corpus manifest ({exc}); use another --out") from exc
        if previous != job.options_hash:
            raise InvalidArgumentError(f"{out_dir} holds results for other options (options hash {previous}, now "
                                       f"{job.options_hash}: model, revision, --sample-fps, --detect-every, "
                                       "detection settings or fer_core version differ); use another --out")
    for sub in (FACES_DIR, DONE_DIR):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
        for tmp in (out_dir / sub).glob(".*.tmp"):
            tmp.unlink(missing_ok=True)


def remove_stale(out_dir: Path, records: Sequence[dict[str, Any]], options_hash: str) -> int:
    """Remove the parts and markers of this job's paths under an older content hash (a file changed since
    an earlier run), so each path has one row set. Returns how many files were removed."""
    current = {r["key"].rsplit("-", 1)[1]: r["key"] for r in records if r.get("key")}
    removed = 0
    for sub, suffix in ((FACES_DIR, ".parquet"), (DONE_DIR, ".json")):
        for entry in os.scandir(out_dir / sub):
            name = entry.name
            if name.startswith(".") or not name.endswith(suffix):
                continue
            key = name[: -len(suffix)]
            parts = key.split("-")
            if len(parts) == 3 and parts[1] == options_hash and parts[2] in current and current[parts[2]] != key:
                os.unlink(entry.path)
                removed += 1
    return removed


def write_errors(path: Path, records: Sequence[dict[str, Any]]) -> int:
    """Write ``errors.parquet`` (:data:`~fer_core.corpus.schema.ERRORS_SCHEMA`, input order) atomically;
    returns its number of rows."""
    rows = [{k: r[k] for k in ERRORS_SCHEMA.names} for r in records if r.get("error_type")]
    write_part(pa.Table.from_pylist(rows, schema=ERRORS_SCHEMA), path)
    return len(rows)


def _counts(records: Sequence[dict[str, Any]]) -> dict[str, int]:
    status = [r["status"] for r in records]
    return {
        "files": len(records),
        "images": sum(r["media"] == "image" for r in records),
        "videos": sum(r["media"] == "video" for r in records),
        "processed": status.count("processed"),
        "skipped": status.count("skipped"),
        "failed": status.count("failed"),
        "errors": sum(bool(r.get("error_type")) for r in records),
        "rows": sum(int(r["rows"] or 0) for r in records),
        "rows_written": sum(int(r["rows"] or 0) for r in records if r["status"] == "processed"),
        "video_frames": sum(int(r["frames"] or 0) for r in records if r["media"] == "video"),
        "video_frames_processed": sum(int(r["frames"] or 0) for r in records
                                      if r["media"] == "video" and r["status"] == "processed"),
    }


def _workers(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for r in records:
        w = out.setdefault(r["worker"], {"node": r.get("node"), "files": 0, "processed": 0, "video_frames": 0,
                                         "seconds": 0.0, "peak_rss_mb": 0.0})
        w["files"] += 1
        w["processed"] += r["status"] == "processed"
        w["video_frames"] += int(r["frames"] or 0) if r["media"] == "video" and r["status"] == "processed" else 0
        w["seconds"] = round(w["seconds"] + float(r["seconds"] or 0.0), 3)
        w["peak_rss_mb"] = round(max(w["peak_rss_mb"], float(r["peak_rss_mb"] or 0.0)), 1)
    return out


def run_job(inputs: Sequence[str | os.PathLike], out_dir: str | os.PathLike, *, engine: str = "auto",
            address: str | None = None, workers: int = 2, batch_size: int = 8, cpus_per_worker: float = 1.0,
            sample_fps: float | None = None, detect_every: int = 1, model_id: str | None = None,
            revision: str | None = None, threads: int | None = None, progress: bool = True,
            recognizer: Any = None) -> dict[str, Any]:
    """Run a corpus job (``python -m fer_core.corpus``); see docs/corpus.md.

    Args:
        inputs: files, folders (recursive) and manifests (:func:`~fer_core.corpus.inputs.expand_inputs`).
        out_dir: the output folder (created); a rerun into it skips the files already complete.
        engine: ``"local"``, ``"ray"`` or ``"auto"`` (:func:`choose_engine`).
        address: Ray cluster address (``None``: ``RAY_ADDRESS``, else a local cluster).
        workers, batch_size, cpus_per_worker: the Ray actor pool (:func:`~fer_core.corpus.ray_engine.run_ray`).
        sample_fps: videos: analyse at most this many frames per second (``None``: every frame).
        detect_every: videos: detect faces on every n-th analysed frame only (>= 1).
        model_id, revision: the model (``None``: the bundled one) and its Hub revision.
        threads: local engine: ONNX Runtime threads (``None``: the library default).
        progress: progress bars.
        recognizer: local engine: an already loaded recognizer of ``model_id`` (tests, notebooks).

    Returns:
        The manifest written to ``out_dir/manifest.json``: ``inputs``, ``out_dir``, ``engine``, ``model``,
        ``options`` (:meth:`JobOptions.to_dict`), ``counts`` (files, images, videos, processed, skipped,
        failed, errors, rows, rows_written, video_frames, video_frames_processed), ``workers`` (per process:
        node, files, processed, video_frames processed, seconds, peak_rss_mb), ``wall_time_s``,
        ``started``/``finished`` (UTC ISO).

    Raises:
        InvalidArgumentError: bad options, an unreadable manifest, or ``out_dir`` holding another job's results.
        ModelLoadError: the model cannot be loaded.
    """
    from ..options import check_sample_fps

    started, wall = _dt.datetime.now(_dt.UTC), time.perf_counter()
    sample_fps = check_sample_fps(sample_fps) or None
    if not isinstance(detect_every, int) or detect_every < 1:
        raise InvalidArgumentError(f"detect_every must be an integer >= 1, got {detect_every!r}")
    out = Path(out_dir).absolute()
    paths = expand_inputs(inputs)
    engine = choose_engine(engine, len(paths), address)
    if recognizer is None:
        from ..recognizer import EmotionRecognizer

        recognizer = EmotionRecognizer.from_pretrained(model_id, revision=revision, threads=threads)
    from .. import __version__

    model, model_revision = model_identity(recognizer, model_id)
    job = JobOptions(model_id=None if model_id is None else str(model_id), model=model, revision=model_revision,
                     labels=tuple(recognizer.labels), sample_fps=sample_fps, detect_every=detect_every,
                     detection=detection_options(recognizer), version=__version__)
    prepare_out_dir(out, job)
    manifest: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "status": "running", "inputs": [str(i) for i in inputs],
        "out_dir": str(out), "engine": engine, "model": {"model": model, "revision": model_revision},
        "options": job.to_dict(), "started": started.isoformat(timespec="seconds"),
        "python": platform.python_version(),
    }
    if not (out / MANIFEST_NAME).exists():
        atomic_write_bytes(out / MANIFEST_NAME, json.dumps(manifest, indent=2).encode())
    if engine == "ray":
        import ray

        from .ray_engine import run_ray

        manifest |= {"ray": {"version": ray.__version__, "workers": workers, "batch_size": batch_size,
                             "cpus_per_worker": cpus_per_worker, "address": address or os.environ.get("RAY_ADDRESS")}}
        records = run_ray(paths, out, job, address=address, workers=workers, batch_size=batch_size,
                          cpus_per_worker=cpus_per_worker, progress=progress)
    else:
        from .local import run_local

        records = run_local(paths, out, job, recognizer=recognizer, progress=progress)
    removed = remove_stale(out, records, job.options_hash)
    write_errors(out / ERRORS_NAME, records)
    manifest |= {
        "status": "complete", "files": len(paths), "counts": {**_counts(records), "stale_removed": removed},
        "workers": _workers(records), "finished": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "wall_time_s": round(time.perf_counter() - wall, 3),
    }
    atomic_write_bytes(out / MANIFEST_NAME, json.dumps(manifest, indent=2).encode())
    return manifest


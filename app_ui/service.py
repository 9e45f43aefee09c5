"""What the Space does, independent of Gradio: load the model once, run images, shape results.

Both the Gradio UI (:mod:`app_ui.blocks`) and the plain-HTTP routes (:mod:`app_ui.rest`) call
this, so they return the same JSON for the same image.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from fer_core import EmotionRecognizer, FaceResult, InvalidImageError, load_image
from fer_core.detect import DEFAULT_THRESHOLD
from fer_core.track import DEFAULT_HALF_LIFE_S
from fer_core.video import probe_video
from fer_core.video_analysis import VideoAnalysis

#: Largest accepted upload, bytes (``FER_MAX_UPLOAD_MB``, default 20 MB).
MAX_UPLOAD_BYTES: int = int(float(os.environ.get("FER_MAX_UPLOAD_MB", "20")) * 1024 * 1024)
#: Longest video analysed per request, seconds (``FER_MAX_VIDEO_SECONDS``, default 120 s).
MAX_VIDEO_SECONDS: float = float(os.environ.get("FER_MAX_VIDEO_SECONDS", "120"))
#: Frames analysed per second of video when a request does not say (the CLI's default is every frame).
DEFAULT_VIDEO_SAMPLE_FPS: float = 5.0


@dataclass
class Settings:
    """Detection controls shared by all tabs and endpoints.

    Attributes:
        threshold: detection probability threshold, 0..1.
        min_face_size: smallest face in pixels, or ``None``/0 for the adaptive default.
        align: level the eyes before classifying.
        balanced: balanced (prior-corrected) decisions; ``None`` for the model's default.
    """

    threshold: float = DEFAULT_THRESHOLD
    min_face_size: int | None = None
    align: bool = True
    balanced: bool | None = None

    @classmethod
    def parse(cls, threshold: float | None, min_face_size: float | None, align: bool | None,
              balanced: bool | None = None) -> Settings:
        """Settings from UI/API values (``None`` or 0 meaning the default).

        Raises:
            ValueError: a value is out of range (threshold outside 0..1, face size 1..11).
        """
        s = cls(
            DEFAULT_THRESHOLD if threshold is None else float(threshold),
            int(min_face_size) if min_face_size else None,
            True if align is None else bool(align),
            None if balanced is None else bool(balanced),
        )
        if not 0 <= s.threshold <= 1:
            raise ValueError(f"detection threshold must be between 0 and 1, got {s.threshold}")
        if s.min_face_size is not None and s.min_face_size < 12:
            raise ValueError(f"minimum face size must be at least 12 pixels, got {s.min_face_size}")
        return s


class FERService:
    """The loaded model plus everything the app does with it.

    Args:
        recognizer: the loaded recognizer.
        model_id: what was asked for (``FER_MODEL`` or ``"bundled default"``).
    """

    def __init__(self, recognizer: EmotionRecognizer, model_id: str) -> None:
        self.recognizer = recognizer
        self.model_id = model_id

    @classmethod
    def from_env(cls) -> FERService:
        """Load the model named by ``FER_MODEL`` (Hub repo id or folder; ``FER_MODEL_REVISION`` pins
        a revision), or the bundled default when unset.

        Raises:
            fer_core.ModelLoadError: the model cannot be loaded.
        """
        model = os.environ.get("FER_MODEL") or None
        revision = os.environ.get("FER_MODEL_REVISION") or None
        rec = EmotionRecognizer.from_pretrained(model, revision=revision)
        return cls(rec, model or "bundled default")

    def info(self) -> dict[str, Any]:
        """Model id, resolved revision, labels and key config values (the ``/labels`` answer)."""
        cfg = self.recognizer.config
        return {
            "model": self.model_id,
            "revision": self.recognizer.revision,
            "labels": self.recognizer.labels,
            "backbone": cfg.backbone,
            "input_size": cfg.input_size,
            "temperature": cfg.temperature,
            "balanced_default": cfg.balanced,
            "balanced_available": cfg.prior is not None,
            "tau": cfg.tau,
        }

    def settings(self, threshold: float | None, min_face_size: float | None, align: bool | None,
                 balanced: bool | None = None) -> Settings:
        """:meth:`Settings.parse`, also checking that this model can make balanced decisions.

        Raises:
            ValueError: a value is out of range, or ``balanced`` is asked of a model without a
                class prior in its ``config.json``.
        """
        s = Settings.parse(threshold, min_face_size, align, balanced)
        self.recognizer.config.resolve_balanced(s.balanced)
        return s

    def predict(self, image: Any, settings: Settings) -> tuple[Image.Image, list[FaceResult]]:
        """Load one image and find and classify its faces.

        Returns:
            The oriented RGB image and its faces (reading order).

        Raises:
            InvalidImageError: the image is invalid. ValueError: bad settings.
        """
        pil = load_image(image)
        faces = self.recognizer.predict(pil, threshold=settings.threshold, min_face_size=settings.min_face_size,
                                        align=settings.align, balanced=settings.balanced)
        return pil, faces

    def predict_many(self, items: list[tuple[str, Any]], settings: Settings) -> list[dict[str, Any]]:
        """Several named images; a bad one gets an ``error`` entry and the rest still run.

        Args:
            items: ``(name, image)`` pairs (image: path, bytes, PIL...).

        Returns:
            One dict per item, in order: ``{"file", "faces": [...]}`` or ``{"file", "error"}``;
            successful entries also carry the oriented image under the private key ``_image``.
        """
        results: list[dict[str, Any]] = []
        good: list[tuple[int, Image.Image]] = []
        for name, image in items:
            try:
                good.append((len(results), load_image(image)))
                results.append({"file": name})
            except InvalidImageError as exc:
                results.append({"file": name, "error": exc.reason})  # named by "file", not the temp path
        if good:
            batches = self.recognizer.predict_batch([img for _, img in good], threshold=settings.threshold,
                                                    min_face_size=settings.min_face_size, align=settings.align,
                                                    balanced=settings.balanced)
            for (index, img), faces in zip(good, batches):
                results[index]["faces"] = [f.to_dict() for f in faces]
                results[index]["_image"] = img
                results[index]["_faces"] = faces
        return results

    def analyze_video(self, path: str | Path, settings: Settings, *,
                      sample_fps: float | None = DEFAULT_VIDEO_SAMPLE_FPS, max_seconds: float | None = None,
                      smoothing: float = DEFAULT_HALF_LIFE_S, progress: bool = False) -> VideoAnalysis:
        """Track and classify every face of a video file (see :meth:`EmotionRecognizer.analyze_video`).

        Args:
            path: the video file.
            settings: detection settings.
            sample_fps: frames analysed per second (``None`` or 0: every frame).
            max_seconds: analyse only the first seconds; at most :data:`MAX_VIDEO_SECONDS`.
            smoothing: probability smoothing half-life, seconds (0 = none).
            progress: show a tqdm bar (the UI's ``gr.Progress`` follows it).

        Raises:
            fer_core.InvalidVideoError: not a readable video.
            VideoTooLongError: the video is longer than :data:`MAX_VIDEO_SECONDS` and
                ``max_seconds`` does not limit it to that.
            ValueError: a setting is out of range.
        """
        check_video_options(sample_fps, max_seconds, smoothing)
        info = probe_video(path)
        limit = min(max_seconds or MAX_VIDEO_SECONDS, MAX_VIDEO_SECONDS)
        if (max_seconds is None or max_seconds > MAX_VIDEO_SECONDS) and (info.duration_s or 0) > MAX_VIDEO_SECONDS:
            raise VideoTooLongError(
                f"the video lasts {info.duration_s:.0f} s; this server analyses at most {MAX_VIDEO_SECONDS:.0f} s "
                "per request: send max_seconds to analyse the start only, trim it, or run "
                "`python -m fer_core VIDEO --timeline OUT` locally")
        return self.recognizer.analyze_video(
            path, sample_fps=sample_fps or None, max_seconds=limit, smoothing=smoothing, progress=progress,
            threshold=settings.threshold, min_face_size=settings.min_face_size, align=settings.align,
            balanced=settings.balanced)


class VideoTooLongError(ValueError):
    """A video is longer than the server's :data:`MAX_VIDEO_SECONDS`."""


def check_video_options(sample_fps: float | None, max_seconds: float | None, smoothing: float) -> None:
    """Validate video-request options.

    Raises:
        ValueError: ``sample_fps`` negative or above 60, ``max_seconds`` negative, ``smoothing``
            outside 0..10 seconds.
    """
    if sample_fps is not None and not 0 <= sample_fps <= 60:
        raise ValueError(f"sample_fps must be between 0 (every frame) and 60, got {sample_fps}")
    if max_seconds is not None and not max_seconds >= 0:
        raise ValueError(f"max_seconds must be >= 0, got {max_seconds}")
    if not 0 <= smoothing <= 10:
        raise ValueError(f"smoothing must be between 0 and 10 seconds, got {smoothing}")


def video_summary_table(analysis: VideoAnalysis) -> list[list[Any]]:
    """Rows ``[face, seconds visible, first s, last s, dominant, "label share%, ..." (top 3)]``."""
    rows = []
    for s in analysis.summary():
        top = sorted(s["shares"].items(), key=lambda kv: -kv[1])[:3]
        rows.append([s["face_id"], s["seconds_visible"], s["first_s"], s["last_s"], s["dominant"],
                     ", ".join(f"{k} {100 * v:.0f}%" for k, v in top if v > 0)])
    return rows


def write_video_outputs(analysis: VideoAnalysis, folder: Path, annotated: bool = True) -> dict[str, Path]:
    """Write ``timeline.csv``, ``timeline.json``, ``timeline.png`` and (``annotated``) ``annotated.mp4``
    for one analysed video into ``folder``; returns their paths by kind (csv, json, png, video)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"csv": folder / "timeline.csv", "json": folder / "timeline.json", "png": folder / "timeline.png"}
    analysis.to_csv(paths["csv"])
    analysis.to_json(paths["json"])
    analysis.timeline_figure().savefig(paths["png"], dpi=100)
    if annotated:
        paths["video"] = folder / "annotated.mp4"
        analysis.write_annotated(paths["video"])
    return paths


def public(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``results`` without the private ``_``-prefixed keys (what the APIs return)."""
    return [{k: v for k, v in r.items() if not k.startswith("_")} for r in results]


def faces_table(faces: list[FaceResult]) -> list[list[Any]]:
    """Rows ``[face number, box "x1,y1,x2,y2", top emotion, confidence %]`` for the UI table."""
    return [[i, ", ".join(f"{v:.0f}" for v in f.box), f.label, round(100 * f.confidence, 1)]
            for i, f in enumerate(faces, start=1)]


def results_csv(results: list[dict[str, Any]], labels: list[str]) -> str:
    """CSV text, one row per face: file, face, x1..y2, score, the probabilities, error."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["file", "face", "x1", "y1", "x2", "y2", "score", "label", *labels, "error"])
    for r in results:
        if "error" in r:
            writer.writerow([r["file"], "", "", "", "", "", "", "", *[""] * len(labels), r["error"]])
        for i, f in enumerate(r.get("faces", []), start=1):
            writer.writerow([r["file"], i, *f["box"], f["score"], f["label"], *[f["probs"][k] for k in labels], ""])
    return buf.getvalue()


def batch_folder(root: Path, max_age_s: float = 3600.0) -> Path:
    """A new folder under ``root`` for one batch's downloads; folders older than ``max_age_s``
    seconds (Gradio has copied their files to its own cache long before) are removed first."""
    root.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in root.iterdir():
        if old.is_dir() and now - old.stat().st_mtime > max_age_s:
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(dir=root))


def write_downloads(results: list[dict[str, Any]], labels: list[str], folder: Path) -> tuple[Path, Path]:
    """Write ``faces.csv`` and ``faces.json`` for a batch into ``folder``; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = folder / "faces.csv", folder / "faces.json"
    csv_path.write_text(results_csv(results, labels))
    json_path.write_text(json.dumps(public(results), indent=2))
    return csv_path, json_path

"""What the Space does, independent of Gradio: load the model once, run images, shape results.

Both the Gradio UI (:mod:`fer_app.blocks`) and the plain-HTTP routes (:mod:`fer_app.rest`) call
this, so they return the same JSON for the same image.
"""

from __future__ import annotations

import base64
import csv
import importlib.util
import io
import json
import os
import reprlib
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from PIL import Image

from fer_core import EmotionRecognizer, FaceResult, InvalidImageError, load_image
from fer_core.detect import MAX_DETECT_BATCH
from fer_core.errors import FERError, InvalidArgumentError, MissingDependencyError
from fer_core.io import image_size
from fer_core.options import (
    DEFAULT_HALF_LIFE_S,
    DEFAULT_VIDEO_SAMPLE_FPS,
    PredictOptions,
    check_max_seconds,
    check_sample_fps,
    check_smoothing,
)
from fer_core.plots import timeline_figure
from fer_core.saliency import DEFAULT_METHOD, METHODS, FaceSaliency, overlay
from fer_core.video import probe_video
from fer_core.video_analysis import VideoAnalysis

from .limits import (
    CACHE_MAX_AGE_S,
    DOWNLOADS_MAX_BYTES,
    MAX_FACES,
    MAX_FILES,
    MAX_REQUEST_FACES,
    MAX_REQUEST_PIXELS,
    MAX_VIDEO_FRAMES,
    MAX_VIDEO_SECONDS,
    REQUEST_BUDGET_S,
    InferenceLimiter,
    RequestTooLargeError,
)
from .memory import trim

#: Where the app writes its downloads (pruned by age and total size: see :func:`batch_folder`).
BATCH_ROOT = Path(tempfile.gettempdir()) / "fer_batches"
#: Download folders younger than this many seconds are never pruned (a request may still be writing them).
BATCH_MIN_AGE_S = 60.0
#: The error of a batch file not started before :data:`~fer_app.limits.REQUEST_BUDGET_S` ran out.
BUDGET_SPENT = "not processed: time budget spent"
#: The live and monitoring tabs keep the timeline of the last this many seconds.
LIVE_WINDOW_S = 600.0
#: Seconds between redraws of their timeline plots.
LIVE_PLOT_EVERY_S = 2.0
#: The ``target`` value (UI, gradio_client, REST) that explains each face's own predicted label.
PREDICTED = "predicted"
#: Side, in cells, of the crop heatmaps in the explain answers (:meth:`FaceSaliency.to_dict`).
EXPLAIN_HEATMAP_SIZE = 32
#: Modules an explanation needs in the server's process (the ``torch`` extra).
EXPLAIN_MODULES: tuple[str, ...] = ("torch", "pytorch_grad_cam")
#: Longest side, in pixels, of the overlay image of an explanation (UI, gradio_client, REST): a larger
#: photo is downscaled before the maps are blended in, so the overlay's memory, encoding time and answer
#: size stay bounded (a 1024 px PNG is at most about 3 MB, 4 MB in base64).
EXPLAIN_OVERLAY_MAX_SIDE = 1024
#: Shortens a client's value echoed in an error message (a 5 MB ``target`` must not come back, or be logged).
_ECHO = reprlib.Repr()
_ECHO.maxstring = _ECHO.maxother = 40
_ECHO.maxlist = _ECHO.maxdict = 4


class FERService:
    """The loaded model plus everything the app does with it.

    Every method that runs the model holds a slot of :attr:`limiter` meanwhile, so the UI and the
    REST routes together never run more inference at once than it allows.

    Args:
        recognizer: the loaded recognizer.
        model_id: what was asked for (``FER_MODEL`` or ``"bundled default"``).
        limiter: the shared inference limit (default: from the ``FER_INFERENCE_SLOTS``,
            ``FER_MAX_QUEUE`` and ``FER_QUEUE_TIMEOUT_S`` environment variables).
    """

    def __init__(self, recognizer: EmotionRecognizer, model_id: str, limiter: InferenceLimiter | None = None) -> None:
        self.recognizer = recognizer
        self.model_id = model_id
        self.limiter = limiter or InferenceLimiter()
        # explanations: a torch recognizer of the same model, loaded on the first one (see explainer())
        self._explainer: EmotionRecognizer | None = recognizer if recognizer.backend == "torch" else None
        self._explainer_error: str | None = None
        self._explainer_lock = threading.Lock()

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
            "defaults": asdict(self.defaults()),
        }

    def defaults(self) -> PredictOptions:
        """This model's own defaults: its detector's threshold, its ``config.json``'s ``align`` and
        ``balanced`` (what the UI's controls start at and the APIs use when a value is omitted)."""
        return self.recognizer.options()

    def settings(self, threshold: float | None = None, min_face_size: float | None = None, align: bool | None = None,
                 balanced: bool | None = None, verify_faces: bool | None = None) -> PredictOptions:
        """Validated options from UI/API values; ``None`` means the model's default, a
        ``min_face_size`` of 0 the input's default (still photos: 20 px, verified or not; live and
        monitoring frames: adaptive), and ``verify_faces`` (confirm each box with FaceMesh) the
        detector's, on (:meth:`fer_core.recognizer.EmotionRecognizer.options`).

        Raises:
            fer_core.InvalidArgumentError: a value is out of range, or ``balanced`` is asked of a
                model without a class prior in its ``config.json``.
        """
        return self.recognizer.options(threshold, min_face_size, align, balanced, verify_faces)

    def predict(self, image: Any, options: PredictOptions, *, dropped: list[int] | None = None,
                rejected: list[int] | None = None, photo: bool = True,
                mesh: bool | None = None) -> tuple[Image.Image, list[FaceResult]]:
        """Load one image and find and classify its faces, at most :data:`~fer_app.limits.MAX_FACES`
        of them (the highest detection scores).

        Args:
            image: path, bytes, PIL image or array (see :func:`fer_core.load_image`).
            options: detection and decision options.
            dropped: if given, the number of faces found over the cap (0 if none) is appended to it.
            rejected: if given, the number of boxes face verification rejected (0 if none) is
                appended to it.
            photo: ``True`` for a still photo (with ``min_face_size`` 0, faces searched for down to
                :data:`~fer_core.options.PHOTO_MIN_FACE_SIZE`, 20 px, verified or not); ``False`` for
                a live or monitoring frame (the adaptive, speed-first smallest face). See
                :meth:`fer_core.recognizer.EmotionRecognizer.predict`.
            mesh: as in :meth:`~fer_core.recognizer.EmotionRecognizer.predict` (``True``: FaceMesh's
                468 points even without verification, for drawing).

        Returns:
            The oriented RGB image and its faces (reading order).

        Raises:
            InvalidImageError: the image is invalid.
            ServerBusyError: no inference slot came free.
        """
        image_size(image)  # a bad header fails before waiting for a slot
        with self.limiter.slot():  # decoding counts: a 50 MP image is 150 MB of pixels
            pil = load_image(image)
            return pil, self.recognizer.predict(pil, **options.as_kwargs(), max_faces=MAX_FACES, dropped=dropped,
                                                rejected=rejected, photo=photo, mesh=mesh)

    def explain_unavailable(self) -> str | None:
        """Why this server cannot explain (Grad-CAM saliency maps), or ``None`` when it can.

        Explanations need torch and the ``grad-cam`` package (``pytorch_grad_cam``) importable in this
        process (checked with :func:`importlib.util.find_spec`, nothing imported), and a model that the
        torch backend can load: the recognizer itself when it is torch-backed, else the same model
        (folder or Hub repo, at the revision the ONNX one was loaded from) with ``model.safetensors``.
        A failed load is remembered: its reason is returned from then on.
        """
        missing = [name for name in EXPLAIN_MODULES if not _importable(name)]
        if missing:
            return (f"explanations (Grad-CAM) need the torch extra, which is not installed on this server "
                    f"(missing: {', '.join(missing)}): pip install 'fer-core[torch]' (torch and grad-cam)")
        if self._explainer_error:
            return self._explainer_error
        if self._explainer is None and self.recognizer.source == "<in memory>":
            return "explanations (Grad-CAM) need a model loaded from a folder or Hub repo, or a torch-backed one"
        return None

    def explainer(self) -> EmotionRecognizer:
        """The torch-backed recognizer of explanations, loaded on the first call (once, thread-safe).

        The ONNX recognizer stays the one that finds and classifies faces; this one (the same model's
        ``model.safetensors`` on the CPU, sharing the ONNX recognizer's detector) only computes the
        saliency maps of those faces. Loading takes about 4-6 s on a 2-core CPU and 0.7-1 GB of memory
        (torch, the network, grad-cam), once; :meth:`explain` calls this *before* taking an inference
        slot, so explanations that wait for the load do not hold slots that predictions need.

        Raises:
            ExplainUnavailableError: see :meth:`explain_unavailable` (the reason is the message).
        """
        if self._explainer is not None:
            return self._explainer
        with self._explainer_lock:
            if reason := self.explain_unavailable():
                raise ExplainUnavailableError(reason)
            if self._explainer is None:
                try:
                    explainer = self.recognizer.torch_copy()
                except MissingDependencyError as exc:
                    raise ExplainUnavailableError(str(exc)) from exc
                except FERError as exc:  # e.g. an ONNX-only model: no model.safetensors
                    self._explainer_error = f"explanations (Grad-CAM) are unavailable: {exc}"
                    raise ExplainUnavailableError(self._explainer_error) from exc
                self._explainer = explainer
            return self._explainer

    def explain_args(self, target: str | None, method: str | None) -> tuple[str | None, str]:
        """Validated ``(target, method)`` of an explanation: ``target`` ``None``, ``""`` or
        :data:`PREDICTED` -> ``None`` (each face's predicted label), else one of the model's labels;
        ``method`` ``None`` or ``""`` -> :data:`~fer_core.saliency.DEFAULT_METHOD`, else a key of
        :data:`~fer_core.saliency.METHODS`. A bad value is echoed in the message shortened to about 40
        characters (:mod:`reprlib`).

        Raises:
            fer_core.InvalidArgumentError: a target or method that is not a string (a list, a dict...),
                or an unknown one (the message lists the choices).
        """
        labels = self.recognizer.labels
        if target is not None and not isinstance(target, str):
            raise InvalidArgumentError(f"target must be a string, got {type(target).__name__} {_ECHO.repr(target)}")
        if method is not None and not isinstance(method, str):
            raise InvalidArgumentError(f"method must be a string, got {type(method).__name__} {_ECHO.repr(method)}")
        if target in (None, "", PREDICTED):
            target = None
        elif target not in labels:
            raise InvalidArgumentError(f"target must be {PREDICTED!r} or one of the model's labels "
                                       f"({', '.join(labels)}), got {_ECHO.repr(target)}")
        method = method or DEFAULT_METHOD
        if method not in METHODS:
            raise InvalidArgumentError(f"method must be one of {', '.join(METHODS)}, got {_ECHO.repr(method)}")
        return target, method

    def explain(self, image: Any, options: PredictOptions, *, target: str | None = None,
                method: str | None = None, dropped: list[int] | None = None, rejected: list[int] | None = None,
                mesh: bool | None = None,
                overlay_png: bool = False) -> tuple[Image.Image, list[FaceResult], list[FaceSaliency], bytes | None]:
        """Find and classify the faces of one image (as :meth:`predict`, with the ONNX recognizer and the
        same caps), then compute each face's Grad-CAM saliency map with the torch recognizer
        (:meth:`explainer`), reusing those faces (``faces=``: detection runs once), and, with
        ``overlay_png``, the PNG of the image with the maps blended in, downscaled to at most
        :data:`EXPLAIN_OVERLAY_MAX_SIDE` pixels on its longer side (:func:`fer_core.saliency.overlay`).

        The torch copy is loaded (:meth:`explainer`, the first call only: about 4-6 s and 0.7-1 GB)
        before an inference slot is taken; decoding, detection, the maps, the overlay and its encoding
        all run inside the slot, so their memory counts against ``FER_INFERENCE_SLOTS``. Costs about
        10-15 ms per face on a 2-core CPU after the first call.

        Args:
            image: path, bytes, PIL image or array (see :func:`fer_core.load_image`).
            options: detection and decision options.
            target: the label explained for every face (see :meth:`explain_args`; ``None``: each
                face's predicted label).
            method: ``"gradcam"`` (default), ``"gradcam++"`` or ``"layercam"``.
            dropped, rejected, mesh: as in :meth:`predict`.
            overlay_png: also make the overlay PNG (``None`` when the image has no face: nothing to show).

        Returns:
            The oriented RGB image, its faces (reading order), one
            :class:`~fer_core.saliency.FaceSaliency` per face in the same order, and the overlay PNG's
            bytes (``None`` without ``overlay_png`` or without faces).

        Raises:
            ExplainUnavailableError: torch or grad-cam is missing, or the torch model cannot be loaded.
            fer_core.InvalidArgumentError: an unknown target or method.
            InvalidImageError: the image is invalid.
            ServerBusyError: no inference slot came free.
        """
        if reason := self.explain_unavailable():
            raise ExplainUnavailableError(reason)
        target, method = self.explain_args(target, method)
        image_size(image)  # a bad header fails before the load and the wait for a slot
        explainer = self.explainer()  # the one-off load waits here, holding no slot
        png = None
        with self.limiter.slot(), _trimmed():
            pil = load_image(image)
            faces = self.recognizer.predict(pil, **options.as_kwargs(), max_faces=MAX_FACES, dropped=dropped,
                                            rejected=rejected, mesh=mesh)
            try:
                maps = explainer.explain(pil, target=target, method=method, faces=faces, align=options.align)
            except MissingDependencyError as exc:
                raise ExplainUnavailableError(str(exc)) from exc
            if overlay_png and maps:
                png = png_bytes(overlay(pil, maps, max_side=EXPLAIN_OVERLAY_MAX_SIDE))
        return pil, faces, maps, png

    def predict_many(self, items: list[tuple[str, Any]], options: PredictOptions, *,
                     keep_images: bool = False, budget_s: float | None = None) -> list[dict[str, Any]]:
        """Several named images; a bad one gets an ``error`` entry and the rest still run.

        Work is bounded before any image is decoded: at most :data:`~fer_app.limits.MAX_FILES`
        files and :data:`~fer_app.limits.MAX_REQUEST_PIXELS` pixels in all (from the headers). The
        images are then decoded and run :data:`~fer_core.detect.MAX_DETECT_BATCH` at a time, so
        memory holds one chunk, not the whole request. At most :data:`~fer_app.limits.MAX_FACES`
        faces per image and :data:`~fer_app.limits.MAX_REQUEST_FACES` per request are classified
        (the highest detection scores within a chunk; earlier chunks first); a file with faces over
        the caps says how many in ``faces_dropped`` and ``note``, and a file where face verification
        rejected boxes says how many in ``faces_rejected``. Before each chunk the time since
        the inference slot was taken is checked against ``budget_s``: once it is spent, every file
        not yet started gets the error :data:`BUDGET_SPENT` (a partial result, not a timeout).

        Args:
            items: ``(name, image)`` pairs (image: path, bytes, PIL...).
            options: detection and decision options.
            keep_images: also keep each decoded image and its :class:`FaceResult` objects under the
                private keys ``_image`` and ``_faces`` (for drawing; costs the memory of every image).
            budget_s: seconds of inference for the whole request; ``None``:
                :data:`~fer_app.limits.REQUEST_BUDGET_S`.

        Returns:
            One dict per item, in order: ``{"file", "faces": [...]}`` (plus ``"faces_dropped"``,
            an int, and ``"note"`` when faces were over the caps; ``"faces_rejected"``, an int, when
            verification rejected boxes) or ``{"file", "error"}``.

        Raises:
            RequestTooLargeError: too many files or pixels.
            ServerBusyError: no inference slot came free.
        """
        if len(items) > MAX_FILES:
            raise RequestTooLargeError(f"{len(items)} files in one request; at most {MAX_FILES} (FER_MAX_FILES)")
        results: list[dict[str, Any]] = [{"file": name} for name, _ in items]
        pending: list[int] = []
        pixels = 0
        for i, (_, image) in enumerate(items):
            try:
                width, height = image_size(image)
            except InvalidImageError as exc:
                results[i]["error"] = exc.reason  # named by "file", not the server's temp path
                continue
            pixels += width * height
            pending.append(i)
        if pixels > MAX_REQUEST_PIXELS:
            raise RequestTooLargeError(f"the images hold {pixels / 1e6:.0f} megapixels in all; at most "
                                       f"{MAX_REQUEST_PIXELS / 1e6:.0f} per request (FER_MAX_REQUEST_MEGAPIXELS)")
        budget = REQUEST_BUDGET_S if budget_s is None else budget_s
        with self.limiter.slot(), _trimmed():
            started, faces_left = time.monotonic(), MAX_REQUEST_FACES
            for start in range(0, len(pending), MAX_DETECT_BATCH):
                if time.monotonic() - started >= budget:
                    for i in pending[start:]:
                        results[i]["error"] = f"{BUDGET_SPENT} (at most {budget:g} s per request, FER_REQUEST_BUDGET_S)"
                    break
                loaded = []
                for i in pending[start:start + MAX_DETECT_BATCH]:
                    try:
                        loaded.append((i, load_image(items[i][1])))
                    except InvalidImageError as exc:
                        results[i]["error"] = exc.reason
                dropped: list[int] = []
                rejected: list[int] = []
                batches = self.recognizer.predict_batch([img for _, img in loaded], **options.as_kwargs(),
                                                        max_faces=MAX_FACES, max_total_faces=faces_left,
                                                        dropped=dropped, rejected=rejected)
                rejected = rejected or [0] * len(loaded)
                for (i, img), faces, lost, not_faces in zip(loaded, batches, dropped, rejected):
                    faces_left -= len(faces)
                    results[i]["faces"] = [f.to_dict() for f in faces]
                    if not_faces:
                        results[i]["faces_rejected"] = not_faces
                    if lost:
                        results[i]["faces_dropped"] = lost
                        results[i]["note"] = faces_dropped_note(lost)
                    if keep_images:
                        results[i]["_image"], results[i]["_faces"] = img, faces
        return results

    def analyze_video(self, path: str | Path, options: PredictOptions, *,
                      sample_fps: float | None = DEFAULT_VIDEO_SAMPLE_FPS, max_seconds: float | None = None,
                      smoothing: float = DEFAULT_HALF_LIFE_S, progress: bool = False) -> VideoAnalysis:
        """Track and classify every face of a video file (see :meth:`EmotionRecognizer.analyze_video`).

        Args:
            path: the video file.
            options: detection and decision options.
            sample_fps: frames analysed per second (``None`` or 0: every frame).
            max_seconds: analyse only the first seconds; at most :data:`MAX_VIDEO_SECONDS`.
            smoothing: probability smoothing half-life, seconds (0 = none).
            progress: show a tqdm bar (the UI's ``gr.Progress`` follows it).

        Returns:
            The :class:`~fer_core.video_analysis.VideoAnalysis`. At most
            :data:`~fer_app.limits.MAX_VIDEO_FRAMES` frames are decoded for at most
            :data:`~fer_app.limits.REQUEST_BUDGET_S` seconds (its ``truncated`` says when either
            stopped it early) and :data:`~fer_app.limits.MAX_FACES` faces classified per
            frame (the rest counted in ``faces_dropped``).

        Raises:
            fer_core.InvalidVideoError: not a readable video.
            VideoTooLongError: the video is longer than :data:`MAX_VIDEO_SECONDS` and
                ``max_seconds`` does not limit it to that.
            fer_core.InvalidArgumentError: an option is out of range.
            ServerBusyError: no inference slot came free.
        """
        sample_fps, max_seconds = check_sample_fps(sample_fps), check_max_seconds(max_seconds)
        smoothing = check_smoothing(smoothing)
        info = probe_video(path)
        limit = min(max_seconds or MAX_VIDEO_SECONDS, MAX_VIDEO_SECONDS)
        if (max_seconds is None or max_seconds > MAX_VIDEO_SECONDS) and (info.duration_s or 0) > MAX_VIDEO_SECONDS:
            raise VideoTooLongError(
                f"the video lasts {info.duration_s:.0f} s; this server analyses at most {MAX_VIDEO_SECONDS:.0f} s "
                "per request: send max_seconds to analyse the start only, trim it, or run "
                "`python -m fer_core VIDEO --timeline OUT` locally")
        with self.limiter.slot(), _trimmed():
            analysis = self.recognizer.analyze_video(path, sample_fps=sample_fps, max_seconds=limit,
                                                     smoothing=smoothing, progress=progress,
                                                     max_frames=MAX_VIDEO_FRAMES, max_faces=MAX_FACES,
                                                     time_budget_s=REQUEST_BUDGET_S, **options.as_kwargs())
        if analysis.truncated:
            analysis.truncated += " (this server's limits, FER_MAX_VIDEO_FRAMES and FER_REQUEST_BUDGET_S)"
        return analysis


@contextmanager
def _trimmed() -> Iterator[None]:
    """Run the body, then give freed heap memory back to the OS (:func:`fer_app.memory.trim`)."""
    try:
        yield
    finally:
        trim()


def _importable(name: str) -> bool:
    """Whether the top-level module ``name`` can be found (not imported; a blocked one is not)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a module in sys.modules as None or without a spec
        return False


class ExplainUnavailableError(RuntimeError):
    """This server cannot compute explanations (HTTP 501): torch or grad-cam is not installed, or the
    model has no torch weights. The message says why and what to install."""


def explain_document(maps: list[FaceSaliency]) -> dict[str, Any]:
    """The JSON answer of an explanation, ``{"faces": [...]}``: one
    :meth:`~fer_core.saliency.FaceSaliency.to_dict` per face (``face``, ``target``, ``method``,
    ``layer``, ``transform``, ``heatmap``: :data:`EXPLAIN_HEATMAP_SIZE` x :data:`EXPLAIN_HEATMAP_SIZE`
    floats in [0, 1] over the face crop)."""
    return {"faces": [m.to_dict(EXPLAIN_HEATMAP_SIZE) for m in maps]}


def png_bytes(image: Image.Image) -> bytes:
    """``image`` encoded as PNG."""
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


class VideoTooLongError(ValueError):
    """A video is longer than the server's :data:`~fer_app.limits.MAX_VIDEO_SECONDS` and the request
    did not limit ``max_seconds`` to that (HTTP 422: the request can be fixed by asking for less)."""


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
    timeline_figure(analysis).savefig(paths["png"], dpi=100)
    if annotated:
        paths["video"] = folder / "annotated.mp4"
        analysis.write_annotated(paths["video"])
    return paths


def faces_dropped_note(dropped: int) -> str:
    """What a result says about ``dropped`` faces found over the caps of :mod:`fer_app.limits`."""
    return (f"{dropped} more face{'s' if dropped != 1 else ''} found than analysed: at most {MAX_FACES} per image "
            f"and {MAX_REQUEST_FACES} per request (FER_MAX_FACES, FER_MAX_REQUEST_FACES), the highest detection "
            "scores first")


def faces_rejected_note(rejected: int) -> str:
    """What a result says about ``rejected`` boxes that face verification (FaceMesh) did not confirm."""
    return (f"{rejected} box{'es' if rejected != 1 else ''} not confirmed as a face by FaceMesh "
            f"(left out; turn face verification off to keep {'them' if rejected != 1 else 'it'})")


def public(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``results`` without the private ``_``-prefixed keys (what the APIs return)."""
    return [{k: v for k, v in r.items() if not k.startswith("_")} for r in results]


def frame_html(image: Any, quality: int = 80) -> str:
    """An ``<img>`` holding ``image`` (PIL) as a JPEG data URL: shown by the browser, never a file
    (the live and monitoring tabs: Gradio would save an image output to its cache folder)."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=quality)
    data = base64.b64encode(buf.getvalue()).decode()
    return f'<img alt="tracked faces" style="max-width:100%" src="data:image/jpeg;base64,{data}">'


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


def batch_folder(root: Path, max_age_s: float = CACHE_MAX_AGE_S, max_total_bytes: int = DOWNLOADS_MAX_BYTES,
                 min_age_s: float = BATCH_MIN_AGE_S) -> Path:
    """A new folder under ``root`` for one request's downloads, after pruning the old ones
    (:func:`prune_folders`: older than ``max_age_s`` seconds, then the oldest first while all of
    them hold more than ``max_total_bytes`` bytes). Gradio has copied their files to its own cache
    long before (that cache is pruned by age too: ``gr.Blocks(delete_cache=...)``).
    """
    prune_folders(root, max_age_s=max_age_s, max_total_bytes=max_total_bytes, min_age_s=min_age_s)
    return Path(tempfile.mkdtemp(dir=root))


def prune_folders(root: Path, *, max_age_s: float = CACHE_MAX_AGE_S, max_total_bytes: int = DOWNLOADS_MAX_BYTES,
                  min_age_s: float = BATCH_MIN_AGE_S) -> list[Path]:
    """Delete the sub-folders of ``root`` (created if missing) by age, then by total size.

    A folder's age is from its modification time (set when a file is created in it). Folders older than
    ``max_age_s`` seconds are deleted; then, while the remaining folders hold more than
    ``max_total_bytes`` bytes in all, the oldest is deleted, except folders younger than
    ``min_age_s`` seconds (a request may still be writing them), so the total can stay over the
    cap until they age. Files directly in ``root`` are left alone.

    Args:
        root: the folder whose sub-folders are pruned.
        max_age_s: largest age kept, seconds.
        max_total_bytes: largest total size kept, bytes.
        min_age_s: folders at most this old are never deleted, seconds.

    Returns:
        The deleted folders, oldest first.
    """
    root.mkdir(parents=True, exist_ok=True)
    now = time.time()
    folders: list[tuple[float, int, Path]] = []  # (mtime, bytes, folder)
    for folder in root.iterdir():
        if not folder.is_dir() or folder.is_symlink():
            continue
        try:
            mtime = folder.stat().st_mtime
            size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink())
        except OSError:  # removed meanwhile by another request
            continue
        folders.append((mtime, size, folder))
    folders.sort(key=lambda entry: entry[0])
    removed = {f for mtime, _, f in folders if now - mtime > max_age_s}
    total = sum(size for _, size, f in folders if f not in removed)
    for mtime, size, folder in folders:
        if total <= max_total_bytes:
            break
        if folder not in removed and now - mtime > min_age_s:
            removed.add(folder)
            total -= size
    ordered = [f for _, _, f in folders if f in removed]
    for folder in ordered:
        shutil.rmtree(folder, ignore_errors=True)
    return ordered


def write_downloads(results: list[dict[str, Any]], labels: list[str], folder: Path) -> tuple[Path, Path]:
    """Write ``faces.csv`` and ``faces.json`` for a batch into ``folder``; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = folder / "faces.csv", folder / "faces.json"
    csv_path.write_text(results_csv(results, labels))
    json_path.write_text(json.dumps(public(results), indent=2))
    return csv_path, json_path

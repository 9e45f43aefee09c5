"""The Gradio UI: Image, Live webcam, Video and Batch tabs, plus named API endpoints for gradio_client.

Endpoints (``client.view_api()``, declared with ``gr.api``): ``/predict`` (one image -> JSON list of
faces), ``/predict_batch`` (several files -> JSON per file, errors included), ``/predict_video`` (a
video file -> per-face summary and rows over time), ``/labels`` (labels, model id/revision and the
model's default options), ``/explain`` (one image, ``target``, ``method`` -> ``{"faces": [...]}`` with each
face's Grad-CAM heatmap, and the overlay image; needs the ``torch`` extra on the server, else an error that
says so). Options left out take the model's own defaults (``config.json``).

The Image tab's **Explain (Grad-CAM)** switch (shown only when torch and grad-cam are installed) adds a
second image: the photo with each face's saliency map for the chosen target (``predicted``: each face's
own label). The faces are still found and classified by the server's recognizer (ONNX by default); a
torch copy of the same model is loaded on the first explanation, for the maps only.

Every handler is wrapped by :func:`guarded`: a :class:`fer_core.FERError` (and the server's own
limits: too large, busy, video too long) reaches the user or client as its reason; anything else is
logged with its traceback and shown as the fixed :data:`INTERNAL_ERROR`, never the exception's text.
Gradio's cached uploads and outputs are deleted after :data:`~fer_app.limits.CACHE_MAX_AGE_S`
seconds (``gr.Blocks(delete_cache=...)``).
"""

from __future__ import annotations

import functools
import io
import logging
import os
import time
from collections.abc import Callable
from html import escape
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.data_classes import FileData
from gradio.utils import get_upload_folder
from PIL import Image

from fer_core import FaceResult, FERError, InvalidArgumentError, InvalidImageError, InvalidVideoError, PredictOptions
from fer_core.draw import annotate, label_color
from fer_core.errors import InputError
from fer_core.options import (
    DEFAULT_HALF_LIFE_S,
    DEFAULT_VIDEO_SAMPLE_FPS,
    MAX_SAMPLE_FPS,
    SMOOTHING_RANGE_S,
    THRESHOLD_RANGE,
)
from fer_core.plots import probability_figure, timeline_figure
from fer_core.saliency import DEFAULT_METHOD, FaceSaliency
from fer_core.timeline import Timeline
from fer_core.track import FaceTracker

from .limits import (
    CACHE_MAX_AGE_S,
    CACHE_SWEEP_EVERY_S,
    MAX_QUEUE,
    MAX_VIDEO_SECONDS,
    RequestTooLargeError,
    ServerBusyError,
)
from .monitoring_tab import MonitoringContext, build_monitoring_tab
from .service import (
    BATCH_ROOT,
    LIVE_PLOT_EVERY_S,
    LIVE_WINDOW_S,
    PREDICTED,
    ExplainUnavailableError,
    FERService,
    VideoTooLongError,
    batch_folder,
    explain_document,
    faces_dropped_note,
    faces_rejected_note,
    faces_table,
    frame_html,
    public,
    video_summary_table,
    write_downloads,
    write_video_outputs,
)

EXAMPLES = Path(__file__).resolve().parent / "examples"
#: Seconds between webcam frames sent to the server (at most 10 frames/s per viewer).
STREAM_EVERY = 0.1

#: Most events waiting in Gradio's queue (webcam frames included), at least 8.
GRADIO_QUEUE_SIZE = max(8, 2 * MAX_QUEUE)

NO_FACE = ("**No face detected.** Try a larger or sharper face, a lower detection threshold or a smaller "
           "minimum face size.")

#: What the user or client is told of an unexpected error (its details go to the server's log only).
INTERNAL_ERROR = "internal error: the server could not process this request (the error is logged)"

log = logging.getLogger(__name__)


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` (a Gradio event handler or ``gr.api`` endpoint) with every exception mapped to a
    :class:`gradio.Error` the user or client can read: a ``gr.Error`` as raised; a bad input
    (:class:`fer_core.errors.InputError`) as its reason (the handlers name the upload themselves
    where they know it); any other :class:`fer_core.FERError` and the server's limits
    (:class:`~fer_app.limits.RequestTooLargeError`, :class:`~fer_app.limits.ServerBusyError`,
    :class:`~fer_app.service.VideoTooLongError`, :class:`~fer_app.service.ExplainUnavailableError`) as their
    message; anything else is logged with its
    traceback and shown as :data:`INTERNAL_ERROR` only, so no internal text (a torch message, a path)
    reaches a client. The signature, type hints and docstring stay ``fn``'s (``gr.api`` reads them).
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except InputError as exc:  # expected errors: told to the client, no traceback in the log
            raise gr.Error(exc.reason, print_exception=False) from exc
        except (FERError, RequestTooLargeError, ServerBusyError, VideoTooLongError, ExplainUnavailableError) as exc:
            raise gr.Error(str(exc), print_exception=False) from exc
        except Exception as exc:  # a bug: logged here, a fixed message there
            log.error("internal error in %s", fn.__name__, exc_info=exc)
            raise gr.Error(INTERNAL_ERROR, print_exception=False) from None

    return wrapper


def bars_html(faces: list[FaceResult], labels: list[str]) -> str:
    """Lightweight HTML probability bars, one panel per face (used by the live tab, where a
    matplotlib figure per frame would be too slow)."""
    if not faces:
        return f"<p>{escape(NO_FACE.replace('**', ''))}</p>"
    panels = []
    for i, f in enumerate(faces, start=1):
        rows = "".join(
            f'<div style="display:flex;align-items:center;gap:6px;font-size:13px">'
            f'<span style="width:80px">{escape(k)}</span>'
            f'<span style="flex:1;background:#eee;height:12px"><span style="display:block;height:12px;'
            f'width:{100 * f.probs[k]:.1f}%;background:{label_color(k, labels)}"></span></span>'
            f'<span style="width:40px;text-align:right">{100 * f.probs[k]:.0f}%</span></div>'
            for k in labels
        )
        panels.append(f'<div class="face-bars" style="min-width:240px;flex:1"><b>Face {i}: '
                      f'{escape(f.label)} {f.confidence:.0%}</b>{rows}</div>')
    return f'<div style="display:flex;flex-wrap:wrap;gap:16px">{"".join(panels)}</div>'


def uploaded_path(file: FileData | dict | str | None) -> str | None:
    """The local path of a file a client uploaded through Gradio (``gr.api`` hands over the
    ``FileData`` payload as sent), or ``None`` for none.

    Raises:
        gradio.Error: the path is outside Gradio's upload folder (a client naming a server file).
    """
    if file is None:
        return None
    path = file if isinstance(file, str) else file.path if isinstance(file, FileData) else file.get("path")
    if not path:
        return None
    root = os.path.realpath(get_upload_folder())
    if os.path.commonpath([root, os.path.realpath(path)]) != root:
        raise gr.Error("files must be uploaded (gradio_client.handle_file), not named by a server path")
    return str(path)


def build_blocks(service: FERService, monitoring: MonitoringContext | None = None,
                 monitoring_off_reason: str = "") -> gr.Blocks:
    """Build the app's ``gr.Blocks`` around a loaded :class:`FERService`; the Monitoring tab uses
    ``monitoring`` (``None``: the tab says why it is off)."""
    info = service.info()
    labels = info["labels"]
    revision = info["revision"] or "n/a (local folder)"
    defaults = service.defaults()
    explain_off = service.explain_unavailable()  # None: the Explain switch is shown

    def settings(threshold: float | None, min_face: float | None, align: bool | None,
                 balanced: bool | None = None, verify: bool | None = None) -> PredictOptions:
        try:
            return service.settings(threshold, min_face, align, balanced, verify)
        except InvalidArgumentError as exc:
            raise gr.Error(str(exc)) from exc

    def predict(image: Any, s: PredictOptions, dropped: list[int] | None = None, rejected: list[int] | None = None,
                photo: bool = True, mesh: bool | None = None) -> tuple[Image.Image, list[FaceResult]]:
        try:
            return service.predict(image, s, dropped=dropped, rejected=rejected, photo=photo, mesh=mesh)
        except InvalidImageError as exc:  # name the upload, not the server's temp path
            message = f"{Path(image).name}: {exc.reason}" if isinstance(image, str) else str(exc)
            raise gr.Error(message) from exc
        except ServerBusyError as exc:
            raise gr.Error(str(exc)) from exc

    def explain(image: Any, s: PredictOptions, target: str | None, method: str | None,
                dropped: list[int] | None = None, rejected: list[int] | None = None,
                mesh: bool | None = None) -> tuple[Image.Image, list[FaceResult], list[FaceSaliency], bytes | None]:
        """:meth:`FERService.explain` with the overlay PNG (downscaled, ``None`` without faces), made
        inside the inference slot."""
        try:
            return service.explain(image, s, target=target, method=method, dropped=dropped, rejected=rejected,
                                   mesh=mesh, overlay_png=True)
        except InvalidImageError as exc:  # name the upload, not the server's temp path
            message = f"{Path(image).name}: {exc.reason}" if isinstance(image, str) else str(exc)
            raise gr.Error(message, print_exception=False) from exc

    def analyze(image: str | None, threshold: float, min_face: float, align: bool, balanced: bool,
                verify: bool = True, draw_mesh: bool = False, explained: bool = False, target: str = PREDICTED):
        if image is None:
            raise gr.Error("Upload, paste or take a photo first.")
        dropped: list[int] = []
        rejected: list[int] = []
        s, mesh = settings(threshold, min_face, align, balanced, verify), True if draw_mesh else None
        saliency = None
        if explained:
            pil, faces, _, png = explain(image, s, target, DEFAULT_METHOD, dropped, rejected, mesh)
            saliency = Image.open(io.BytesIO(png)) if png else None
        else:
            pil, faces = predict(image, s, dropped, rejected, mesh=mesh)
        notice = NO_FACE if not faces else f"**{len(faces)} face{'s' if len(faces) > 1 else ''}** found."
        if sum(rejected):
            notice += f" {faces_rejected_note(sum(rejected))}."
        if sum(dropped):
            gr.Warning(faces_dropped_note(sum(dropped)))
            notice += f" {faces_dropped_note(sum(dropped))}."
        return (annotate(pil, faces, mesh=bool(draw_mesh)), probability_figure(faces, labels), faces_table(faces),
                notice, saliency)

    def live(frame, state: dict | None, threshold: float, min_face: float, align: bool, balanced: bool,
             verify: bool = True):
        state = state or new_live_state()
        if frame is None:
            return None, "", "", gr.skip(), state
        start = time.perf_counter()
        # a webcam frame, not a still photo: the adaptive (speed-first) smallest face
        pil, raw = predict(frame, settings(threshold, min_face, align, balanced, verify), photo=False)
        now = time.monotonic()
        state["t0"] = now if state["t0"] is None else state["t0"]
        faces = state["tracker"].update(raw, now - state["t0"])
        state["timeline"].add(state["frames"], now - state["t0"], faces, raw)
        state["frames"] += 1
        out = annotate(pil, faces)
        ms = (time.perf_counter() - start) * 1000
        state["ms"] = ms if state["ms"] is None else 0.8 * state["ms"] + 0.2 * ms
        shown = "" if state["last"] is None else f", {1 / max(1e-3, now - state['last']):.1f} frames/s shown"
        state["last"] = now
        status = f"processing {state['ms']:.0f} ms/frame (≈{1000 / state['ms']:.0f} fps capacity){shown}"
        plot = gr.skip()
        if state["plotted"] is None or now - state["plotted"] >= LIVE_PLOT_EVERY_S:
            plot, state["plotted"] = timeline_figure(state["timeline"], max_faces=4), now
        return frame_html(out), bars_html(faces, labels), status, plot, state

    def new_live_state() -> dict[str, Any]:
        return {"tracker": FaceTracker(labels), "timeline": Timeline(labels, window_s=LIVE_WINDOW_S), "t0": None,
                "frames": 0, "ms": None, "last": None, "plotted": None}

    def live_csv(state: dict | None):
        if not state or not state["timeline"].frames:
            raise gr.Error("Start the webcam first: the session has no frames yet.")
        path = batch_folder(BATCH_ROOT) / "live_session.csv"
        state["timeline"].to_csv(path)
        return str(path)

    def video_tab(video: str | None, sample_fps: float, smoothing: float, threshold: float, min_face: float,
                  align: bool, balanced: bool, verify: bool = True,
                  progress=gr.Progress(track_tqdm=True)):  # noqa: B008 (gradio API)
        if not video:
            raise gr.Error("Upload a video first.")
        s = settings(threshold, min_face, align, balanced, verify)
        notes = []
        try:
            analysis = run_video(video, s, sample_fps, None, smoothing)
        except VideoTooLongError:
            gr.Warning(f"Only the first {MAX_VIDEO_SECONDS:.0f} s are analysed (this server's limit).")
            notes.append(f"Only the first {MAX_VIDEO_SECONDS:.0f} s analysed.")
            analysis = run_video(video, s, sample_fps, MAX_VIDEO_SECONDS, smoothing)
        if analysis.error:
            gr.Warning(f"{Path(video).name}: {analysis.error}")
            notes.append(f"Problem with the file: {analysis.error}.")
        if analysis.truncated:
            gr.Warning(f"{Path(video).name}: analysis {analysis.truncated}")
            notes.append(f"Analysis {analysis.truncated}: only the part before is shown.")
        if analysis.faces_dropped:
            notes.append(f"{analysis.faces_dropped} faces over the limit per frame were not analysed "
                         "(FER_MAX_FACES).")
        if analysis.faces_rejected:
            notes.append(f"{faces_rejected_note(analysis.faces_rejected)}, over all frames.")
        paths = write_video_outputs(analysis, batch_folder(BATCH_ROOT))
        n = len(analysis.face_ids)
        notice = (f"**{n} face{'s' if n != 1 else ''}** tracked over {analysis.duration_s:.1f} s "
                  f"({len(analysis.frames)} frames analysed)." if n else "**No face found in the video.**")
        notice = " ".join([notice, *notes])
        return (str(paths["video"]), str(paths["png"]), video_summary_table(analysis),
                [str(paths["csv"]), str(paths["json"])], notice)

    def run_video(video: str, s: PredictOptions, sample_fps: float | None, max_seconds: float | None,
                  smoothing: float):
        try:
            return service.analyze_video(video, s, sample_fps=sample_fps, max_seconds=max_seconds,
                                         smoothing=smoothing, progress=True)
        except InvalidVideoError as exc:
            raise gr.Error(f"{Path(video).name}: {exc.reason}") from exc
        except (InvalidArgumentError, ServerBusyError) as exc:
            raise gr.Error(str(exc)) from exc

    def batch(files: list[str] | None, threshold: float, min_face: float, align: bool, balanced: bool,
              verify: bool = True):
        if not files:
            raise gr.Error("Choose one or more image files.")
        items = [(Path(f).name, f) for f in files]
        results = many(items, settings(threshold, min_face, align, balanced, verify), keep_images=True)
        gallery, problems, notes, rejected_notes, n_faces = [], [], [], [], 0
        for r in results:
            if "error" in r:
                gr.Warning(f"{r['file']}: {r['error']}")
                problems.append(f"- `{r['file']}`: {r['error']}")
                continue
            n_faces += len(r["faces"])
            if r.get("note"):
                notes.append(f"- `{r['file']}`: {r['note']}")
            if r.get("faces_rejected"):
                rejected_notes.append(f"- `{r['file']}`: {faces_rejected_note(r['faces_rejected'])}")
            caption = f"{r['file']}: " + (", ".join(f"{i} {f.label} {f.confidence:.0%}"
                                                     for i, f in enumerate(r["_faces"], 1)) or "no face")
            gallery.append((annotate(r["_image"], r["_faces"]), caption))
        csv_path, json_path = write_downloads(results, labels, batch_folder(BATCH_ROOT))
        summary = f"**{len(results) - len(problems)} of {len(results)} files processed, {n_faces} faces.**"
        if problems:
            summary += "\n\nNot processed:\n" + "\n".join(problems)
        if notes:
            summary += "\n\nNot every face analysed:\n" + "\n".join(notes)
        if rejected_notes:
            summary += "\n\nFace verification:\n" + "\n".join(rejected_notes)
        return gallery, [str(csv_path), str(json_path)], summary

    def many(items: list[tuple[str, Any]], s: PredictOptions, keep_images: bool = False) -> list[dict[str, Any]]:
        try:
            return service.predict_many(items, s, keep_images=keep_images)
        except (RequestTooLargeError, ServerBusyError) as exc:
            raise gr.Error(str(exc)) from exc

    def api_predict(image: FileData, detection_threshold: float = defaults.threshold, min_face_size: float = 0,
                    align: bool = defaults.align, balanced: bool = defaults.balanced,
                    verify_faces: bool = defaults.verify_faces) -> list[dict[str, Any]]:
        """Faces in one image: box [x1, y1, x2, y2] pixels, score, label, probs, landmarks, and
        face_prob (FaceMesh face-presence probability, 0..1) when verify_faces. Options default to the
        model's own (see /labels); min_face_size 0 = the default: faces down to 20 px in a still
        photo, with or without verify_faces."""
        path = uploaded_path(image)
        if not path:
            raise gr.Error("no image given")
        dropped: list[int] = []
        _, faces = predict(path, settings(detection_threshold, min_face_size, align, balanced, verify_faces),
                           dropped)
        if sum(dropped):
            gr.Warning(faces_dropped_note(sum(dropped)))
        return [f.to_dict() for f in faces]

    def api_predict_batch(images: list[FileData], detection_threshold: float = defaults.threshold,
                          min_face_size: float = 0, align: bool = defaults.align,
                          balanced: bool = defaults.balanced,
                          verify_faces: bool = defaults.verify_faces) -> list[dict[str, Any]]:
        """One entry per file: {file, faces} or {file, error}; bad files do not stop the others.
        faces_rejected (int): boxes that face verification (verify_faces) rejected in that file."""
        paths = [p for p in map(uploaded_path, images or []) if p]
        items = [(Path(p).name, p) for p in paths]
        return public(many(items, settings(detection_threshold, min_face_size, align, balanced, verify_faces)))

    def api_predict_video(video: FileData, sample_fps: float = DEFAULT_VIDEO_SAMPLE_FPS, max_seconds: float = 0,
                          smoothing: float = DEFAULT_HALF_LIFE_S, detection_threshold: float = defaults.threshold,
                          min_face_size: float = 0, align: bool = defaults.align,
                          balanced: bool = defaults.balanced,
                          verify_faces: bool = defaults.verify_faces) -> dict[str, Any]:
        """Faces tracked through a video: {video, error, truncated (why the analysis stopped early,
        else null), faces_dropped, faces_rejected (boxes face verification rejected), labels,
        frames_analyzed, summary (per face: seconds visible, share of time per label), rows (per face
        per analysed frame: time_s, face_id, box, label, smoothed probs, raw_probs)}. sample_fps 0 =
        every frame; max_seconds 0 = all."""
        path = uploaded_path(video)
        if not path:
            raise gr.Error("no video given")
        s = settings(detection_threshold, min_face_size, align, balanced, verify_faces)
        try:
            analysis = run_video(path, s, sample_fps, max_seconds or None, smoothing)
        except VideoTooLongError as exc:
            raise gr.Error(str(exc)) from exc
        return analysis.to_dict()

    def api_explain(image: FileData, target: str = PREDICTED,
                    method: str = DEFAULT_METHOD) -> tuple[dict[str, Any], FileData | None]:
        """Where the network looked, per face (Grad-CAM saliency maps): {faces: [{face (as /predict),
        target (the label explained), method, layer, transform (the face crop in the image: cx, cy, side
        in pixels, angle in radians, size), heatmap (32 x 32 rows of floats in [0, 1] over the crop)}]}, and
        the image with every map blended in (PNG, at most 1024 px on its longer side; None when no face
        was found). target: "predicted" (each face's own label) or one of
        the labels (see /labels); method: gradcam, gradcam++ or layercam. Detection uses the model's
        default options. Needs the torch extra on the server (else an error saying what to install)."""
        path = uploaded_path(image)
        if not path:
            raise gr.Error("no image given")
        _, _, maps, png = explain(path, defaults, target, method)
        if png is None:
            return explain_document(maps), None
        out = batch_folder(BATCH_ROOT) / "explanation.png"
        out.write_bytes(png)
        return explain_document(maps), FileData(path=str(out))

    # gr.api reads the return annotation unevaluated, a string under `from __future__ import annotations`: the
    # evaluated tuple makes it two outputs (the JSON and the image file) instead of one holding both
    api_explain.__annotations__["return"] = tuple[dict[str, Any], FileData | None]

    def api_labels() -> dict[str, Any]:
        """Labels in output order, model id and revision."""
        return service.info()

    analyze, live, live_csv, video_tab, batch = map(guarded, (analyze, live, live_csv, video_tab, batch))
    api_predict, api_predict_batch, api_predict_video, api_explain, api_labels = map(
        guarded, (api_predict, api_predict_batch, api_predict_video, api_explain, api_labels))

    # Uploads and outputs in Gradio's cache are deleted every CACHE_SWEEP_EVERY_S seconds once older
    # than CACHE_MAX_AGE_S (the app's own download folders: service.batch_folder).
    with gr.Blocks(title="Facial expression recognition",
                   delete_cache=(CACHE_SWEEP_EVERY_S, CACHE_MAX_AGE_S)) as demo:
        gr.Markdown(
            "# Facial expression recognition\n"
            f"Model **{escape(info['model'])}** (revision `{revision}`, {info['backbone']}) · labels: "
            + ", ".join(labels)
            + "\n\nShows the *apparent* expression of every face. Not a medical device."
        )
        with gr.Row():
            threshold = gr.Slider(*THRESHOLD_RANGE, value=defaults.threshold, step=0.01, label="Detection threshold")
            min_face = gr.Number(value=defaults.min_face_size or 0, minimum=0, precision=0,
                                 label="Minimum face size (px, 0 = auto)")
            align = gr.Checkbox(value=defaults.align, label="Align faces (level the eyes)")
            balanced = gr.Checkbox(value=defaults.balanced, interactive=info["balanced_available"],
                                   label="Balanced decisions (correct for rare expressions)", elem_id="balanced",
                                   info="Divide by how common each expression was in training, so fear, "
                                        "disgust and contempt are not out-voted by neutral")
            verify = gr.Checkbox(value=defaults.verify_faces, label="Verify faces (FaceMesh)", elem_id="verify",
                                 info="Keep only the boxes MediaPipe FaceMesh confirms as faces (drops patterns, "
                                      "hands and fabric that the detector took for a face)")
        with gr.Tabs():
            with gr.Tab("Image"):
                with gr.Row():
                    image_in = gr.Image(sources=["upload", "clipboard", "webcam"], type="filepath", label="Photo")
                    image_out = gr.Image(label="Faces", elem_id="annotated")
                with gr.Row():
                    run = gr.Button("Analyse", variant="primary")
                    draw_mesh = gr.Checkbox(value=False, label="Draw face mesh", elem_id="draw-mesh",
                                            info="FaceMesh's 468 points as dots in each face's colour")
                    explained = gr.Checkbox(value=False, label="Explain (Grad-CAM)", elem_id="explain",
                                            visible=explain_off is None,
                                            info="Where the network looked for the label: a heatmap per face "
                                                 "(about 10-15 ms a face; the first one loads the model)")
                    target = gr.Dropdown([PREDICTED, *labels], value=PREDICTED, label="Explain which label",
                                         elem_id="explain-target", visible=False,
                                         info="predicted: each face's own label")
                saliency_out = gr.Image(label="Where the network looked (Grad-CAM)", elem_id="saliency",
                                        interactive=False, visible=False)
                notice = gr.Markdown(elem_id="notice")
                bars = gr.Plot(label="Probabilities per face", elem_id="bars")
                table = gr.Dataframe(headers=["face", "box (x1, y1, x2, y2)", "top emotion", "confidence %"],
                                     label="Faces", elem_id="faces-table")
                gr.Examples([[str(p)] for p in sorted(EXAMPLES.glob("*.jpg"))], inputs=[image_in])
                for trigger in (run.click, image_in.upload):
                    trigger(analyze, [image_in, threshold, min_face, align, balanced, verify, draw_mesh, explained,
                                      target],
                            [image_out, bars, table, notice, saliency_out],
                            api_visibility="private")
                explained.change(lambda on: (gr.update(visible=on), gr.update(visible=on)), explained,
                                 [target, saliency_out], api_visibility="private", queue=False)
            with gr.Tab("Live webcam"):
                with gr.Row():
                    cam = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="Webcam")
                    # HTML with a data URL, not gr.Image: Gradio saves image outputs to its cache,
                    # and a webcam stream must leave no face image on disk (README, Limits)
                    live_out = gr.HTML(elem_id="live-out")
                live_status = gr.Markdown(elem_id="live-status")
                live_bars = gr.HTML(elem_id="live-bars")
                live_plot = gr.Plot(label=f"Timeline (last {LIVE_WINDOW_S / 60:.0f} minutes, redrawn every "
                                          f"{LIVE_PLOT_EVERY_S:.0f} s)", elem_id="live-timeline")
                with gr.Row():
                    live_csv_button = gr.Button("Download this session (CSV)")
                    live_csv_file = gr.File(label="Session CSV", elem_id="live-csv")
                live_state = gr.State(None)
                cam.stream(live, [cam, live_state, threshold, min_face, align, balanced, verify],
                           [live_out, live_bars, live_status, live_plot, live_state], stream_every=STREAM_EVERY,
                           concurrency_limit=2, time_limit=3600, show_progress="hidden",
                           api_visibility="private")
                live_csv_button.click(live_csv, live_state, live_csv_file, api_visibility="private")
            with gr.Tab("Video"):
                gr.Markdown("Faces are tracked through the clip (ids stay with a face); probabilities are "
                            f"smoothed over time. At most {MAX_VIDEO_SECONDS:.0f} s per video here.")
                with gr.Row():
                    video_in = gr.Video(sources=["upload"], label="Video", elem_id="video-in")
                    video_out = gr.Video(label="Tracked faces", elem_id="video-out")
                with gr.Row():
                    video_fps = gr.Slider(0, MAX_SAMPLE_FPS, value=DEFAULT_VIDEO_SAMPLE_FPS, step=1,
                                          label="Frames analysed per second (0 = every frame)")
                    video_smoothing = gr.Slider(*SMOOTHING_RANGE_S, value=DEFAULT_HALF_LIFE_S, step=0.05,
                                                label="Smoothing half-life (s, 0 = none)")
                video_go = gr.Button("Analyse video", variant="primary")
                video_notice = gr.Markdown(elem_id="video-notice")
                video_plot = gr.Image(label="Timeline", type="filepath", elem_id="video-timeline")
                video_table = gr.Dataframe(headers=["face", "seconds visible", "first s", "last s", "dominant",
                                                    "share of time"], label="Faces", elem_id="video-summary")
                video_files = gr.File(label="Download (CSV, JSON)", file_count="multiple", elem_id="video-downloads")
                video_go.click(video_tab, [video_in, video_fps, video_smoothing, threshold, min_face, align, balanced,
                                           verify],
                               [video_out, video_plot, video_table, video_files, video_notice],
                               concurrency_limit=1, api_visibility="private")
            with gr.Tab("Monitoring"):
                build_monitoring_tab(monitoring, monitoring_off_reason)
            with gr.Tab("Batch"):
                files = gr.File(file_count="multiple", type="filepath", label="Images")
                go = gr.Button("Analyse all", variant="primary")
                batch_notice = gr.Markdown(elem_id="batch-notice")
                gallery = gr.Gallery(label="Annotated", columns=3, elem_id="gallery")
                downloads = gr.File(label="Download every face (CSV, JSON)", file_count="multiple",
                                    elem_id="downloads")
                go.click(batch, [files, threshold, min_face, align, balanced, verify],
                         [gallery, downloads, batch_notice], api_visibility="private")
        gr.api(api_predict, api_name="predict")
        gr.api(api_predict_batch, api_name="predict_batch")
        gr.api(api_predict_video, api_name="predict_video", concurrency_limit=1)
        gr.api(api_explain, api_name="explain")
        gr.api(api_labels, api_name="labels")
    # Gradio's own line of events is bounded too (a full one tells the client "queue is full" instead of
    # growing); the inference limit itself is the service's limiter, shared with the REST routes.
    demo.queue(max_size=GRADIO_QUEUE_SIZE)
    return demo

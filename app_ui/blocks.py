"""The Gradio UI: Image, Live webcam and Batch tabs, plus named API endpoints for gradio_client.

Endpoints (``client.view_api()``): ``/predict`` (one image -> JSON list of faces), ``/predict_batch``
(several files -> JSON per file, errors included), ``/labels`` (labels and model id/revision).
"""

from __future__ import annotations

import tempfile
import time
from html import escape
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from fer_core import FaceResult, InvalidImageError
from fer_core.draw import annotate, label_color, probability_figure

from .service import FERService, Settings, batch_folder, faces_table, public, write_downloads
from .tracking import FaceTracker

EXAMPLES = Path(__file__).resolve().parent / "examples"
#: Where the batch tab writes its CSV/JSON downloads (pruned after an hour).
BATCH_ROOT = Path(tempfile.gettempdir()) / "fer_batches"
#: Seconds between webcam frames sent to the server (at most 10 frames/s per viewer).
STREAM_EVERY = 0.1

NO_FACE = ("**No face detected.** Try a larger or sharper face, a lower detection threshold or a smaller "
           "minimum face size.")


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
            f'width:{100 * f.probs[k]:.1f}%;background:{label_color(k)}"></span></span>'
            f'<span style="width:40px;text-align:right">{100 * f.probs[k]:.0f}%</span></div>'
            for k in labels
        )
        panels.append(f'<div class="face-bars" style="min-width:240px;flex:1"><b>Face {i}: '
                      f'{escape(f.label)} {f.confidence:.0%}</b>{rows}</div>')
    return f'<div style="display:flex;flex-wrap:wrap;gap:16px">{"".join(panels)}</div>'


def build_blocks(service: FERService) -> gr.Blocks:
    """Build the app's ``gr.Blocks`` around a loaded :class:`FERService`."""
    info = service.info()
    labels = info["labels"]
    revision = info["revision"] or "n/a (local folder)"
    default_balanced = bool(info["balanced_default"])

    def settings(threshold: float, min_face: float, align: bool, balanced: bool | None = None) -> Settings:
        try:
            return service.settings(threshold, min_face, align, balanced)
        except ValueError as exc:
            raise gr.Error(str(exc)) from None

    def predict(image: Any, s: Settings) -> tuple[Image.Image, list[FaceResult]]:
        try:
            return service.predict(image, s)
        except InvalidImageError as exc:  # name the upload, not the server's temp path
            message = f"{Path(image).name}: {exc.reason}" if isinstance(image, str) else str(exc)
            raise gr.Error(message) from None

    def analyze(image: str | None, threshold: float, min_face: float, align: bool, balanced: bool):
        if image is None:
            raise gr.Error("Upload, paste or take a photo first.")
        pil, faces = predict(image, settings(threshold, min_face, align, balanced))
        notice = NO_FACE if not faces else f"**{len(faces)} face{'s' if len(faces) > 1 else ''}** found."
        return annotate(pil, faces), probability_figure(faces, labels), faces_table(faces), notice

    def live(frame, state: dict | None, threshold: float, min_face: float, align: bool, balanced: bool):
        state = state or {"tracker": FaceTracker(labels), "ms": None, "last": None}
        if frame is None:
            return None, "", "", state
        start = time.perf_counter()
        pil, faces = predict(frame, settings(threshold, min_face, align, balanced))
        faces = state["tracker"].update(faces)
        out = annotate(pil, faces)
        ms = (time.perf_counter() - start) * 1000
        state["ms"] = ms if state["ms"] is None else 0.8 * state["ms"] + 0.2 * ms
        now = time.perf_counter()
        shown = "" if state["last"] is None else f", {1 / max(1e-3, now - state['last']):.1f} frames/s shown"
        state["last"] = now
        status = f"processing {state['ms']:.0f} ms/frame (≈{1000 / state['ms']:.0f} fps capacity){shown}"
        return out, bars_html(faces, labels), status, state

    def batch(files: list[str] | None, threshold: float, min_face: float, align: bool, balanced: bool):
        if not files:
            raise gr.Error("Choose one or more image files.")
        items = [(Path(f).name, f) for f in files]
        results = service.predict_many(items, settings(threshold, min_face, align, balanced))
        gallery, problems, n_faces = [], [], 0
        for r in results:
            if "error" in r:
                gr.Warning(f"{r['file']}: {r['error']}")
                problems.append(f"- `{r['file']}`: {r['error']}")
                continue
            n_faces += len(r["faces"])
            caption = f"{r['file']}: " + (", ".join(f"{i} {f.label} {f.confidence:.0%}"
                                                     for i, f in enumerate(r["_faces"], 1)) or "no face")
            gallery.append((annotate(r["_image"], r["_faces"]), caption))
        csv_path, json_path = write_downloads(results, labels, batch_folder(BATCH_ROOT))
        summary = f"**{len(results) - len(problems)} of {len(results)} files processed, {n_faces} faces.**"
        if problems:
            summary += "\n\nNot processed:\n" + "\n".join(problems)
        return gallery, [str(csv_path), str(json_path)], summary

    def api_predict(image: str, detection_threshold: float = 0.9, min_face_size: float = 0,
                    align: bool = True, balanced: bool = default_balanced) -> list[dict[str, Any]]:
        """Faces in one image: box [x1, y1, x2, y2] pixels, score, label, probs, landmarks."""
        if not image:
            raise gr.Error("no image given")
        _, faces = predict(image, settings(detection_threshold, min_face_size, align, balanced))
        return [f.to_dict() for f in faces]

    def api_predict_batch(images: list[str], detection_threshold: float = 0.9, min_face_size: float = 0,
                          align: bool = True, balanced: bool = default_balanced) -> list[dict[str, Any]]:
        """One entry per file: {file, faces} or {file, error}; bad files do not stop the others."""
        items = [(Path(f).name, f) for f in images or []]
        return public(service.predict_many(items, settings(detection_threshold, min_face_size, align, balanced)))

    def api_labels() -> dict[str, Any]:
        """Labels in output order, model id and revision."""
        return service.info()

    with gr.Blocks(title="Facial expression recognition") as demo:
        gr.Markdown(
            "# Facial expression recognition\n"
            f"Model **{escape(info['model'])}** (revision `{revision}`, {info['backbone']}) · labels: "
            + ", ".join(labels)
            + "\n\nShows the *apparent* expression of every face. Not a medical device."
        )
        with gr.Row():
            threshold = gr.Slider(0.5, 1.0, value=0.9, step=0.01, label="Detection threshold")
            min_face = gr.Number(value=0, minimum=0, precision=0, label="Minimum face size (px, 0 = auto)")
            align = gr.Checkbox(value=True, label="Align faces (level the eyes)")
            balanced = gr.Checkbox(value=default_balanced, interactive=info["balanced_available"],
                                   label="Balanced decisions (correct for rare expressions)", elem_id="balanced",
                                   info="Divide by how common each expression was in training, so fear, "
                                        "disgust and contempt are not out-voted by neutral")
        with gr.Tabs():
            with gr.Tab("Image"):
                with gr.Row():
                    image_in = gr.Image(sources=["upload", "clipboard", "webcam"], type="filepath", label="Photo")
                    image_out = gr.Image(label="Faces", elem_id="annotated")
                run = gr.Button("Analyse", variant="primary")
                notice = gr.Markdown(elem_id="notice")
                bars = gr.Plot(label="Probabilities per face", elem_id="bars")
                table = gr.Dataframe(headers=["face", "box (x1, y1, x2, y2)", "top emotion", "confidence %"],
                                     label="Faces", elem_id="faces-table")
                gr.Examples([[str(p)] for p in sorted(EXAMPLES.glob("*.jpg"))], inputs=[image_in])
                for trigger in (run.click, image_in.upload):
                    trigger(analyze, [image_in, threshold, min_face, align, balanced], [image_out, bars, table, notice],
                            api_visibility="private")
            with gr.Tab("Live webcam"):
                with gr.Row():
                    cam = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="Webcam")
                    live_out = gr.Image(label="Live", elem_id="live-out")
                live_status = gr.Markdown(elem_id="live-status")
                live_bars = gr.HTML(elem_id="live-bars")
                live_state = gr.State(None)
                cam.stream(live, [cam, live_state, threshold, min_face, align, balanced],
                           [live_out, live_bars, live_status, live_state], stream_every=STREAM_EVERY,
                           concurrency_limit=2, time_limit=3600, show_progress="hidden",
                           api_visibility="private")
            with gr.Tab("Batch"):
                files = gr.File(file_count="multiple", type="filepath", label="Images")
                go = gr.Button("Analyse all", variant="primary")
                batch_notice = gr.Markdown(elem_id="batch-notice")
                gallery = gr.Gallery(label="Annotated", columns=3, elem_id="gallery")
                downloads = gr.File(label="Download every face (CSV, JSON)", file_count="multiple",
                                    elem_id="downloads")
                go.click(batch, [files, threshold, min_face, align, balanced], [gallery, downloads, batch_notice],
                         api_visibility="private")
        with gr.Row(visible=False):
            a_image = gr.File(type="filepath", label="image")
            a_images = gr.File(type="filepath", file_count="multiple", label="images")
            a_threshold = gr.Number(value=0.9, label="detection_threshold")
            a_min_face = gr.Number(value=0, label="min_face_size")
            a_align = gr.Checkbox(value=True, label="align")
            a_balanced = gr.Checkbox(value=default_balanced, label="balanced")
            a_out = gr.JSON(label="result")
            a_button = gr.Button()
        a_button.click(api_predict, [a_image, a_threshold, a_min_face, a_align, a_balanced], a_out,
                       api_name="predict")
        a_button.click(api_predict_batch, [a_images, a_threshold, a_min_face, a_align, a_balanced], a_out,
                       api_name="predict_batch")
        a_button.click(api_labels, None, a_out, api_name="labels")
    return demo

"""Pictures of results: boxes and tags on the image, and one probability-bar panel per face."""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

from .labels import LABELS
from .result import FaceResult

#: One colour per FER+ label (colour-blind-friendly Okabe-Ito palette plus grey for neutral).
LABEL_COLORS: dict[str, str] = {
    "neutral": "#9e9e9e",
    "happiness": "#E69F00",
    "surprise": "#56B4E9",
    "sadness": "#0072B2",
    "anger": "#D55E00",
    "disgust": "#009E73",
    "fear": "#CC79A7",
    "contempt": "#7f3c8d",
}


def label_color(label: str) -> str:
    """Hex colour used for ``label`` (a fixed grey-blue for labels outside FER+)."""
    return LABEL_COLORS.get(label, "#4c72b0")


def annotate(image: Image.Image, faces: Sequence[FaceResult]) -> Image.Image:
    """Draw numbered boxes with ``"1 happiness 87%"`` tags on a copy of ``image``.

    Line width and font size scale with the image. Face numbers start at 1 in ``faces`` order
    (reading order for :meth:`EmotionRecognizer.predict`), matching :func:`probability_figure`.

    Args:
        image: the image the boxes refer to (PIL, any mode; use the oriented image from
            :func:`fer_core.io.load_image`).
        faces: results for that image.

    Returns:
        A new RGB ``PIL.Image`` of the same size.
    """
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    scale = max(out.size) / 640
    width = max(2, round(2 * scale))
    font = ImageFont.load_default(size=max(12, round(15 * scale)))
    for i, face in enumerate(faces, start=1):
        color = label_color(face.label)
        x1, y1, x2, y2 = (round(v) for v in face.box)
        draw.rectangle((x1, y1, x2, y2), outline=color, width=width)
        text = f"{i} {face.label} {face.confidence:.0%}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th = right - left, bottom - top
        pad = max(2, width)
        ty = y1 - th - 2 * pad if y1 - th - 2 * pad >= 0 else y2  # above the box, or below it
        tx = min(max(0, x1), max(0, out.width - tw - 2 * pad))
        draw.rectangle((tx, ty, tx + tw + 2 * pad, ty + th + 2 * pad), fill=color)
        draw.text((tx + pad - left, ty + pad - top), text, fill="white", font=font)
    return out


def probability_figure(faces: Sequence[FaceResult], labels: Sequence[str] = LABELS,
                       columns: int = 2) -> Figure:
    """One horizontal probability-bar panel per face, titled with the face number.

    Uses ``matplotlib.figure.Figure`` directly (no pyplot state), so it is safe in servers.

    Args:
        faces: results, numbered from 1 in this order.
        labels: the label order of the bars (all labels are shown for every face).
        columns: panels per row.

    Returns:
        A matplotlib ``Figure``; with no faces, a small figure saying "No face detected".
    """
    if not faces:
        fig = Figure(figsize=(4, 1.2))
        fig.text(0.5, 0.5, "No face detected", ha="center", va="center", fontsize=12)
        return fig
    cols = max(1, min(columns, len(faces)))
    rows = (len(faces) + cols - 1) // cols
    fig = Figure(figsize=(4.2 * cols, 0.32 * len(labels) * rows + 0.6 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat[len(faces):]:
        ax.set_visible(False)
    for i, (face, ax) in enumerate(zip(faces, axes.flat), start=1):
        values = [face.probs.get(label, 0.0) for label in labels]
        ax.barh(range(len(labels)), values, color=[label_color(label) for label in labels])
        ax.set_yticks(range(len(labels)), labels)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.xaxis.set_major_formatter(lambda x, _: f"{x:.0%}")
        for y, v in enumerate(values):
            ax.text(min(v + 0.01, 0.86), y, f"{v:.0%}", va="center", fontsize=8)
        ax.set_title(f"Face {i}: {face.label} {face.confidence:.0%}", fontsize=10)
    return fig

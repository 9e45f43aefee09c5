"""Results drawn on the image: a box and a tag per face (the plots are in :mod:`fer_core.plots`)."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

from .labels import label_color
from .result import FaceResult


def annotate(image: Image.Image, faces: Sequence[FaceResult], mesh: bool = False) -> Image.Image:
    """Draw numbered boxes with ``"1 happiness 87%"`` tags on a copy of ``image``, and with
    ``mesh=True`` each face's 468 FaceMesh points as small dots in the face's colour.

    Line width, dot size and font size scale with the image. Face numbers start at 1 in ``faces`` order
    (reading order for :meth:`EmotionRecognizer.predict`), matching :func:`fer_core.plots.probability_figure`.

    Args:
        image: the image the boxes refer to (PIL, any mode; use the oriented image from
            :func:`fer_core.io.load_image`).
        faces: results for that image.
        mesh: also draw :attr:`FaceResult.mesh` (``x, y`` pixels of the same image; ``z`` is ignored)
            as dots of radius ``max(1, longer side / 640)`` pixels; faces without a mesh get none.

    Returns:
        A new RGB ``PIL.Image`` of the same size.
    """
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    scale = max(out.size) / 640
    width = max(2, round(2 * scale))
    font = ImageFont.load_default(size=max(12, round(15 * scale)))
    for i, face in enumerate(faces, start=1):
        color = label_color(face.label, list(face.probs))
        x1, y1, x2, y2 = (round(v) for v in face.box)
        draw.rectangle((x1, y1, x2, y2), outline=color, width=width)
        if mesh and face.mesh is not None:
            radius = max(1.0, scale)
            for x, y in face.mesh[:, :2].tolist():
                draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=color)
        text = f"{i} {face.label} {face.confidence:.0%}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th = right - left, bottom - top
        pad = max(2, width)
        ty = y1 - th - 2 * pad if y1 - th - 2 * pad >= 0 else y2  # above the box, or below it
        tx = min(max(0, x1), max(0, out.width - tw - 2 * pad))
        draw.rectangle((tx, ty, tx + tw + 2 * pad, ty + th + 2 * pad), fill=color)
        draw.text((tx + pad - left, ty + pad - top), text, fill="white", font=font)
    return out

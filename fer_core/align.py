"""Face alignment and cropping: level the eyes, then cut a square crop with a margin (or a negative one).

Rotating the face so the line between the eyes is horizontal, using the detector's landmarks, is
the usual normalisation of FER pipelines (e.g. the dlib-aligned crops of Kazemi & Sullivan 2014 /
OpenFace); FER2013 faces are roughly upright and centred, so this brings arbitrary photos closer
to the training data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image

from .errors import InvalidArgumentError

#: Crops larger than this many pixels per side are produced at this size (the classifier resizes
#: them to its own, much smaller, input anyway).
MAX_CROP_SIZE: int = 256


def eye_angle(landmarks: np.ndarray) -> float:
    """Angle of the line from the left eye to the right eye, radians, positive when the right eye
    (as seen in the image) is lower.

    Args:
        landmarks: ``(5, 2)`` ``(x, y)`` pixels in MTCNN order (left eye, right eye, nose,
            mouth left, mouth right).
    """
    (lx, ly), (rx, ry) = landmarks[0], landmarks[1]
    return math.atan2(float(ry - ly), float(rx - lx))


def crop_face(
    image: Image.Image,
    box: Sequence[float],
    landmarks: np.ndarray | None = None,
    margin: float = 0.2,
    align: bool = True,
    max_size: int = MAX_CROP_SIZE,
) -> Image.Image:
    """Cut one square face crop out of ``image``, rotated so the eyes are level.

    The crop is centred on the box centre; its side is ``max(w, h) * (1 + margin)`` pixels of
    ``image``. Areas outside the image are filled with black.

    Args:
        image: the full image (PIL, any mode).
        box: ``(x1, y1, x2, y2)`` float pixels in ``image``.
        landmarks: ``(5, 2)`` landmarks in ``image``'s frame; needed when ``align`` is true
            (without them no rotation is applied).
        margin: border added around the box, as a fraction of its longer side (> -1; negative
            cuts the square tighter than the box's longer side, e.g. -0.05 = 5 % smaller).
        align: rotate so the eyes are level.
        max_size: the crop's side in pixels is ``min(round(side), max_size)``.

    Returns:
        Square ``PIL.Image`` in ``image``'s mode, side between 1 and ``max_size`` pixels.

    Raises:
        InvalidArgumentError: ``margin`` is -1 or less, or the box is empty.
    """
    if not margin > -1:
        raise InvalidArgumentError(f"margin must be > -1, got {margin}")
    x1, y1, x2, y2 = (float(v) for v in box)
    if x2 <= x1 or y2 <= y1:
        raise InvalidArgumentError(f"empty box {tuple(box)}")
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    side = max(x2 - x1, y2 - y1) * (1.0 + margin)
    theta = eye_angle(landmarks) if (align and landmarks is not None) else 0.0
    out = max(1, min(int(round(side)), max_size))

    # Cut the axis-aligned region the rotated square can touch (no resampling), shrink it with a
    # box filter when it is much larger than the output, then do one affine resample.
    half = side * (abs(math.cos(theta)) + abs(math.sin(theta))) / 2.0 + 2.0
    left, top = int(math.floor(cx - half)), int(math.floor(cy - half))
    right, bottom = int(math.ceil(cx + half)), int(math.ceil(cy + half))
    region = image.crop((left, top, right, bottom))
    factor = max(1, int(side // (2 * out)))
    if factor > 1:
        region = region.reduce(factor)
    rcx, rcy = (cx - left) / factor, (cy - top) / factor
    step = side / factor / out  # region pixels per output pixel
    a, b = step * math.cos(theta), -step * math.sin(theta)
    d, e = step * math.sin(theta), step * math.cos(theta)
    c = rcx - (a + b) * out / 2.0
    f = rcy - (d + e) * out / 2.0
    return region.transform((out, out), Image.Transform.AFFINE, (a, b, c, d, e, f),
                            resample=Image.Resampling.BILINEAR)

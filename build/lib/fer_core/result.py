"""FaceResult: one face found in an image and its emotion probabilities.

A light module (numpy only), so code that draws, tracks or stores results does not import the
recognizer, torch models or the face detector.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class FaceResult:
    """One face found in an image and its emotion probabilities.

    Attributes:
        box: ``(x1, y1, x2, y2)`` float pixels in the input image (after EXIF orientation).
        score: detection probability, 0..1.
        landmarks: float32 ``(5, 2)`` ``(x, y)`` pixels: left eye, right eye, nose, mouth left,
            mouth right.
        probs: label -> calibrated probability (0..1), in the model's label order, summing to 1.
        label: the label with the highest probability.
        face_id: the identity given by a :class:`~fer_core.track.FaceTracker` (stable across the
            frames of a video or stream, from 1); ``None`` for a single image.
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray
    probs: dict[str, float]
    label: str
    face_id: int | None = None

    @property
    def confidence(self) -> float:
        """Probability of :attr:`label`."""
        return self.probs[self.label]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict: box, score, landmarks (list of [x, y]), label, probs, and
        face_id when the face is tracked."""
        out: dict[str, Any] = {} if self.face_id is None else {"face_id": self.face_id}
        return out | {
            "box": [round(v, 2) for v in self.box],
            "score": round(self.score, 5),
            "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks],
            "label": self.label,
            "probs": {k: round(v, 6) for k, v in self.probs.items()},
        }

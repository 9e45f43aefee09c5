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
        face_prob: MediaPipe FaceMesh's face-presence probability (0..1) when the face was verified
            (``verify_faces=True``, the default); ``None`` otherwise.
        mesh: float32 ``(468, 3)`` FaceMesh landmarks (``x, y`` image pixels, ``z`` relative depth in
            pixels; MediaPipe's face-mesh topology) when FaceMesh ran on the face; ``None`` otherwise.
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray
    probs: dict[str, float]
    label: str
    face_id: int | None = None
    face_prob: float | None = None
    mesh: np.ndarray | None = None

    @property
    def confidence(self) -> float:
        """Probability of :attr:`label`."""
        return self.probs[self.label]

    def to_dict(self, mesh: bool = False) -> dict[str, Any]:
        """JSON-serialisable dict: box, score, landmarks (list of [x, y]), label, probs, and
        face_id when the face is tracked, face_prob when it was verified, and with ``mesh=True``
        the 468 mesh points (list of [x, y, z], about 15 kB per face) when computed."""
        out: dict[str, Any] = {} if self.face_id is None else {"face_id": self.face_id}
        out |= {
            "box": [round(v, 2) for v in self.box],
            "score": round(self.score, 5),
            "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks],
            "label": self.label,
            "probs": {k: round(v, 6) for k, v in self.probs.items()},
        }
        if self.face_prob is not None:
            out["face_prob"] = round(self.face_prob, 5)
        if mesh and self.mesh is not None:
            out["mesh"] = [[round(float(v), 2) for v in point] for point in self.mesh]
        return out

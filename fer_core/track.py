"""Follow faces across the frames of a video or a live stream.

Faces are matched frame to frame by box overlap with the Hungarian assignment (maximum total IoU,
``scipy.optimize.linear_sum_assignment`` on the boxes' IoU, :func:`box_iou`), so every face keeps a
stable integer ``face_id``; a track survives short detection misses; and each track's
probabilities are smoothed by an exponential moving average whose strength is a half-life in
seconds, so it means the same at 5 or 30 frames per second and on a live stream's uneven frames.

Kuhn, "The Hungarian method for the assignment problem", Naval Research Logistics Quarterly 1955;
the IoU-plus-assignment tracker is SORT's association step without its Kalman filter (Bewley et
al., "Simple Online and Realtime Tracking", ICIP 2016).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import linear_sum_assignment

from .errors import InvalidArgumentError
from .options import DEFAULT_HALF_LIFE_S
from .result import FaceResult


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box of ``a`` with every box of ``b``, as
    ``torchvision.ops.box_iou`` computes it, without torch (the ONNX inference path imports none).

    Args:
        a: float ``(N, 4)`` ``xyxy`` boxes in pixels.
        b: float ``(M, 4)`` ``xyxy`` boxes in pixels.

    Returns:
        float64 ``(N, M)`` in [0, 1]; 0 where both boxes are empty (torchvision gives NaN there).
    """
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0.0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


#: Default overlap a face needs with a track's last box to continue it.
DEFAULT_MIN_IOU: float = 0.3
#: Default seconds a track survives without a matching face (a blink of the detector, a turned head).
DEFAULT_MAX_MISSED_S: float = 1.0


def ema_weight(dt_s: float, half_life_s: float) -> float:
    """Weight of the newest observation in the moving average after ``dt_s`` seconds.

    ``1 - 0.5 ** (dt_s / half_life_s)``, in 0..1; 1 (no smoothing) when ``half_life_s`` is 0.
    """
    if half_life_s <= 0:
        return 1.0
    return 1.0 - math.pow(0.5, max(0.0, dt_s) / half_life_s)


@dataclass
class Track:
    """One face followed across frames.

    Attributes:
        face_id: stable identity, from 1 in order of first appearance.
        box: the last matched ``(x1, y1, x2, y2)`` box, pixels.
        probs: float64 ``(num_classes,)`` smoothed probabilities, summing to 1.
        last_time_s: when the face was last seen.
        missed: whether a frame since ``last_time_s`` came without this face.
    """

    face_id: int
    box: tuple[float, float, float, float]
    probs: np.ndarray
    last_time_s: float
    missed: bool = False


class FaceTracker:
    """Hungarian IoU tracker with time-based EMA smoothing of the probabilities.

    Call :meth:`update` once per frame, in time order, with that frame's faces.

    Args:
        labels: label names, in probability order (``EmotionRecognizer.labels``).
        half_life_s: smoothing half-life in seconds (see :func:`ema_weight`); 0 = no smoothing.
        min_iou: overlap (0..1) a face needs with a track's last box to continue it.
        max_missed_s: seconds a track survives without a matching face, counted from when it was
            last seen and ended only once a frame has come without it; a face that comes back
            later gets a new id. A slow stream (frames further apart than this, e.g. a live
            webcam on a busy CPU) keeps its ids as long as every frame shows the face.

    Raises:
        InvalidArgumentError: a parameter is out of range.
    """

    def __init__(self, labels: Sequence[str], *, half_life_s: float = DEFAULT_HALF_LIFE_S,
                 min_iou: float = DEFAULT_MIN_IOU, max_missed_s: float = DEFAULT_MAX_MISSED_S) -> None:
        if not half_life_s >= 0:
            raise InvalidArgumentError(f"half_life_s must be >= 0 seconds, got {half_life_s}")
        if not 0 < min_iou <= 1:
            raise InvalidArgumentError(f"min_iou must be in (0, 1], got {min_iou}")
        if not max_missed_s >= 0:
            raise InvalidArgumentError(f"max_missed_s must be >= 0 seconds, got {max_missed_s}")
        self.labels = list(labels)
        self.half_life_s, self.min_iou, self.max_missed_s = float(half_life_s), float(min_iou), float(max_missed_s)
        self.tracks: list[Track] = []
        self._next_id = 1
        self._last_time: float | None = None

    def update(self, faces: Sequence[FaceResult], time_s: float) -> list[FaceResult]:
        """Feed one frame's faces.

        Args:
            faces: this frame's faces (their ``probs`` are the raw per-frame probabilities).
            time_s: the frame's time in seconds; must not go backwards.

        Returns:
            The same faces, in input order, with ``face_id`` set and ``probs``/``label`` replaced
            by the track's smoothed probabilities.

        Raises:
            InvalidArgumentError: ``time_s`` is earlier than the previous frame's.
        """
        time_s = float(time_s)
        if self._last_time is not None and time_s < self._last_time:
            raise InvalidArgumentError(f"frames must come in time order: {time_s} s after {self._last_time} s")
        self._last_time = time_s
        self.tracks = [t for t in self.tracks if not (t.missed and time_s - t.last_time_s > self.max_missed_s)]
        matches = self._match(faces)
        matched = {id(t) for t in matches.values()}
        for track in self.tracks:
            track.missed = id(track) not in matched
        out = []
        for fi, face in enumerate(faces):
            current = np.array([face.probs[k] for k in self.labels], dtype=np.float64)
            track = matches.get(fi)
            if track is None:
                track = Track(self._next_id, face.box, current, time_s)
                self._next_id += 1
                self.tracks.append(track)
            else:
                w = ema_weight(time_s - track.last_time_s, self.half_life_s)
                track.probs = w * current + (1 - w) * track.probs
                track.box, track.last_time_s = face.box, time_s
            probs = track.probs / track.probs.sum()
            smoothed = {k: float(v) for k, v in zip(self.labels, probs)}
            out.append(replace(face, probs=smoothed, label=self.labels[int(probs.argmax())], face_id=track.face_id))
        return out

    def _match(self, faces: Sequence[FaceResult]) -> dict[int, Track]:
        """Face index -> track, by the assignment of maximum total IoU, pairs under min_iou dropped."""
        if not faces or not self.tracks:
            return {}
        overlap = box_iou(np.array([f.box for f in faces], dtype=np.float64),
                          np.array([t.box for t in self.tracks], dtype=np.float64))
        rows, cols = linear_sum_assignment(overlap, maximize=True)
        return {int(r): self.tracks[c] for r, c in zip(rows, cols) if overlap[r, c] >= self.min_iou}

"""Face tracking for the live webcam tab: match faces across frames by box overlap and smooth
their probabilities with an exponential moving average, so labels do not flicker."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fer_core import FaceResult


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes, 0..1."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    """One face followed across frames: id, latest box and smoothed probabilities."""

    track_id: int
    box: tuple[float, float, float, float]
    probs: np.ndarray
    missed: int = 0


class FaceTracker:
    """Greedy IoU tracker with EMA probability smoothing.

    Args:
        labels: label names, in probability order.
        alpha: weight of the newest frame in the moving average (0 < alpha <= 1; 1 = no smoothing).
        min_iou: overlap needed to continue a track.
        max_missed: frames a track survives without a matching face.
    """

    def __init__(self, labels: Sequence[str], alpha: float = 0.4, min_iou: float = 0.3, max_missed: int = 5) -> None:
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        self.labels = list(labels)
        self.alpha, self.min_iou, self.max_missed = alpha, min_iou, max_missed
        self.tracks: list[Track] = []
        self._next_id = 1

    def update(self, faces: Sequence[FaceResult]) -> list[FaceResult]:
        """Feed one frame's faces; returns them with smoothed ``probs``/``label``, in input order.

        Matching is greedy by decreasing IoU; unmatched faces start new tracks; tracks unmatched
        for more than ``max_missed`` frames are dropped.
        """
        pairs = sorted(((iou(t.box, f.box), ti, fi) for ti, t in enumerate(self.tracks)
                        for fi, f in enumerate(faces)), reverse=True)
        used_t, used_f, match = set(), set(), {}
        for overlap, ti, fi in pairs:
            if overlap < self.min_iou:
                break
            if ti not in used_t and fi not in used_f:
                used_t.add(ti)
                used_f.add(fi)
                match[fi] = ti
        out = []
        for fi, face in enumerate(faces):
            current = np.array([face.probs[k] for k in self.labels], dtype=np.float64)
            if fi in match:
                track = self.tracks[match[fi]]
                track.probs = self.alpha * current + (1 - self.alpha) * track.probs
                track.box, track.missed = face.box, 0
            else:
                track = Track(self._next_id, face.box, current)
                self._next_id += 1
                self.tracks.append(track)
                used_t.add(len(self.tracks) - 1)
            smoothed = {k: float(v) for k, v in zip(self.labels, track.probs / track.probs.sum())}
            out.append(FaceResult(face.box, face.score, face.landmarks, smoothed, max(smoothed, key=smoothed.get)))
        for ti, track in enumerate(self.tracks):
            if ti not in used_t:
                track.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        return out

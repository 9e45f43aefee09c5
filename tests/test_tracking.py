"""The live tab's tracker: identities by overlap, EMA smoothing, expiry."""

from __future__ import annotations

import numpy as np

from app_ui.tracking import FaceTracker, iou
from fer_core import LABELS, FaceResult


def face(box, top, p=0.9):
    probs = {k: (p if k == top else (1 - p) / 7) for k in LABELS}
    return FaceResult(box, 0.99, np.zeros((5, 2), np.float32), probs, top)


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0
    assert abs(iou((0, 0, 10, 10), (5, 0, 15, 10)) - 1 / 3) < 1e-9


def test_smoothing_stops_a_one_frame_flicker():
    tracker = FaceTracker(LABELS, alpha=0.4)
    for _ in range(5):
        (out,) = tracker.update([face((100, 100, 200, 200), "happiness")])
    (out,) = tracker.update([face((102, 101, 201, 203), "surprise", 0.6)])  # one odd frame
    assert out.label == "happiness"
    assert abs(sum(out.probs.values()) - 1) < 1e-9
    for _ in range(6):
        (out,) = tracker.update([face((102, 101, 201, 203), "surprise")])
    assert out.label == "surprise"  # a lasting change does come through


def test_two_faces_keep_their_tracks_and_tracks_expire():
    tracker = FaceTracker(LABELS, alpha=0.5, max_missed=2)
    a, b = (0, 0, 100, 100), (300, 0, 400, 100)
    tracker.update([face(a, "anger"), face(b, "happiness")])
    out = tracker.update([face(b, "happiness"), face(a, "anger")])  # order swapped
    assert [o.label for o in out] == ["happiness", "anger"]
    assert len(tracker.tracks) == 2
    for _ in range(3):
        tracker.update([face(a, "anger")])
    assert len(tracker.tracks) == 1  # b expired after 2 missed frames

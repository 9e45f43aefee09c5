"""fer_core.track: Hungarian IoU matching, stable ids, time-based EMA smoothing, expiry."""

from __future__ import annotations

import numpy as np
import pytest

from fer_core import LABELS, FaceResult
from fer_core.track import FaceTracker, ema_weight


def face(box, top, p=0.9):
    probs = {k: (p if k == top else (1 - p) / 7) for k in LABELS}
    return FaceResult(box, 0.99, np.zeros((5, 2), np.float32), probs, top)


def test_ema_weight_is_a_half_life():
    assert ema_weight(0.25, 0.25) == pytest.approx(0.5)
    assert ema_weight(0.5, 0.25) == pytest.approx(0.75)
    assert ema_weight(0.1, 0) == 1.0  # no smoothing
    assert ema_weight(-1, 0.25) == 0.0  # a repeated timestamp adds nothing


def test_smoothing_stops_a_one_frame_flicker_and_follows_a_lasting_change():
    tracker = FaceTracker(LABELS, half_life_s=0.2)
    for i in range(5):
        (out,) = tracker.update([face((100, 100, 200, 200), "happiness")], i / 10)
    (out,) = tracker.update([face((102, 101, 201, 203), "surprise", 0.6)], 0.5)  # one odd frame
    assert out.label == "happiness" and out.face_id == 1
    assert sum(out.probs.values()) == pytest.approx(1)
    for i in range(6, 12):
        (out,) = tracker.update([face((102, 101, 201, 203), "surprise")], i / 10)
    assert out.label == "surprise" and out.face_id == 1  # a lasting change does come through


def test_smoothing_depends_on_time_not_on_frame_count():
    """The same half-life gives the same smoothed value after 1 s at 5 and at 30 frames/s."""
    values = []
    for fps in (5, 30):
        tracker = FaceTracker(LABELS, half_life_s=0.5)
        tracker.update([face((0, 0, 100, 100), "happiness", 1.0)], 0.0)
        for i in range(1, fps + 1):
            (out,) = tracker.update([face((0, 0, 100, 100), "anger", 1.0)], i / fps)
        values.append(out.probs["anger"])
    assert values[0] == pytest.approx(0.75, abs=1e-6) and values[1] == pytest.approx(0.75, abs=1e-6)


def test_hungarian_assignment_beats_greedy_matching():
    """Greedy matching would give face 0 to track 1 (IoU 0.67) and leave face 1 without a track;
    the assignment of maximum total IoU continues both tracks (0.43 + 0.33)."""
    tracker = FaceTracker(LABELS, min_iou=0.3)
    first = tracker.update([face((0, 0, 10, 10), "anger"), face((6, 0, 16, 10), "happiness")], 0.0)
    assert [f.face_id for f in first] == [1, 2]
    out = tracker.update([face((2, 0, 12, 10), "happiness"), face((-5, 0, 5, 10), "anger")], 0.1)
    assert [f.face_id for f in out] == [2, 1]
    assert len(tracker.tracks) == 2


def test_two_faces_keep_their_ids_and_tracks_expire_by_time():
    tracker = FaceTracker(LABELS, half_life_s=0.1, max_missed_s=0.25)
    a, b = (0, 0, 100, 100), (300, 0, 400, 100)
    tracker.update([face(a, "anger"), face(b, "happiness")], 0.0)
    out = tracker.update([face(b, "happiness"), face(a, "anger")], 0.1)  # order swapped
    assert [(o.face_id, o.label) for o in out] == [(2, "happiness"), (1, "anger")]
    tracker.update([face(a, "anger")], 0.3)  # b missed for 0.2 s: kept
    assert len(tracker.tracks) == 2
    (back,) = tracker.update([face(b, "happiness")], 0.35)
    assert back.face_id == 2  # short miss: same id
    tracker.update([face(a, "anger")], 0.5)
    tracker.update([face(a, "anger")], 0.7)  # b unseen for 0.35 s > 0.25: dropped
    assert [t.face_id for t in tracker.tracks] == [1]
    (new,) = tracker.update([face(b, "happiness")], 0.8)
    assert new.face_id == 3  # came back too late: a new identity


def test_a_slow_stream_keeps_its_ids_until_a_frame_misses_the_face():
    """Frames 2 s apart (a live webcam on a busy CPU) with the face in each: one identity; once a
    frame comes without it and the next is more than max_missed_s after it was last seen, a new one."""
    tracker = FaceTracker(LABELS, max_missed_s=1.0)
    ids = [tracker.update([face((0, 0, 100, 100), "anger")], t)[0].face_id for t in (0.0, 2.0, 4.0, 6.0)]
    assert ids == [1, 1, 1, 1]
    assert tracker.update([], 8.0) == [] and len(tracker.tracks) == 1  # first frame without it: kept
    (back,) = tracker.update([face((0, 0, 100, 100), "anger")], 10.0)
    assert back.face_id == 2


def test_bad_arguments_and_time_going_backwards():
    with pytest.raises(ValueError, match="half_life_s"):
        FaceTracker(LABELS, half_life_s=-1)
    with pytest.raises(ValueError, match="min_iou"):
        FaceTracker(LABELS, min_iou=0)
    tracker = FaceTracker(LABELS)
    tracker.update([], 1.0)
    with pytest.raises(ValueError, match="time order"):
        tracker.update([], 0.5)


def test_live_timeline_keeps_a_window_and_needs_tracked_faces():
    from fer_core.timeline import Timeline

    tracker, timeline = FaceTracker(LABELS), Timeline(LABELS, window_s=1.0)
    for i in range(30):  # 3 s at 10 frames/s
        raw = [face((0, 0, 100, 100), "happiness")]
        timeline.add(i, i / 10, tracker.update(raw, i / 10), raw)
    assert [t for _, t in timeline.frames][0] == pytest.approx(1.9) and len(timeline.rows) == 11
    (s,) = timeline.summary()
    assert s["face_id"] == 1 and s["seconds_visible"] == pytest.approx(1.1) and s["dominant"] == "happiness"
    with pytest.raises(ValueError, match="face_id"):
        timeline.add(30, 3.0, [face((0, 0, 100, 100), "anger")])
    assert len(timeline.frames) == 11  # the refused frame left nothing behind


def test_box_iou_equals_torchvision() -> None:
    """The tracker's torch-free IoU gives torchvision's numbers on real-looking boxes (nested,
    disjoint, touching, identical, partial overlaps)."""
    import torch
    from torchvision.ops import box_iou as tv_box_iou

    from fer_core.track import box_iou

    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 600, size=(40, 2))
    wh = rng.uniform(5, 200, size=(40, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1)
    boxes[1] = boxes[0]  # identical
    boxes[2] = [boxes[0, 2], boxes[0, 1], boxes[0, 2] + 10, boxes[0, 3]]  # touching: IoU 0
    ours = box_iou(boxes[:25], boxes[15:])
    theirs = tv_box_iou(torch.tensor(boxes[:25]), torch.tensor(boxes[15:])).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)
    assert box_iou(boxes[:3], boxes[:3])[0, 1] == pytest.approx(1.0)
    assert box_iou(boxes[:3], boxes[:3])[0, 2] == 0.0
    assert box_iou(np.zeros((0, 4)), boxes).shape == (0, 40)

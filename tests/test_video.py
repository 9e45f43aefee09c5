"""Video analysis on real faces: decoding, tracking, timelines, outputs and bad files."""

from __future__ import annotations

import json

import av
import numpy as np
import pandas as pd
import pytest

from fer_core import LABELS, InvalidArgumentError, InvalidVideoError
from fer_core import video as video_module
from fer_core.plots import timeline_figure
from fer_core.timeline import BASE_COLUMNS
from fer_core.video import iter_frames, probe_video
from tests.support.false_box import FACE_BOX, MIN_FACE_SIZE, RIBBON_BOX, THRESHOLD, busy_photo, near
from tests.support.video_clips import (
    B_LEAVES_S,
    FPS,
    SECONDS,
    SWITCH_S,
    dense_clip,
    grey_clip,
    two_face_frames,
    write_two_face_clip,
    write_with_codec,
)


@pytest.fixture(scope="module")
def clip(ferplus, tmp_path_factory):
    return write_two_face_clip(ferplus, tmp_path_factory.mktemp("video") / "two_faces.mp4")


@pytest.fixture(scope="module")
def analysis(recognizer, clip):
    return recognizer.analyze_video(clip, progress=False)


def test_probe_reads_size_rate_and_length(clip):
    info = probe_video(clip)
    assert (info.width, info.height, info.codec) == (640, 480, "h264")
    assert info.fps == pytest.approx(FPS)
    assert info.duration_s == pytest.approx(SECONDS, abs=0.15)


def test_faces_per_frame_ids_and_timestamps(analysis):
    counts = analysis.faces_per_frame()
    assert len(counts) == round(FPS * SECONDS)
    times = [t for _, t, _ in counts]
    assert all(b > a for a, b in zip(times, times[1:]))  # strictly increasing
    assert times == pytest.approx([i / FPS for i in range(len(times))], abs=1e-3)
    assert [n for _, t, n in counts] == [2 if t < B_LEAVES_S - 1e-6 else 1 for t in times]
    df = analysis.to_dataframe()
    left = df[df.x1 < 320]
    right = df[df.x1 >= 320]
    assert left.face_id.nunique() == 1 and right.face_id.nunique() == 1  # one stable id per face
    assert left.face_id.iloc[0] != right.face_id.iloc[0]
    assert len(left) == len(counts) and right.time_s.max() < B_LEAVES_S


def test_expression_switch_is_found_on_time(analysis):
    df = analysis.to_dataframe()
    a = df[df.x1 < 320].sort_values("time_s")
    assert (a[a.time_s < SWITCH_S].label == "happiness").all()
    switched = a[a.label == "neutral"].time_s
    assert len(switched) and SWITCH_S <= switched.min() <= SWITCH_S + 0.5  # smoothing lag < 0.5 s
    assert (a[a.time_s >= switched.min()].label == "neutral").all()  # and it stays


def test_probabilities_and_dataframe_columns(analysis):
    df = analysis.to_dataframe()
    assert list(df.columns) == [*BASE_COLUMNS, *LABELS, *[f"raw_{k}" for k in LABELS]]
    assert np.allclose(df[list(LABELS)].sum(axis=1), 1, atol=1e-5)
    assert np.allclose(df[[f"raw_{k}" for k in LABELS]].sum(axis=1), 1, atol=1e-5)
    assert list(analysis.to_dataframe(raw=False).columns) == [*BASE_COLUMNS, *LABELS]
    # smoothing is real: the raw probabilities jump at the switch, the smoothed ones lag
    a = df[df.x1 < 320].sort_values("time_s")
    first_after = a[a.time_s >= SWITCH_S].iloc[0]
    assert first_after.raw_neutral > first_after.neutral


def test_summary_shares_and_seconds(analysis):
    summary = {s["face_id"]: s for s in analysis.summary()}
    assert len(summary) == 2
    for s in summary.values():
        assert sum(s["shares"].values()) == pytest.approx(1, abs=1e-3)
        assert sum(s["mean_probs"].values()) == pytest.approx(1, abs=1e-3)
    a, b = sorted(summary.values(), key=lambda s: -s["seconds_visible"])
    assert a["seconds_visible"] == pytest.approx(SECONDS, abs=0.01)
    assert b["seconds_visible"] == pytest.approx(B_LEAVES_S, abs=0.01)
    assert b["dominant"] == "happiness" and b["shares"]["happiness"] == pytest.approx(1)
    assert 0.3 < a["shares"]["neutral"] < 0.6 and a["shares"]["happiness"] > 0.4


def test_csv_json_and_figure(analysis, tmp_path):
    analysis.to_csv(tmp_path / "t.csv")
    df = pd.read_csv(tmp_path / "t.csv")
    assert list(df.columns[:9]) == list(BASE_COLUMNS) and len(df) == len(analysis.rows)
    analysis.to_json(tmp_path / "t.json")
    doc = json.loads((tmp_path / "t.json").read_text())
    assert doc["video"]["file"] == "two_faces.mp4" and doc["error"] is None
    assert len(doc["rows"]) == len(df) and doc["summary"] == json.loads(json.dumps(analysis.summary()))
    fig = timeline_figure(analysis)
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 2
    fig.savefig(tmp_path / "t.png")
    assert (tmp_path / "t.png").stat().st_size > 10_000


def test_write_annotated_is_h264_with_every_frame(analysis, clip, tmp_path):
    out = tmp_path / "annotated.mp4"
    analysis.write_annotated(out)
    info = probe_video(out)
    assert (info.width, info.height, info.codec) == (640, 480, "h264")
    src = [f.rgb for f in iter_frames(clip)]
    ann = [f.rgb for f in iter_frames(out)]
    assert len(ann) == len(src)
    row = analysis.rows[0]  # the first face's box outline is drawn in its label colour
    x1, y1 = round(row.box[0]), round(row.box[1])
    diff = np.abs(ann[0].astype(int) - src[0].astype(int))
    assert diff[y1 - 1:y1 + 2, x1 + 5:x1 + 40].mean() > 40


def test_sampling_and_max_seconds(recognizer, clip):
    sampled = recognizer.analyze_video(clip, sample_fps=5, progress=False)
    times = [t for _, t in sampled.frames]
    assert times == pytest.approx([i * 0.2 for i in range(15)], abs=1e-3)
    assert sum(s["seconds_visible"] for s in sampled.summary()) == pytest.approx(SECONDS + B_LEAVES_S, abs=0.05)
    short = recognizer.analyze_video(clip, max_seconds=1.0, progress=False)
    assert len(short.frames) == 10 and short.duration_s == pytest.approx(1.0)
    every = recognizer.analyze_video(clip, sample_fps=0, max_seconds=0.5, progress=False)  # 0 = every frame
    assert len(every.frames) == 5
    for bad in (-1, 61):
        with pytest.raises(InvalidArgumentError, match="sample_fps"):
            recognizer.analyze_video(clip, sample_fps=bad, progress=False)


def test_detect_every_reuses_boxes_and_still_classifies_every_frame(recognizer, clip, analysis, monkeypatch):
    detected = []
    real = recognizer.detector.detect_batch

    def counting(images, **kwargs):  # the real detector, counted
        detected.append(len(images))
        return real(images, **kwargs)

    monkeypatch.setattr(recognizer.detector, "detect_batch", counting)
    fast = recognizer.analyze_video(clip, detect_every=3, progress=False)
    assert sum(detected) == -(-len(analysis.frames) // 3)  # the detector saw every third frame only
    assert len(fast.frames) == len(analysis.frames) and len({r.face_id for r in fast.rows}) == 2
    counts = [n for _, t, n in fast.faces_per_frame()]
    times = [t for _, t, _ in fast.faces_per_frame()]
    late = [n for n, t in zip(counts, times) if t >= B_LEAVES_S + 3 / FPS]
    assert counts[0] == 2 and late and set(late) == {1}  # B's box outlives it by at most 2 frames
    df = fast.to_dataframe()
    a = df[df.x1 < 320].sort_values("time_s")
    switched = a[a.label == "neutral"].time_s
    assert SWITCH_S <= switched.min() <= SWITCH_S + 0.5  # each frame's own pixels are classified
    raw = a[[f"raw_{k}" for k in LABELS]].to_numpy()
    assert not np.allclose(raw[1], raw[2])  # a reused box, new pixels: new probabilities
    with pytest.raises(InvalidArgumentError, match="detect_every"):
        recognizer.analyze_video(clip, detect_every=0, progress=False)


@pytest.mark.parametrize("codec,suffix", [("libvpx-vp9", ".webm"), ("mpeg4", ".avi"), ("mpeg4", ".mkv"),
                                          ("mpeg4", ".mov")])
def test_other_containers(recognizer, ferplus, tmp_path, codec, suffix):
    frames = list(two_face_frames(ferplus, seconds=0.5))
    path = write_with_codec(frames, tmp_path / f"clip{suffix}", codec)
    result = recognizer.analyze_video(path, progress=False)
    assert [n for _, _, n in result.faces_per_frame()] == [2] * len(frames)
    assert len({r.face_id for r in result.rows}) == 2


def test_no_face_is_an_empty_result(recognizer, tmp_path):
    result = recognizer.analyze_video(grey_clip(tmp_path / "grey.mp4"), progress=False)
    assert len(result.frames) == 10 and not result.rows and result.summary() == []
    assert len(result.to_dataframe()) == 0 and list(result.to_dataframe().columns)[:3] == ["frame", "time_s",
                                                                                           "face_id"]
    assert timeline_figure(result).texts[0].get_text() == "No face found"


def test_bad_files_raise_invalid_video_error(recognizer, clip, tmp_path, monkeypatch):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "noise.mp4").write_bytes(np.random.default_rng(0).bytes(50_000))
    (tmp_path / "text.mkv").write_text("not a video at all\n" * 100)
    data = clip.read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(data[: len(data) * 3 // 4])  # the index (moov) is at the front ...
    (tmp_path / "headless.mp4").write_bytes(data[len(data) // 2:])  # ... so cut the front instead
    from PIL import Image
    Image.new("RGB", (64, 64)).save(tmp_path / "image.png")
    with av.open(str(tmp_path / "audio.m4a"), "w") as c:  # a real file with only an audio stream
        s = c.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in [*s.encode(frame), *s.encode()]:
            c.mux(packet)
    expected = {"empty.mp4": "empty", "noise.mp4": "not a readable video", "text.mkv": "not a readable video",
                "headless.mp4": "not a readable video", "image.png": "still image", "audio.m4a": "no video stream",
                "missing.mp4": "no such file"}
    for name, reason in expected.items():
        with pytest.raises(InvalidVideoError, match=reason) as info:
            recognizer.analyze_video(tmp_path / name, progress=False)
        assert name in str(info.value)
    truncated = recognizer.analyze_video(tmp_path / "truncated.mp4", progress=False)  # decodable part kept
    assert 0 < len(truncated.frames) < 30 and "truncated" in truncated.error
    monkeypatch.setattr(video_module, "MAX_VIDEO_PIXELS", 640 * 479)
    with pytest.raises(InvalidVideoError, match="exceed the limit"):
        recognizer.analyze_video(clip, progress=False)


@pytest.fixture(scope="module")
def dense(tmp_path_factory):
    """3,600 frames 1/90000 s apart: 0.04 s by its timestamps."""
    return dense_clip(tmp_path_factory.mktemp("dense") / "dense.mp4")


def test_max_frames_bounds_decoding_whatever_the_timestamps_say(dense):
    info = probe_video(dense)
    assert info.frames == 3600 and info.duration_s < 0.05
    truncated: list[str] = []
    frames = list(iter_frames(dense, max_frames=100, truncated=truncated))
    assert len(frames) == 100 and frames[-1].index == 99 and "stopped after decoding 100 frames" in truncated[0]
    truncated.clear()
    assert len(list(iter_frames(dense, max_frames=100, sample_fps=5, truncated=truncated))) == 1
    assert truncated  # sampled-out frames count: the cap is on decoding work
    truncated.clear()
    assert len(list(iter_frames(dense, max_frames=3600, truncated=truncated))) == 3600 and not truncated
    with pytest.raises(InvalidArgumentError, match="max_frames"):
        next(iter_frames(dense, max_frames=0))


def test_analysis_stops_at_max_frames_and_says_so(recognizer, dense, tmp_path):
    analysis = recognizer.analyze_video(dense, max_frames=120, progress=False)
    assert len(analysis.frames) == 120 and analysis.error is None
    assert "stopped after decoding 120 frames" in analysis.truncated and analysis.max_frames == 120
    doc = analysis.to_dict()
    assert doc["truncated"] == analysis.truncated and doc["frames_analyzed"] == 120 and doc["faces_dropped"] == 0
    analysis.write_annotated(tmp_path / "out.mp4")  # drawing is bounded by the same cap
    assert probe_video(tmp_path / "out.mp4").frames <= 121
    full = recognizer.analyze_video(dense, max_frames=3600, sample_fps=5, progress=False)
    assert full.truncated is None and len(full.frames) == 1


def test_analysis_stops_at_its_time_budget_and_says_so(recognizer, dense):
    analysis = recognizer.analyze_video(dense, time_budget_s=0.001, batch_frames=16, progress=False)
    assert len(analysis.frames) == 16 and "time_budget_s" in analysis.truncated  # one batch, then the check
    with pytest.raises(InvalidArgumentError, match="time_budget_s"):
        recognizer.analyze_video(dense, time_budget_s=0, progress=False)


def test_tiny_video_is_no_face_not_an_error(recognizer, tmp_path):
    from fer_core.video import VideoWriter

    for width, height in ((16, 16), (200, 14), (14, 200)):
        path = tmp_path / f"tiny_{width}x{height}.mp4"
        with VideoWriter(path, 10, width, height) as writer:
            for i in range(10):
                writer.write(np.full((height, width, 3), 20 * i, np.uint8))
        analysis = recognizer.analyze_video(path, progress=False)
        assert len(analysis.frames) == 10 and not analysis.rows and analysis.error is None


def test_max_faces_per_frame(recognizer, clip):
    one = recognizer.analyze_video(clip, max_seconds=1, max_faces=1, progress=False)
    assert [n for _, _, n in one.faces_per_frame()] == [1] * 10 and one.faces_dropped == 10
    assert one.to_dict()["faces_dropped"] == 10


def test_verification_drops_a_false_box_in_every_frame(recognizer, tmp_path):
    """A lossless clip of a real photo where MTCNN (threshold 0.5, 12 px faces) also boxes medal
    ribbons: verification drops that box on every frame and counts it; without it a second track."""
    image = np.asarray(busy_photo())
    path = tmp_path / "ribbons.mkv"
    with av.open(str(path), "w") as container:  # ffv1: lossy H.264 smooths the ribbons' false box away
        stream = container.add_stream("ffv1", rate=5)
        stream.width, stream.height, stream.pix_fmt = image.shape[1], image.shape[0], "bgr0"
        for _ in range(3):
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    options = {"threshold": THRESHOLD, "min_face_size": MIN_FACE_SIZE, "progress": False}
    verified = recognizer.analyze_video(path, **options)
    assert verified.faces_rejected == 3 and verified.face_ids == [1] and len(verified.rows) == 3
    assert all(near(r.box, FACE_BOX) for r in verified.rows)
    assert verified.to_dict()["faces_rejected"] == 3
    plain = recognizer.analyze_video(path, verify_faces=False, **options)
    assert plain.faces_rejected == 0 and plain.face_ids == [1, 2] and len(plain.rows) == 6
    assert sum(near(r.box, RIBBON_BOX) for r in plain.rows) == 3

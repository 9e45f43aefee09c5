"""fer_app.service: the CSV of a batch, pruning of download folders by age and size, the caps on faces
and time per request."""

from __future__ import annotations

import csv
import io
import os
import time

import numpy as np
import pytest

from fer_app import service as service_module
from fer_app.service import BUDGET_SPENT, FERService, batch_folder, prune_folders, results_csv
from fer_core import LABELS
from tests.support.false_box import FACE_BOX, MIN_FACE_SIZE, RIBBON_BOX, THRESHOLD, busy_photo, near


def test_results_csv_has_a_row_per_face_and_per_error():
    probs = {k: 1 / 8 for k in LABELS}
    face = {"box": [1, 2, 3, 4], "score": 0.99, "label": "neutral", "probs": probs}
    rows = list(csv.reader(io.StringIO(results_csv(
        [{"file": "a.jpg", "faces": [face, face]}, {"file": "b.txt", "error": "not an image"}], list(LABELS)))))
    assert rows[0][:8] == ["file", "face", "x1", "y1", "x2", "y2", "score", "label"] and rows[0][-1] == "error"
    assert [r[:2] for r in rows[1:]] == [["a.jpg", "1"], ["a.jpg", "2"], ["b.txt", ""]]
    assert rows[3][-1] == "not an image" and len(rows[1]) == len(rows[0])


def test_batch_folders_are_pruned(tmp_path):
    old = batch_folder(tmp_path)
    (old / "faces.csv").write_text("x")
    past = time.time() - 7200
    os.utime(old, (past, past))
    new = batch_folder(tmp_path)
    assert new.is_dir() and not old.exists()


def test_min_face_size_wording_says_photos_go_to_20_px_verified_or_not():
    """Still photos are searched down to PHOTO_MIN_FACE_SIZE whether or not verification is on (video and
    live frames: adaptive); the API description and the service's docstrings say so, not "when verified"."""
    from pathlib import Path

    from fer_core.options import PHOTO_MIN_FACE_SIZE

    here = Path(service_module.__file__)
    for text in (here.with_name("blocks.py").read_text(), here.read_text()):  # blocks: without importing gradio
        assert "when verified" not in text and "20 px when" not in text
    assert PHOTO_MIN_FACE_SIZE == 20 and "verified or not" in FERService.predict.__doc__
    assert "verified or not" in FERService.settings.__doc__


def test_gr_api_files_must_come_from_the_upload_folder(tmp_path, monkeypatch):
    import gradio as gr

    from fer_app.blocks import uploaded_path

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "uploads"))
    inside = tmp_path / "uploads" / "abc" / "photo.jpg"
    inside.parent.mkdir(parents=True)
    inside.write_bytes(b"x")
    assert uploaded_path({"path": str(inside), "meta": {"_type": "gradio.FileData"}}) == str(inside)
    assert uploaded_path(None) is None and uploaded_path({"path": ""}) is None
    for outside in ("/etc/passwd", str(tmp_path / "uploads" / ".." / "secret.jpg")):
        with pytest.raises(gr.Error, match="must be uploaded"):
            uploaded_path({"path": outside})


def _folder(root, name, size, age_s):
    folder = root / name
    folder.mkdir()
    (folder / "data.bin").write_bytes(b"x" * size)
    past = time.time() - age_s
    os.utime(folder, (past, past))
    return folder


def test_prune_folders_by_age_then_total_size_oldest_first(tmp_path):
    old = _folder(tmp_path, "old", 10, age_s=5000)
    a = _folder(tmp_path, "a", 400, age_s=3000)
    b = _folder(tmp_path, "b", 400, age_s=2000)
    c = _folder(tmp_path, "c", 400, age_s=1000)
    fresh = _folder(tmp_path, "fresh", 400, age_s=10)  # may still be written: never removed
    (tmp_path / "loose.txt").write_text("a file, not a folder: left alone")
    removed = prune_folders(tmp_path, max_age_s=3600, max_total_bytes=900, min_age_s=60)
    assert removed == [old, a, b] and c.is_dir() and fresh.is_dir() and (tmp_path / "loose.txt").exists()
    assert prune_folders(tmp_path, max_age_s=3600, max_total_bytes=900, min_age_s=60) == []
    assert prune_folders(tmp_path, max_age_s=3600, max_total_bytes=0, min_age_s=60) == [c]  # fresh stays
    assert fresh.is_dir() and prune_folders(tmp_path / "new", max_total_bytes=0) == []  # a missing root is made
    # batch_folder prunes by the same rules before it makes the new folder
    big = _folder(tmp_path, "big", 2000, age_s=600)
    new = batch_folder(tmp_path, max_age_s=3600, max_total_bytes=1000, min_age_s=60)
    assert new.is_dir() and not big.exists() and fresh.is_dir()


@pytest.fixture
def service(recognizer):
    return FERService(recognizer, "test")


def test_batch_stops_at_its_time_budget_with_a_clear_partial_result(service, astronaut, monkeypatch):
    monkeypatch.setattr(service_module, "MAX_DETECT_BATCH", 1)  # one image per chunk
    clock = [1000.0]

    class Clock:  # the service's clock, moved by the fake inference only: no real waiting, no load effects
        def __getattr__(self, name):
            return getattr(time, name)

        def monotonic(self):
            return clock[0]

    def slow(images, dropped, **kwargs):  # 0.3 s of "inference" per image, no face
        clock[0] += 0.3
        dropped.extend(0 for _ in images)
        return [[] for _ in images]

    monkeypatch.setattr(service_module, "time", Clock())
    monkeypatch.setattr(service.recognizer, "predict_batch", slow)
    items = [(f"{i}.png", astronaut) for i in range(8)]
    results = service.predict_many(items, service.defaults(), budget_s=1.0)
    done = [r for r in results if "faces" in r]
    skipped = [r for r in results if "error" in r]
    # chunks start at 0, 0.3, 0.6 and 0.9 s; at 1.2 s the budget is spent
    assert len(done) == 4 and len(skipped) == 4, results
    assert results[: len(done)] == done  # the first files ran, the rest did not start
    assert all(r["error"].startswith(BUDGET_SPENT) and "FER_REQUEST_BUDGET_S" in r["error"] for r in skipped)
    assert [r["file"] for r in results] == [name for name, _ in items]


def test_faces_over_the_caps_are_reported_per_file(service, canvas, astronaut, monkeypatch):
    monkeypatch.setattr(service_module, "MAX_FACES", 4)
    monkeypatch.setattr(service_module, "MAX_REQUEST_FACES", 5)
    image = canvas[0]
    results = service.predict_many([("a.png", image), ("astro.png", astronaut), ("b.png", image)],
                                   service.defaults())
    kept = [len(r["faces"]) for r in results]
    assert sum(kept) == 5 and all(k <= 4 for k in kept)
    assert sum(r.get("faces_dropped", 0) for r in results) == 13 - 5
    for r in results:
        assert ("note" in r) == (r.get("faces_dropped", 0) > 0)
        if "note" in r:
            assert "FER_MAX_FACES" in r["note"] and f"{r['faces_dropped']} more face" in r["note"]
    dropped: list[int] = []
    _, faces = service.predict(image, service.defaults(), dropped=dropped)
    assert len(faces) == 4 and dropped == [2]


def test_verification_rejects_a_false_box_per_file(service):
    """Grace Hopper 2x at threshold 0.5 and 12 px faces: MTCNN also boxes her medal ribbons; the
    verified batch answer drops that box and says so, the unverified one keeps it."""
    photo = busy_photo()
    verified_opts = service.settings(THRESHOLD, MIN_FACE_SIZE, verify_faces=True)
    plain_opts = service.settings(THRESHOLD, MIN_FACE_SIZE, verify_faces=False)
    assert service.settings().verify_faces is True  # on by default
    verified = service.predict_many([("hopper.png", photo)], verified_opts)[0]
    plain = service.predict_many([("hopper.png", photo)], plain_opts)[0]
    assert verified["faces_rejected"] == 1 and len(verified["faces"]) == 1
    assert verified["faces"][0]["face_prob"] > 0.99 and near(verified["faces"][0]["box"], FACE_BOX)
    assert "faces_rejected" not in plain and len(plain["faces"]) == 2
    assert plain["faces"][0] == {k: v for k, v in verified["faces"][0].items() if k != "face_prob"}
    assert near(plain["faces"][1]["box"], RIBBON_BOX)
    rejected: list[int] = []
    _, faces = service.predict(photo, verified_opts, rejected=rejected)
    assert rejected == [1] and len(faces) == 1


def test_explain_loads_one_torch_copy_across_threads_and_explains_the_onnx_faces(astronaut, monkeypatch):
    """On the ONNX recognizer, four explanations at once load the torch copy of the model once (one
    object, sharing the ONNX detector), holding no inference slot while it loads (a predict on the one
    slot runs and finishes meanwhile: the load is held until the test has checked); each explains the
    faces the ONNX recognizer found (same boxes as predict), with the same maps; a bad target fails
    before any work."""
    import threading

    from fer_app.limits import InferenceLimiter
    from fer_core import EmotionRecognizer, InvalidArgumentError
    from fer_core import recognizer as recognizer_module

    onnx = EmotionRecognizer.from_pretrained()
    assert onnx.backend == "onnx" and onnx.model is None
    service = FERService(onnx, "bundled default", InferenceLimiter(slots=1, max_queue=8))
    assert service.explain_unavailable() is None and service._explainer is None
    options = service.settings()
    with pytest.raises(InvalidArgumentError, match="target must be 'predicted' or one of"):
        service.explain(astronaut, options, target="joy")
    assert service._explainer is None
    # the torch copy's load, held until released: the checks below run while it is under way, every time
    real_load, loading, release, loads = recognizer_module.load_classifier, threading.Event(), threading.Event(), []

    def held_load(*args, **kwargs):
        loads.append(args)
        loading.set()
        release.wait(timeout=60)  # never released: the load goes on after 60 s and the checks below fail
        return real_load(*args, **kwargs)

    monkeypatch.setattr(recognizer_module, "load_classifier", held_load)  # what EmotionRecognizer.torch_copy calls
    barrier, results, explainers = threading.Barrier(4), [None] * 4, [None] * 4

    def run(i):
        barrier.wait()
        results[i] = service.explain(astronaut, options, target="surprise" if i % 2 else "predicted")
        explainers[i] = service.explainer()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    try:
        assert loading.wait(timeout=60), "no load started"
        time.sleep(0.05)  # let the other explanations reach the load's lock (they must not hold a slot there)
        assert service._explainer_lock.locked() and service._explainer is None
        assert service.limiter.running == 0  # no explanation holds the only slot while the copy loads
        service.predict(astronaut, options)  # so this one runs now ...
        assert service._explainer is None  # ... and finishes before the load does (it waits for release)
        assert service.limiter.running == 0
    finally:
        release.set()
        for t in threads:
            t.join(timeout=300)
    assert len(loads) == 1  # one load for the four explanations
    assert all(e is explainers[0] for e in explainers) and explainers[0].backend == "torch"
    assert explainers[0].detector is onnx.detector
    _, faces = service.predict(astronaut, options)
    for i, (_, got_faces, maps, png) in enumerate(results):
        assert [f.box for f in got_faces] == [f.box for f in faces] and len(maps) == 1 and png is None
        assert maps[0].face is got_faces[0] and maps[0].target == ("surprise" if i % 2 else "happiness")
        assert np.array_equal(maps[0].heatmap, results[i % 2][2][0].heatmap)  # deterministic across threads
    assert not np.array_equal(results[0][2][0].heatmap, results[1][2][0].heatmap)  # the target matters

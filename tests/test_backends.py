"""The two inference backends give the same answers (issue 30): ``EmotionRecognizer.from_pretrained(backend=
"onnx")`` (ONNX Runtime: OnnxMTCNN, FaceMesh, the classifier's model.onnx) against ``backend="torch"``
(facenet-pytorch's MTCNN, EmotionNet) on real photos (the astronaut, Grace Hopper, six FER+ faces on a
canvas) and on a short clip of real faces: the same faces, boxes and landmarks within 1e-3 px, the same
labels; probabilities within 1e-4 on the same crops.

End to end, probabilities are compared within :data:`END_TO_END_PROB`: the backends' boxes differ by
~1e-4 px (float32 arithmetic in another order), and a face crop is uint8, so such a shift moves a few dozen
of its pixels by one grey level, which the network turns into up to ~2.5e-3 of probability on Grace
Hopper (measured: 54 of 132,300 crop values, 2.4e-3); the same crop gives the same probabilities within
1e-6.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fer_core import EmotionRecognizer
from fer_core.io import load_image
from tests.conftest import ROOT, require_shared
from tests.support.video_clips import write_two_face_clip

BOX_PX = 1e-3
SAME_CROP_PROB = 1e-4
END_TO_END_PROB = 5e-3
ASTRONAUT = ROOT / "fer_app" / "examples" / "astronaut.jpg"
HOPPER = ROOT / "tests" / "data" / "photos" / "grace_hopper.jpg"


@pytest.fixture(scope="module")
def backends() -> dict[str, EmotionRecognizer]:
    recs = {name: EmotionRecognizer.from_pretrained(backend=name) for name in ("onnx", "torch")}
    assert {name: rec.backend for name, rec in recs.items()} == {"onnx": "onnx", "torch": "torch"}
    assert recs["onnx"].detector.backend == "onnx" and recs["torch"].detector.backend == "torch"
    return recs


@pytest.fixture(scope="module")
def photos(canvas) -> dict[str, tuple[Image.Image, int]]:
    """name -> (RGB image, faces in it)."""
    return {"astronaut": (load_image(ASTRONAUT), 1), "grace_hopper": (load_image(require_shared(HOPPER)), 1),
            "canvas": (canvas[0], 6)}


def assert_same(onnx_faces, torch_faces, prob: float) -> None:
    assert len(onnx_faces) == len(torch_faces)
    for o, t in zip(onnx_faces, torch_faces):
        assert np.abs(np.subtract(o.box, t.box)).max() <= BOX_PX, (o.box, t.box)
        assert np.abs(np.subtract(o.landmarks, t.landmarks)).max() <= BOX_PX
        assert abs(o.score - t.score) <= 1e-4
        assert o.label == t.label
        assert max(abs(o.probs[k] - t.probs[k]) for k in o.probs) <= prob, (o.probs, t.probs)


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper", "canvas"])
@pytest.mark.parametrize("align", [True, False])
def test_photos_end_to_end(backends, photos, name, align):
    image, faces = photos[name]
    onnx_faces = backends["onnx"].predict(image, align=align)
    torch_faces = backends["torch"].predict(image, align=align)
    assert len(onnx_faces) == faces
    assert_same(onnx_faces, torch_faces, END_TO_END_PROB)
    if name == "astronaut":
        assert onnx_faces[0].label == "happiness"
    for o, t in zip(onnx_faces, torch_faces):  # FaceMesh's face probability, on either backend's boxes
        assert abs(o.face_prob - t.face_prob) <= 1e-4


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper", "canvas"])
def test_same_detections_same_probabilities(backends, photos, name):
    """Both classifiers on the very same crops (the torch detector's boxes): within 1e-4."""
    image, faces = photos[name]
    detections = backends["torch"].detector.detect(image)
    assert len(detections) == faces
    onnx_faces, = backends["onnx"].classify_detections([image], [detections])
    torch_faces, = backends["torch"].classify_detections([image], [detections])
    assert_same(onnx_faces, torch_faces, SAME_CROP_PROB)


def test_video_clip(backends, ferplus, tmp_path):
    """A 3 s clip of two real faces (one switches from happiness to neutral, one leaves): the same tracks,
    boxes and labels on every frame."""
    clip = write_two_face_clip(ferplus, tmp_path / "clip.mp4")
    onnx_video = backends["onnx"].analyze_video(clip, progress=False)
    torch_video = backends["torch"].analyze_video(clip, progress=False)
    assert len(onnx_video.frames) == len(torch_video.frames) == 30
    assert len(onnx_video.rows) == len(torch_video.rows) > 40
    for o, t in zip(onnx_video.rows, torch_video.rows):
        assert (o.frame, o.face_id, o.label) == (t.frame, t.face_id, t.label)
        assert np.abs(np.subtract(o.box, t.box)).max() <= BOX_PX
        assert np.abs(o.raw_probs - t.raw_probs).max() <= END_TO_END_PROB
        assert np.abs(o.probs - t.probs).max() <= END_TO_END_PROB
    assert [(s["face_id"], s["dominant"]) for s in onnx_video.summary()] == [
        (s["face_id"], s["dominant"]) for s in torch_video.summary()]

"""EmotionRecognizer end to end: real MTCNN, real model, probability invariants."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from fer_core import LABELS, EmotionRecognizer, FaceResult, InvalidImageError
from fer_core.preprocess import crops_to_batch


def check_face(face: FaceResult, labels):
    assert isinstance(face, FaceResult)
    assert list(face.probs) == list(labels)
    assert abs(sum(face.probs.values()) - 1) < 1e-4
    assert all(0 <= v <= 1 for v in face.probs.values())
    assert face.label == max(face.probs, key=face.probs.get)
    assert face.landmarks.shape == (5, 2)
    x1, y1, x2, y2 = face.box
    assert x2 > x1 and y2 > y1


def test_labels(recognizer):
    assert recognizer.labels == list(LABELS)


def test_predict_astronaut(recognizer, astronaut, tmp_path):
    path = tmp_path / "astronaut.jpg"
    Image.fromarray(astronaut).save(path, quality=95)
    for source in (astronaut, Image.fromarray(astronaut), path, str(path)):
        faces = recognizer.predict(source)
        assert len(faces) == 1
        check_face(faces[0], recognizer.labels)
        assert abs(faces[0].box[0] - 180) < 15
    d = faces[0].to_dict()
    assert set(d) == {"box", "score", "landmarks", "label", "probs", "face_prob"} and len(d["landmarks"]) == 5
    assert d["face_prob"] > 0.99  # verified by FaceMesh (on by default)
    assert faces[0].mesh.shape == (468, 3) and "mesh" not in d
    mesh = faces[0].to_dict(mesh=True)["mesh"]
    assert len(mesh) == 468 and all(len(p) == 3 for p in mesh)
    # the mesh lies on the face: its x/y extent is inside the (slightly widened) box
    x1, y1, x2, y2 = faces[0].box
    xy = faces[0].mesh[:, :2]
    assert (xy[:, 0] > x1 - 15).all() and (xy[:, 0] < x2 + 15).all() and (xy[:, 1] > y1 - 15).all()


def test_predict_canvas_six_faces(recognizer, canvas):
    image, tiles = canvas
    faces = recognizer.predict(image)
    assert len(faces) == len(tiles)
    for f in faces:
        check_face(f, recognizer.labels)


def test_predict_batch_matches_predict(recognizer, astronaut, canvas):
    batch = recognizer.predict_batch([astronaut, canvas[0], Image.new("RGB", (200, 200))])
    assert [len(r) for r in batch] == [1, 6, 0]
    single = recognizer.predict(canvas[0])
    for a, b in zip(batch[1], single):
        assert a.box == b.box
        assert np.allclose(list(a.probs.values()), list(b.probs.values()), atol=1e-5)


def test_no_face_is_empty_list(recognizer):
    assert recognizer.predict(Image.new("RGB", (640, 480), (30, 120, 200))) == []
    assert recognizer.predict(np.zeros((1, 1, 3), np.uint8)) == []


def test_bad_image_in_batch_names_its_index(recognizer, astronaut):
    with pytest.raises(InvalidImageError, match="image 1: .*not a recognised image"):
        recognizer.predict_batch([astronaut, b"garbage"])


def test_classify_crops(recognizer, ferplus):
    folder = ferplus / "FER2013Valid"
    crops = [Image.open(folder / n) for n in ["fer0028642.png", "fer0028652.png", "fer0028643.png"]]
    probs = recognizer.classify_crops(crops)
    assert probs.shape == (3, 8) and probs.dtype == np.float32
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    assert recognizer.classify_crops([]).shape == (0, 8)
    # the same crop gives the same row whatever it is batched with
    assert np.allclose(recognizer.classify_crops(crops[:1])[0], probs[0], atol=1e-5)
    # the BatchNorm-folded network the recognizer runs gives the trained model's own probabilities
    model = recognizer.model
    with torch.inference_mode():
        want = model.probabilities(model(crops_to_batch(crops, model.config))).numpy()
    assert np.abs(probs - want).max() < 1e-5


def test_alignment_switch_changes_only_the_crop(recognizer, astronaut):
    tilted = Image.fromarray(astronaut).rotate(25, resample=Image.Resampling.BICUBIC, center=(224, 118))
    a = recognizer.predict(tilted, align=True)
    b = recognizer.predict(tilted, align=False)
    assert len(a) == len(b) == 1 and a[0].box == b[0].box
    assert list(a[0].probs.values()) != list(b[0].probs.values())  # a different crop went in


def test_bundled_default_model_says_astronaut_is_happy(astronaut):
    rec = EmotionRecognizer.from_pretrained()
    faces = rec.predict(astronaut)
    assert len(faces) == 1 and faces[0].label == "happiness"
    assert rec.config.recipe.get("label_mode")  # a trained model carries its recipe


def test_bundled_default_model_agrees_with_ferplus_votes_on_the_canvas(canvas, ferplus_votes):
    from fer_train.labels import majority_label
    from tests.conftest import CANVAS_CROPS

    faces = EmotionRecognizer.from_pretrained().predict(canvas[0])
    expected = [LABELS[majority_label(ferplus_votes[name])] for name in CANVAS_CROPS]
    assert [f.label for f in faces] == expected  # through detection, alignment and cropping


@pytest.mark.parametrize("size", [(16, 16), (200, 15), (15, 200), *[(n, n) for n in range(1, 25)],
                                  *[(200, n) for n in range(1, 25)], *[(n, 200) for n in range(1, 25)]])
def test_tiny_image_is_no_face_not_an_error(recognizer, size):
    image = Image.new("RGB", size, (120, 110, 100))
    assert recognizer.predict(image) == []
    assert recognizer.predict(np.asarray(image), min_face_size=12) == []


def test_max_faces_bounds_classification_and_reports_the_rest(recognizer, canvas, astronaut, monkeypatch):
    image, _ = canvas
    every = recognizer.predict(image)
    assert len(every) == 6
    classified = []
    real = recognizer.classifier.probabilities

    def counting(crops, *args):  # the real classifier, counted
        classified.append(len(crops))
        return real(crops, *args)

    monkeypatch.setattr(recognizer.classifier, "probabilities", counting)
    dropped: list[int] = []
    two = recognizer.predict(image, max_faces=2, dropped=dropped)
    assert classified == [2] and dropped == [4]
    best = sorted(every, key=lambda f: -f.score)[:2]
    assert {f.box for f in two} == {f.box for f in best}
    assert [f.box for f in two] == [f.box for f in every if f.box in {b.box for b in best}]  # reading order
    dropped.clear()
    batch = recognizer.predict_batch([image, astronaut, image], max_faces=4, max_total_faces=5, dropped=dropped)
    assert sum(map(len, batch)) == 5 and sum(dropped) == 13 - 5 and all(len(b) <= 4 for b in batch)
    dropped.clear()
    assert recognizer.predict(astronaut, max_faces=1, dropped=dropped) and dropped == [0]
    with pytest.raises(ValueError, match="max_faces"):
        recognizer.predict(image, max_faces=1.5)


def test_the_face_caps_bound_facemesh_work_too(recognizer, monkeypatch):
    """With max_faces, FaceMesh verifies at most VERIFY_HEADROOM x the cap (the highest MTCNN scores), so a
    crowd of boxes costs what the cap allows; the others count as dropped."""
    from fer_core.detect import VERIFY_HEADROOM
    from tests.support.group_canvas import face_sources, group_canvas

    crowd = group_canvas((640, 480), 24, (24, 40), "gravel.jpg", seed=0, sources=face_sources(ferplus=0))
    mesh = recognizer.detector.face_mesh
    verified: list[int] = []
    real = mesh.run_batch

    def counting(images, detections):
        verified.append(sum(map(len, detections)))
        return real(images, detections)

    monkeypatch.setattr(mesh, "run_batch", counting)
    everything = recognizer.predict(crowd.image)
    assert len(everything) >= 20 and verified == [len(everything)]
    verified.clear()
    dropped: list[int] = []
    three = recognizer.predict(crowd.image, max_faces=3, dropped=dropped)
    assert len(three) == 3 and verified == [3 * VERIFY_HEADROOM] and dropped == [len(everything) - 3]


def test_torch_copy_is_the_same_model_on_torch(astronaut):
    """An ONNX recognizer's torch copy loads the same model with torch and shares the detector (what
    explanations run on); a torch recognizer is its own copy."""
    from fer_core import EmotionRecognizer

    onnx = EmotionRecognizer.from_pretrained(backend="onnx")
    copy = onnx.torch_copy()
    assert copy.backend == "torch" and copy.detector is onnx.detector and copy.source == onnx.source
    faces, image = onnx.predict(astronaut), Image.fromarray(astronaut)
    again = copy.classify_detections([image], [copy.detector.detect(image)])
    assert np.allclose(list(faces[0].probs.values()), list(again[0][0].probs.values()), atol=5e-3)
    assert copy.torch_copy() is copy

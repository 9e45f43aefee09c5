"""fer_core.mesh: MediaPipe FaceMesh in PyTorch and ONNX Runtime against the original tflite model (LiteRT),
on real faces (the astronaut, FER+ faces found by MTCNN) and on non-face crops."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from fer_core.detect import Detection, FaceDetector
from fer_core.mesh import crop
from fer_core.mesh.convert import DEFAULT_OUT, convert_tflite, layer_table, wheel_tflite_path
from fer_core.mesh.runner import FaceMesh
from tests.conftest import ROOT, compose_canvas

#: FER+ Train crops MTCNN finds one by one when upscaled on a grey canvas (fer0000003 is not found;
#: fer0000012, a half profile cut by the crop's edge, is left out).
TRAIN_CROPS = ["fer0000000.png", "fer0000001.png", "fer0000002.png", "fer0000004.png", "fer0000005.png",
               "fer0000006.png", "fer0000007.png", "fer0000008.png", "fer0000009.png", "fer0000010.png",
               "fer0000011.png", "fer0000013.png"]
#: MediaPipe mesh indices of the eye contours: the image-left eye (the subject's right) and the image-right eye.
EYE_IMAGE_LEFT = [33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173]
EYE_IMAGE_RIGHT = [263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398]


@pytest.fixture(scope="module")
def faces(astronaut, canvas, ferplus) -> list[tuple[Image.Image, list[Detection]]]:
    """Real images and their MTCNN detections: the astronaut (1 face), the FER+ Valid canvas (6), a
    canvas of 12 FER+ Train faces (12)."""
    detector = FaceDetector()
    train, _ = compose_canvas(ferplus / "FER2013Train", TRAIN_CROPS, columns=6)
    images = [Image.fromarray(astronaut), canvas[0], train]
    found = [detector.detect(image) for image in images]
    assert [len(d) for d in found] == [1, 6, 12]
    return list(zip(images, found))


@pytest.fixture(scope="module")
def crops(faces) -> tuple[np.ndarray, np.ndarray]:
    """The 19 faces' FaceMesh crops (N, 192, 192, 3) and transforms (N, 2, 3)."""
    parts = [crop.crop_rois(image, crop.face_rois(dets)) for image, dets in faces]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


@pytest.fixture(scope="module")
def torch_mesh() -> FaceMesh:
    return FaceMesh("torch", threads=2)


@pytest.fixture(scope="module")
def onnx_mesh() -> FaceMesh:
    return FaceMesh("onnx", threads=2)


def litert(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The original face_landmark.tflite run by LiteRT, one crop at a time."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(wheel_tflite_path()))
    interpreter.allocate_tensors()
    index = interpreter.get_input_details()[0]["index"]
    outputs = {o["name"]: o["index"] for o in interpreter.get_output_details()}
    landmarks, logits = [], []
    for x in batch:
        interpreter.set_tensor(index, x[None].astype(np.float32))
        interpreter.invoke()
        landmarks.append(interpreter.get_tensor(outputs["conv2d_20"]).reshape(468, 3))
        logits.append(float(interpreter.get_tensor(outputs["conv2d_30"]).reshape(())))
    return np.stack(landmarks), np.array(logits, dtype=np.float32)


def non_face_crops(astronaut: np.ndarray, count: int = 200) -> np.ndarray:
    """``count`` crops without a face: 120 rotated squares of the astronaut photo that do not touch the
    face (box about (180, 63, 268, 173)), 40 of uniform noise, 40 of one flat colour each."""
    rng = np.random.default_rng(0)
    image = Image.fromarray(astronaut)
    rois = []
    while len(rois) < 120:
        size = rng.uniform(48, 260)
        cx, cy = rng.uniform(size / 2, 512 - size / 2, 2)
        reach = size / math.sqrt(2)  # the rotated square lies within this radius of its centre
        if cx + reach > 150 and cx - reach < 300 and cy + reach > 30 and cy - reach < 210:
            continue
        rois.append((cx, cy, size, rng.uniform(-math.pi, math.pi)))
    photo, _ = crop.crop_rois(image, np.array(rois, dtype=np.float32))
    noise = rng.random((40, 192, 192, 3), dtype=np.float32)
    flat = np.broadcast_to(rng.random((40, 1, 1, 3), dtype=np.float32), (40, 192, 192, 3))
    return np.concatenate([photo, noise, flat])[:count]


def test_torch_net_equals_the_tflite_model_on_real_faces(crops, torch_mesh):
    batch, _ = crops
    assert len(batch) == 19
    ref_landmarks, ref_logits = litert(batch)
    landmarks, logits = torch_mesh.infer(batch)
    landmark_diff, logit_diff = np.abs(landmarks - ref_landmarks).max(), np.abs(logits - ref_logits).max()
    print(f"torch vs LiteRT on {len(batch)} faces: max landmark diff {landmark_diff:.2e} px, "
          f"max logit diff {logit_diff:.2e}")
    assert landmark_diff < 1e-3
    assert logit_diff < 1e-3
    assert np.ptp(ref_landmarks[..., 0], axis=1).min() > 50  # a real mesh, not a degenerate output


def test_onnx_runner_equals_torch_runner(faces, crops, torch_mesh, onnx_mesh):
    batch, _ = crops
    (t_landmarks, t_logits), (o_landmarks, o_logits) = torch_mesh.infer(batch), onnx_mesh.infer(batch)
    print(f"onnx vs torch on the crops: landmarks {np.abs(o_landmarks - t_landmarks).max():.2e} px, "
          f"logits {np.abs(o_logits - t_logits).max():.2e}")
    assert np.abs(o_landmarks - t_landmarks).max() < 1e-4
    assert np.abs(o_logits - t_logits).max() < 1e-4
    images, dets = [f[0] for f in faces], [f[1] for f in faces]
    for t, o in zip(torch_mesh.run_batch(images, dets), onnx_mesh.run_batch(images, dets)):
        mesh_diff = np.abs(o.mesh - t.mesh).max()
        print(f"onnx vs torch: mesh {mesh_diff:.2e} px, prob {np.abs(o.face_prob - t.face_prob).max():.2e}")
        np.testing.assert_allclose(o.mesh, t.mesh, atol=1e-4, rtol=1e-7)  # float32 rounding of ~1000 px
        assert np.abs(o.face_prob - t.face_prob).max() < 1e-5


def test_run_batch_equals_run_one_image_at_a_time(faces, onnx_mesh):
    images, dets = [f[0] for f in faces], [f[1] for f in faces]
    together = onnx_mesh.run_batch(images, dets)
    assert [len(o.mesh) for o in together] == [1, 6, 12]
    for image, det, joint in zip(images, dets, together):
        alone = onnx_mesh.run(image, det)
        np.testing.assert_allclose(alone.mesh, joint.mesh, atol=1e-3)
        np.testing.assert_allclose(alone.presence_logit, joint.presence_logit, atol=1e-4)
    empty = onnx_mesh.run(images[0], [])
    assert empty.mesh.shape == (0, 468, 3) and empty.face_prob.shape == (0,)
    # more faces than one network chunk (64), spread over images and across a chunk border: same answers
    many = onnx_mesh.run_batch([images[2], images[1], images[2]], [dets[2] * 4, dets[1], dets[2] * 3])
    assert [len(o.mesh) for o in many] == [48, 6, 36]
    np.testing.assert_allclose(many[0].mesh, np.concatenate([together[2].mesh] * 4), atol=1e-3)
    np.testing.assert_allclose(many[1].mesh, together[1].mesh, atol=1e-3)
    np.testing.assert_allclose(many[2].mesh, np.concatenate([together[2].mesh] * 3), atol=1e-3)


def test_shipped_weights_equal_a_fresh_conversion(tmp_path):
    from safetensors import safe_open
    from safetensors.numpy import load_file

    fresh = convert_tflite(wheel_tflite_path(), tmp_path / "fresh.safetensors")
    shipped, converted = load_file(str(DEFAULT_OUT)), load_file(str(fresh))
    assert sorted(shipped) == sorted(converted)
    assert len(shipped) == 2 * sum(kind != "prelu" for _, kind, _ in layer_table()) + sum(
        kind == "prelu" for _, kind, _ in layer_table())
    for name in shipped:
        assert shipped[name].dtype == np.float32 and np.array_equal(shipped[name], converted[name]), name
    assert sum(a.size for a in shipped.values()) == 604685
    with safe_open(str(DEFAULT_OUT), "np") as f:
        metadata = f.metadata()
    assert metadata["source_sha256"] == "2efcb4f4de43c7614b80a3cc3e8a37354b3b3b40f75cce20f6f38f0f25d65493"
    assert "Apache-2.0" in metadata["origin"]


def test_presence_is_high_on_faces_and_low_on_non_faces(astronaut, crops, onnx_mesh):
    _, face_logits = onnx_mesh.infer(crops[0])
    _, other_logits = onnx_mesh.infer(non_face_crops(astronaut))
    face_prob, other_prob = 1 / (1 + np.exp(-face_logits)), 1 / (1 + np.exp(-other_logits))
    print(f"presence: min {face_prob.min():.6f} on {len(face_prob)} faces; on {len(other_prob)} non-faces max "
          f"{other_prob.max():.4f}, median {np.median(other_prob):.2e}, {(other_prob >= 0.5).sum()} at >= 0.5")
    assert len(other_prob) == 200
    assert face_prob.min() >= 0.99
    # The face flag only checks a ROI that tracking or a detector already put on a face: the round mission
    # patch on the suit (0.91) and a dark corner (0.86) pass it, so it is no face detector. Uniform noise and
    # flat colours are all far below 0.5, and all but a few percent of the photo's patches.
    assert other_prob[120:].max() < 0.01
    assert (other_prob >= 0.5).mean() <= 0.025
    assert np.median(other_prob) < 0.01


def test_mesh_sits_on_the_face(faces, onnx_mesh):
    errors = []
    for image, dets in faces:
        out = onnx_mesh.run(image, dets)
        for det, mesh in zip(dets, out.mesh):
            eyes = np.stack([mesh[EYE_IMAGE_LEFT, :2].mean(0), mesh[EYE_IMAGE_RIGHT, :2].mean(0)])
            distance = np.linalg.norm(eyes - det.landmarks[:2], axis=1)
            between = np.linalg.norm(det.landmarks[1] - det.landmarks[0])
            errors.append(distance / between)
            x1, y1, x2, y2 = det.box
            w, h = x2 - x1, y2 - y1
            assert (mesh[:, 0] > x1 - 0.25 * w).all() and (mesh[:, 0] < x2 + 0.25 * w).all()
            assert (mesh[:, 1] > y1 - 0.25 * h).all() and (mesh[:, 1] < y2 + 0.25 * h).all()
            assert np.ptp(mesh[:, 0]) > 0.6 * w  # spread over the face, not collapsed
            if len(dets) == 1:  # the astronaut: a few pixels in a 512 px photo
                print(f"astronaut: mesh eye centres {distance.round(2)} px from MTCNN's eyes")
                assert distance.max() < 4
    errors = np.array(errors)
    print(f"eye error / eye distance: mean {errors.mean():.3f}, max {errors.max():.3f} over {len(errors)} faces")
    assert errors.mean() < 0.1
    assert errors.max() < 0.25


def test_face_rois_follow_mediapipe():
    det = Detection((100.0, 50.0, 180.0, 150.0), 1.0,
                    np.array([[120, 90], [160, 130], [140, 110], [125, 130], [155, 135]], np.float32))
    (cx, cy, size, angle), = crop.face_rois([det])
    assert (cx, cy) == (140.0, 100.0)
    assert size == pytest.approx(crop.ROI_SCALE * 100)  # square of the longer side
    assert angle == pytest.approx(math.pi / 4)  # eye line descending to the right: clockwise
    level = Detection(det.box, 1.0, det.landmarks * np.float32([1, 0]) + np.float32([0, 90]))
    assert crop.face_rois([level])[0, 3] == 0.0
    with pytest.raises(ValueError):
        crop.face_rois([det], scale=0)


def test_crop_transform_maps_crop_pixels_to_image_pixels():
    image = np.zeros((300, 400, 3), np.uint8)
    image[118:122, 248:252] = 255  # a bright 4x4 dot centred at (250, 120) in continuous coordinates
    roi = np.array([[220.0, 140.0, 150.0, math.radians(30)]], np.float32)
    crops, transforms = crop.crop_rois(Image.fromarray(image), roi)
    assert crops.shape == (1, 192, 192, 3) and crops.dtype == np.float32 and 0 <= crops.min() <= crops.max() <= 1
    weights = crops[0, ..., 0]
    v, u = np.indices(weights.shape) + 0.5
    centre = np.array([(u * weights).sum(), (v * weights).sum(), 0.0]) / weights.sum()
    dot = crop.to_image(centre[None, None].astype(np.float32), transforms)[0, 0]
    assert np.abs(dot[:2] - [250, 120]).max() < 0.5
    corner = crop.to_image(np.array([[[96, 96, 10]]], np.float32), transforms)[0, 0]
    assert corner[:2] == pytest.approx([220, 140], abs=1e-4) and corner[2] == pytest.approx(10 * 150 / 192)


def test_crop_replicates_the_border_outside_the_image():
    image = np.zeros((100, 100, 3), np.uint8)
    image[:, :50] = (200, 10, 10)
    image[:, 50:] = (10, 10, 200)
    crops, _ = crop.crop_rois(Image.fromarray(image), np.array([[10.0, 50.0, 200.0, 0.0]], np.float32))
    left = crops[0, 96, :20]
    assert np.allclose(left, np.float32([200, 10, 10]) / 255, atol=1e-6)  # not black: the edge repeated


def test_onnx_backend_imports_no_torch(tmp_path, faces, onnx_mesh):
    image, dets = faces[0]
    image.save(tmp_path / "face.png")
    spec = [{"box": list(d.box), "landmarks": d.landmarks.tolist()} for d in dets]
    code = f"""
import json, sys, types
import numpy as np
from PIL import Image
from fer_core.mesh import FaceMesh
dets = [types.SimpleNamespace(box=d["box"], landmarks=np.array(d["landmarks"], np.float32))
        for d in json.loads({json.dumps(json.dumps(spec))})]
out = FaceMesh(backend="onnx").run(Image.open({str(tmp_path / 'face.png')!r}).convert("RGB"), dets)
print(json.dumps({{"torch": "torch" in sys.modules, "mesh": out.mesh.tolist(), "prob": out.face_prob.tolist()}}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["torch"] is False
    np.testing.assert_allclose(np.array(result["mesh"]), onnx_mesh.run(image, dets).mesh, atol=1e-3)
    assert result["prob"][0] >= 0.99


def test_bad_arguments_raise():
    from fer_core.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError):
        FaceMesh("tensorflow")
    with pytest.raises(InvalidArgumentError):
        FaceMesh("onnx", threads=0)
    mesh = FaceMesh("onnx", threads=1)
    with pytest.raises(InvalidArgumentError):
        mesh.run_batch([Image.new("RGB", (64, 64))], [])
    with pytest.raises(InvalidArgumentError):
        mesh.run(Image.new("L", (64, 64)), [])

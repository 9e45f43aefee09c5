"""Real MTCNN on real photos, on both backends: ONNX Runtime (fer_core.mtcnn, the default) and
facenet-pytorch with the installed torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from fer_core.detect import FaceDetector, adaptive_min_face_size


@pytest.fixture(scope="module", params=["onnx", "torch"])
def detector(request) -> FaceDetector:
    return FaceDetector(backend=request.param)


def test_default_backend_is_onnx():
    assert FaceDetector(verify=False).backend == "onnx"


def test_mtcnn_loads_and_runs_with_installed_torch(astronaut):
    from packaging.version import Version

    detector = FaceDetector(backend="torch")
    # facenet-pytorch 2.5.3 (the MTCNN code and weights of 2.6.0, without its torch<2.3 pin) on a current torch
    assert Version(torch.__version__.split("+")[0]) >= Version("2.6")
    assert sum(p.numel() for p in detector.mtcnn.parameters()) > 400_000  # pnet+rnet+onet weights
    boxes, probs, points = detector.mtcnn.detect(Image.fromarray(astronaut), landmarks=True)
    assert boxes.shape == (1, 4) and points.shape == (1, 5, 2) and 0.99 < float(probs[0]) <= 1.0


class _Exploit:
    def __reduce__(self):  # unpickling this would run code
        import os

        return (os.system, ("echo pwned",))


def test_mtcnn_weight_files_are_loaded_without_unpickling_code(tmp_path):
    """facenet-pytorch reads pnet/rnet/onet.pt with a bare ``torch.load(path)``: on torch >= 2.6 (the
    floor in pyproject.toml) that means ``weights_only=True``, which refuses a file that would run
    code instead of handing back tensors."""
    import inspect
    import tomllib

    import facenet_pytorch.models.mtcnn as mtcnn_module
    from packaging.requirements import Requirement
    from packaging.version import Version

    from tests.conftest import ROOT

    assert "torch.load(state_dict_path)" in inspect.getsource(mtcnn_module)  # no weights_only=False there
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["torch"]
    floor = next(Requirement(d) for d in deps if d.startswith("torch>"))
    assert all(Version(spec.version) >= Version("2.6") for spec in floor.specifier)
    bad = tmp_path / "pnet.pt"
    torch.save({"weight": _Exploit()}, bad)
    with pytest.raises(Exception, match="[Ww]eights only load failed"):
        torch.load(bad)


def test_astronaut_one_face_at_the_right_place(detector, astronaut):
    faces = detector.detect(Image.fromarray(astronaut))
    assert len(faces) == 1
    x1, y1, x2, y2 = faces[0].box
    assert abs(x1 - 180) < 12 and abs(y1 - 63) < 12 and abs(x2 - 268) < 12 and abs(y2 - 173) < 12
    assert faces[0].score > 0.99
    lm = faces[0].landmarks
    assert lm.shape == (5, 2) and lm.dtype == np.float32
    assert lm[0, 0] < lm[1, 0]  # left eye left of right eye
    assert (lm[:, 0] > x1).all() and (lm[:, 0] < x2).all()


def test_multi_face_canvas_counts_and_positions(detector, canvas):
    image, tiles = canvas
    faces = detector.detect(image)
    assert len(faces) == len(tiles)
    # reading order: the canvas is 3 columns x 2 rows, tiles listed row by row
    for face, tile in zip(faces, tiles):
        assert tile[0] < (face.box[0] + face.box[2]) / 2 < tile[2]
        assert tile[1] < (face.box[1] + face.box[3]) / 2 < tile[3]
    for tile in tiles:  # each tile holds exactly one detected face centre
        inside = [f for f in faces if tile[0] < (f.box[0] + f.box[2]) / 2 < tile[2]
                  and tile[1] < (f.box[1] + f.box[3]) / 2 < tile[3]]
        assert len(inside) == 1


def test_large_image_is_downscaled_and_boxes_mapped_back(detector, astronaut):
    big = Image.fromarray(astronaut).resize((2048, 2048), Image.Resampling.BICUBIC)
    faces = detector.detect(big)
    assert len(faces) == 1
    x1, y1, x2, y2 = faces[0].box
    assert abs(x1 - 4 * 180) < 48 and abs(y2 - 4 * 173) < 48


def test_threshold_and_min_face_size(detector, astronaut):
    img = Image.fromarray(astronaut)
    everything = detector.detect(img, threshold=0.0)
    default = detector.detect(img)
    assert [f.box for f in everything if f.score >= 0.9] == [f.box for f in default]
    assert detector.detect(img, min_face_size=200) == []  # the face is ~90 px
    with pytest.raises(ValueError):
        detector.detect(img, threshold=1.5)
    with pytest.raises(ValueError):
        detector.detect(img, min_face_size=5)


def test_no_face_and_tiny_images(detector):
    rng = np.random.default_rng(0)
    assert detector.detect(Image.new("RGB", (640, 480), (200, 200, 200))) == []
    assert detector.detect(Image.fromarray(rng.integers(0, 255, (300, 300, 3), dtype=np.uint8))) == []
    assert detector.detect(Image.new("RGB", (1, 1))) == []


def test_adaptive_min_face_size():
    assert adaptive_min_face_size(640, 480) == 40
    assert adaptive_min_face_size(100, 100) == 20


def test_reading_order_rows_then_columns():
    from fer_core.detect import Detection, reading_order

    lm = np.zeros((5, 2), np.float32)

    def det(x, y):
        return Detection((x, y, x + 100, y + 100), 0.99, lm)

    faces = [det(400, 210), det(0, 0), det(200, 20), det(10, 200), det(420, 0)]  # two slightly ragged rows
    assert [f.box[:2] for f in reading_order(faces)] == [(0, 0), (200, 20), (420, 0), (10, 200), (400, 210)]


def test_detect_batch_matches_one_by_one_across_sizes_and_chunks(detector, astronaut, canvas):
    """Same-size images share MTCNN batches (MAX_DETECT_BATCH at a time); results equal detect()."""
    from fer_core.detect import MAX_DETECT_BATCH

    astro = Image.fromarray(astronaut)
    shifted = [Image.fromarray(np.roll(astronaut, 4 * i, axis=1)) for i in range(MAX_DETECT_BATCH + 1)]
    images = [canvas[0], *shifted[:3], Image.new("RGB", (300, 200), (90, 90, 90)), *shifted[3:]]
    batched = detector.detect_batch(images)
    assert [len(d) for d in batched] == [6, *[1] * 3, 0, *[1] * (len(shifted) - 3)]
    for image, found in zip(images, batched):
        single = detector.detect(image)
        assert len(single) == len(found)
        for a, b in zip(single, found):
            assert np.allclose(a.box, b.box, atol=0.5) and abs(a.score - b.score) < 1e-3
    assert batched[1][0].box[0] == pytest.approx(detector.detect(astro)[0].box[0], abs=0.5)


#: Every short side from 1 to 24 px, square and as a strip either way (the 12..19 px ones used to crash
#: MTCNN: an image below the smallest face size gives it an empty scale pyramid).
TINY_SIZES = [s for n in range(1, 25) for s in ((n, n), (200, n), (n, 200))]


def test_image_smaller_than_the_smallest_face_is_no_face_not_an_error(detector):
    for size in TINY_SIZES:
        image = Image.new("RGB", size, (120, 110, 100))
        assert detector.detect(image) == [], size  # adaptive: at least 20 px
        assert detector.detect(image, min_face_size=12) == [], size
    assert detector.detect_batch([Image.new("RGB", s) for s in TINY_SIZES]) == [[]] * len(TINY_SIZES)
    # an explicit minimum larger than the image, and a strip that downscaling makes thinner than it
    assert detector.detect(Image.new("RGB", (60, 60)), min_face_size=100) == []
    assert detector.detect(Image.new("RGB", (4000, 30)), min_face_size=20) == []
    for n in (47, 94, 147):  # n * (12 / n) < 12 in floating point: a face as large as the image, no scale
        assert detector.detect(Image.new("RGB", (n, n + 30)), min_face_size=n) == []
    assert detector.detect(Image.new("RGB", (48, 70)), min_face_size=48) == []  # one scale: runs, finds none


def test_limit_faces_keeps_the_highest_scores_in_reading_order():
    from fer_core.detect import Detection, limit_faces

    lm = np.zeros((5, 2), np.float32)

    def det(x, score, side=50):
        return Detection((x, 0, x + side, side), score, lm)

    a = [det(0, 0.95), det(100, 0.99), det(200, 0.97), det(300, 0.97, side=80)]
    b = [det(0, 0.98), det(100, 0.96)]
    kept, dropped = limit_faces([a, b], max_faces=2)
    assert [[d.box[0] for d in k] for k in kept] == [[100, 300], [0, 100]] and dropped == [2, 0]  # tie: larger box
    kept, dropped = limit_faces([a, b], max_faces=2, max_total=3)
    assert [[d.box[0] for d in k] for k in kept] == [[100, 300], [0]] and dropped == [2, 1]
    kept, dropped = limit_faces([a, b], max_total=0)
    assert kept == [[], []] and dropped == [4, 2]
    assert limit_faces([a, []])[1] == [0, 0]
    with pytest.raises(ValueError, match="max_faces"):
        limit_faces([a], max_faces=-1)


def test_verification_keeps_faces_mtcnn_is_sure_of(astronaut):
    """FaceMesh's presence flag fails on blurred faces: the astronaut blurred (Gaussian radius 5) has
    MTCNN 0.99 but face_prob ~0.3. With the default trusted score (0.95) the face stays and carries its
    face_prob; letting FaceMesh decide alone (trusted_score=1.0) rejects it and counts it."""
    from PIL import ImageFilter

    blurred = Image.fromarray(astronaut).filter(ImageFilter.GaussianBlur(5))
    rejected: list[int] = []
    faces = FaceDetector().detect(blurred, rejected=rejected)
    assert len(faces) == 1 and rejected == [0]
    assert faces[0].score >= 0.95 and faces[0].face_prob < 0.5 and faces[0].mesh.shape == (468, 3)
    strict: list[int] = []
    assert FaceDetector(trusted_score=1.0).detect(blurred, rejected=strict) == [] and strict == [1]

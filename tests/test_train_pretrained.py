"""--pretrained: torchvision ImageNet weights from TORCH_HOME, an EmotionNet export, bad paths."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from fer_core.config import ModelConfig
from fer_core.model import EmotionNet
from fer_train.pretrained import load_pretrained
from tests.conftest import SHARED, require_shared


def test_imagenet_from_torch_home(monkeypatch):
    home = SHARED / "weights" / "torch"
    require_shared(home / "hub" / "checkpoints" / "mobilenet_v2-b0353104.pth")
    monkeypatch.setenv("TORCH_HOME", str(home))
    model = EmotionNet(ModelConfig(input_size=64))
    head_before = model.net.classifier[-1].weight.clone()
    assert "IMAGENET1K_V1" in load_pretrained(model, "imagenet")
    ref = torch.load(home / "hub" / "checkpoints" / "mobilenet_v2-b0353104.pth", weights_only=True)
    assert torch.equal(model.net.features[0][0].weight, ref["features.0.0.weight"])
    assert torch.equal(model.net.classifier[-1].weight, head_before)  # 1000-way head not loaded


def test_continue_from_an_emotionnet_export(random_model_dir):
    model = EmotionNet(ModelConfig(input_size=64))
    load_pretrained(model, str(random_model_dir / "model.safetensors"))
    saved = load_file(str(random_model_dir / "model.safetensors"))
    state = model.state_dict()
    assert all(torch.equal(state[k], saved[k]) for k in saved)  # head included


def test_bad_pretrained_values(tmp_path):
    model = EmotionNet(ModelConfig(input_size=64))
    with pytest.raises(RuntimeError, match="no such file"):
        load_pretrained(model, str(tmp_path / "missing.pth"))
    other = EmotionNet(ModelConfig(backbone="resnet18", input_size=64))
    other.save_pretrained(tmp_path / "r18")
    with pytest.raises(RuntimeError, match="does not fit mobilenet_v2"):
        load_pretrained(model, str(tmp_path / "r18" / "model.safetensors"))


def test_a_registered_source_loads_through_its_loader(monkeypatch, random_model_dir):
    from fer_core.errors import InvalidArgumentError
    from fer_train import pretrained

    monkeypatch.setattr(pretrained, "_SOURCES", {})
    saved = {k[4:]: v for k, v in load_file(str(random_model_dir / "model.safetensors")).items()}
    pretrained.register_pretrained("faces-v0", lambda model: (saved, f"faces for {model.config.backbone}"))
    model = EmotionNet(ModelConfig(input_size=64))
    assert load_pretrained(model, "faces-v0") == "faces for mobilenet_v2"
    assert torch.equal(model.net.features[0][0].weight, saved["features.0.0.weight"])
    with pytest.raises(RuntimeError, match="registered name: faces-v0"):
        load_pretrained(model, "faces-v1")
    for reserved in ("", "none", "imagenet", "IMAGENET1K_V2"):
        with pytest.raises(InvalidArgumentError, match="cannot register"):
            pretrained.register_pretrained(reserved, lambda model: ({}, ""))

"""The backbone registry: a registered network is buildable, valid in config.json, saved and loaded
through the one load path; unknown and clashing names are refused with clear errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fer_core import Backbone, InvalidArgumentError, ModelConfig, ModelLoadError, register_backbone
from fer_core.backbones import backbone_names, backbone_normalization
from fer_core.model import EmotionNet, load_model


class TinyNet(nn.Module):
    """A 3-layer CNN with an ``fc`` head, as registered backbones may have."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(8, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def test_registered_backbone_round_trips_through_load_model(tmp_path):
    register_backbone("tiny_test_net", Backbone(TinyNet, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                                                min_input_size=32))
    assert "tiny_test_net" in backbone_names()
    assert backbone_normalization("tiny_test_net") == ([0.5] * 3, [0.25] * 3)
    labels = ["calm", "smile", "frown"]
    model = EmotionNet(ModelConfig(backbone="tiny_test_net", labels=labels, input_size=32)).eval()
    assert model.net.fc[-1].out_features == 3  # the emotion head replaced the 1000-way one
    model.save_pretrained(tmp_path / "m")
    again = load_model(tmp_path / "m")
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(model(x), again(x)) and again.config.labels == labels and again.revision is None
    with pytest.raises(ModelLoadError, match="at least 32 for backbone tiny_test_net"):
        ModelConfig(backbone="tiny_test_net", input_size=24)


def test_unknown_and_clashing_names_are_refused():
    with pytest.raises(ModelLoadError, match="'backbone' must be one of mobilenet_v2"):
        ModelConfig(backbone="no_such_net")
    with pytest.raises(InvalidArgumentError, match="unknown backbone 'no_such_net'"):
        backbone_normalization("no_such_net")
    with pytest.raises(InvalidArgumentError, match="torchvision name"):
        register_backbone("resnet18", Backbone(TinyNet))

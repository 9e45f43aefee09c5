"""MediaPipe FaceMesh's trunk as an emotion backbone: a face-trained start for the classifier.

FaceMesh (Kartynnik et al., "Real-time Facial Surface Geometry from Monocular Video on Mobile
GPUs", CVPR-W 2019; MediaPipe ``face_landmark.tflite``, Apache-2.0; :mod:`fer_core.mesh`) is trained
to place 468 points on the eyes, brows, nose and lips: the parts that carry expression. This
backbone keeps its stem, its 16-block trunk and the three 128-channel blocks of its landmark head,
then global average pooling and a dropout + linear emotion head (``fc``)::

    stem conv 3x3/2 (16) - trunk (stride 16, 128 ch) - landmark-head blocks (stride 2, 1, 1; 128 ch)
    - global average pool (128) - fc

Importing this module registers the backbone ``facemesh_trunk`` and the pretrained source
``--pretrained facemesh`` (the shipped ``fer_core/mesh/face_landmark.safetensors``, every layer kept
but the landmark and face-flag outputs). Inputs are RGB in [0, 1] as FaceMesh's (mean 0, std 1);
FaceMesh runs at 192 px, any side >= 32 works (the network is fully convolutional).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from fer_core.backbones import Backbone, register_backbone
from fer_core.errors import ModelLoadError
from fer_core.mesh.net import DEFAULT_WEIGHTS, FaceMeshNet, _same_pad
from fer_core.model import EmotionNet
from fer_train import pretrained

#: Width of the pooled feature vector (the landmark head's channels).
FEATURES: int = 128


class FaceMeshTrunk(nn.Module):
    """FaceMesh's stem, trunk and landmark-head blocks with a global-average-pool + linear head.

    Args:
        num_outputs: size of ``fc`` (replaced by the emotion head by :func:`fer_core.model.build_backbone`).

    Forward: float32 ``(N, 3, S, S)`` RGB in [0, 1], S >= 32 -> ``(N, num_outputs)``.
    """

    def __init__(self, num_outputs: int = 1000) -> None:
        super().__init__()
        mesh = FaceMeshNet()
        self.stem, self.stem_act, self.trunk = mesh.stem, mesh.stem_act, mesh.trunk
        self.blocks = mesh.landmarks.blocks
        self.fc: nn.Module = nn.Linear(FEATURES, num_outputs)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features, float32 ``(N, 128)``."""
        x = self.stem_act(self.stem(F.pad(x, _same_pad(2))))
        x = self.blocks(self.trunk(x))
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.fc(self.forward_features(x))


def facemesh_weights(model: EmotionNet) -> tuple[dict[str, torch.Tensor], str]:
    """``--pretrained facemesh``: the shipped FaceMesh weights mapped onto :class:`FaceMeshTrunk`.

    Returns:
        ``(state dict for model.net without the head, description)``.

    Raises:
        ModelLoadError: the model's backbone is not ``facemesh_trunk``.
    """
    if model.config.backbone != "facemesh_trunk":
        raise ModelLoadError(f"--pretrained facemesh needs --backbone facemesh_trunk, not {model.config.backbone}")
    source = load_file(str(DEFAULT_WEIGHTS))
    state = {}
    for key, value in source.items():
        if key.startswith(("stem", "trunk")):
            state[key] = value
        elif key.startswith("landmarks.blocks."):
            state[key.replace("landmarks.blocks.", "blocks.", 1)] = value
    return state, "MediaPipe FaceMesh face_landmark.tflite (Apache-2.0), stem + trunk + landmark-head blocks"


register_backbone("facemesh_trunk", Backbone(FaceMeshTrunk, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                                             min_input_size=32))
pretrained.register_pretrained("facemesh", facemesh_weights)

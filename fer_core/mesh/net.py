"""MediaPipe FaceMesh (``face_landmark.tflite``) re-implemented in plain PyTorch.

Source: Kartynnik et al., "Real-time Facial Surface Geometry from Monocular Video on Mobile GPUs",
CVPR Workshop on Computer Vision for AR/VR 2019; graph and weights of Google MediaPipe's
``face_landmark.tflite`` (Apache-2.0; model description
``facemesh_facecontours_faceflag-blaze_shift30-2019_01_14-v0``), see ``NOTICE.md``.

The TFLite graph, op by op (NHWC there, NCHW here):

* stem: CONV_2D 3x3 stride 2 SAME (3 -> 16), PRELU;
* 14 residual blocks (:class:`ResidualBlock`): DEPTHWISE_CONV_2D 3x3 SAME (stride 1 or 2), CONV_2D
  1x1, ADD of the shortcut (identity, or MAX_POOL_2D 2x2 stride 2 VALID then PAD with zero channels
  at the end when the width grows), PRELU; 192 -> 96 -> 48 -> 24 -> 12 -> 6 pixels;
* landmark head: 3 blocks (the first stride 2: 6 -> 3), CONV_2D 1x1 128 -> 32, PRELU, 1 block,
  CONV_2D 3x3 VALID 32 -> 1404 (468 x (x, y, z));
* face-flag head: 1 block (stride 2), CONV_2D 1x1 128 -> 32, PRELU, 1 block, CONV_2D 3x3 VALID
  32 -> 1 (the presence logit).

TFLite's SAME padding puts the odd extra pixel after (right/bottom): a 3x3 stride-2 convolution on
an even size pads ``(0, 1)`` on each axis, a stride-1 one ``(1, 1)``; PyTorch's symmetric ``padding``
cannot express the former, so every such layer pads explicitly with :func:`torch.nn.functional.pad`.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

#: Side of the square RGB input crop, pixels.
INPUT_SIZE: int = 192
#: Landmarks per face.
NUM_LANDMARKS: int = 468

#: (input channels, output channels, stride) of the trunk's residual blocks, in graph order.
TRUNK: tuple[tuple[int, int, int], ...] = (
    (16, 16, 1), (16, 16, 1), (16, 32, 2), (32, 32, 1), (32, 32, 1), (32, 64, 2), (64, 64, 1),
    (64, 64, 1), (64, 128, 2), (128, 128, 1), (128, 128, 1), (128, 128, 2), (128, 128, 1), (128, 128, 1),
)


def _same_pad(stride: int) -> tuple[int, int, int, int]:
    """TFLite SAME padding ``(left, right, top, bottom)`` of a 3x3 window on an even-sized input."""
    return (1, 1, 1, 1) if stride == 1 else (0, 1, 0, 1)


class ResidualBlock(nn.Module):
    """BlazeFace-style residual block: depthwise 3x3 (SAME) -> pointwise 1x1 -> + shortcut -> PReLU.

    Source: Bazarevsky et al., "BlazeFace: Sub-millisecond Neural Face Detection on Mobile GPUs",
    2019, as laid out in ``face_landmark.tflite``.

    Args:
        channels_in: input channels.
        channels_out: output channels (>= ``channels_in``; extra shortcut channels are zeros).
        stride: 1, or 2 (the shortcut is then a 2x2 stride-2 max pool; the input's height and width
            must be even).
    """

    def __init__(self, channels_in: int, channels_out: int, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        self.extra = channels_out - channels_in
        self.dw = nn.Conv2d(channels_in, channels_in, 3, stride=stride, groups=channels_in)
        self.pw = nn.Conv2d(channels_in, channels_out, 1)
        self.act = nn.PReLU(channels_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """float32 ``(N, C_in, H, W)`` -> ``(N, C_out, H / stride, W / stride)``."""
        h = self.pw(self.dw(F.pad(x, _same_pad(self.stride))))
        shortcut = x if self.stride == 1 else F.max_pool2d(x, 2)
        if self.extra:
            shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.extra))
        return self.act(h + shortcut)


class _Head(nn.Module):
    """One output branch: blocks, 1x1 conv 128 -> 32 + PReLU, one 32-channel block, 3x3 VALID conv."""

    def __init__(self, strides: tuple[int, ...], outputs: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*[ResidualBlock(128, 128, s) for s in strides])
        self.reduce = nn.Conv2d(128, 32, 1)
        self.reduce_act = nn.PReLU(32)
        self.block = ResidualBlock(32, 32, 1)
        self.out = nn.Conv2d(32, outputs, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.reduce_act(self.reduce(self.blocks(x)))
        return self.out(self.block(x)).flatten(1)


class FaceMeshNet(nn.Module):
    """MediaPipe FaceMesh network: 468 3-D face landmarks and a face-presence logit from one crop.

    Weights: :func:`fer_core.mesh.runner.load_facemesh_net` (the shipped safetensors) or
    :func:`fer_core.mesh.convert.convert_tflite`. The crop is the rotated square ROI of
    :mod:`fer_core.mesh.crop`.

    Source: Kartynnik et al., CVPR-W 2019; MediaPipe ``face_landmark.tflite`` (Apache-2.0).
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, stride=2)
        self.stem_act = nn.PReLU(16)
        self.trunk = nn.Sequential(*[ResidualBlock(i, o, s) for i, o, s in TRUNK])
        self.landmarks = _Head((2, 1, 1), 3 * NUM_LANDMARKS)
        self.faceflag = _Head((2,), 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the network.

        Args:
            x: float32 ``(N, 3, 192, 192)`` RGB crops, values in [0, 1].

        Returns:
            ``(landmarks, presence_logit)``: float32 ``(N, 468, 3)`` ``(x, y, z)`` in crop pixels (x, y
            in about 0..192, right/down; z relative depth in the same scale, smaller is nearer the
            camera), and float32 ``(N,)`` face-presence logits (sigmoid -> probability of a face).
        """
        x = self.stem_act(self.stem(F.pad(x, _same_pad(2))))
        x = self.trunk(x)
        landmarks = self.landmarks(x).reshape(-1, NUM_LANDMARKS, 3)
        return landmarks, self.faceflag(x).reshape(-1)


#: The shipped weights (``python -m fer_core.mesh.convert`` regenerates them).
DEFAULT_WEIGHTS = Path(__file__).with_name("face_landmark.safetensors")


def load_facemesh_net(path: str | Path = DEFAULT_WEIGHTS) -> FaceMeshNet:
    """A :class:`FaceMeshNet` in eval mode with the weights of a safetensors file.

    Args:
        path: safetensors from :func:`fer_core.mesh.convert.convert_tflite` (default: the shipped file).

    Raises:
        OSError: the file cannot be read.
        RuntimeError: its tensors do not fit FaceMeshNet (missing, unexpected or misshapen keys).
    """
    from safetensors.torch import load_file

    net = FaceMeshNet()
    net.load_state_dict(load_file(str(path)), strict=True)
    return net.eval().requires_grad_(False)

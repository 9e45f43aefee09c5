"""dlib's face-recognition ResNet in PyTorch: a face-pretrained backbone.

The network of ``dlib_face_recognition_resnet_model_v1.dat`` (Davis King, 2017; dlib's
``dnn_face_recognition_ex.cpp``): 29 convolutions in a ResNet-34-like layout with half the
width, trained as a metric-learning face descriptor on about 3 million faces (99.38 % on the LFW
benchmark). Its weights are CC0 and ship on PyPI in ``face-recognition-models``;
:mod:`research.convert_dlib` reads them into this module.

Layout (dlib's names in brackets; ``block`` = conv3x3-affine-relu-conv3x3-affine)::

    stem     conv 7x7/2, 32 (no padding) - affine - relu - max pool 3x3/2 (no padding)
    level4   3 x residual block,  32 channels                     [ares<32>]
    level3   residual down block + 3 x block,  64 channels        [ares_down<64>, ares<64>]
    level2   residual down block + 2 x block, 128 channels
    level1   residual down block + 2 x block, 256 channels
    level0   residual down block,             256 channels
    head     global average pool (256) - fc                      [avg_pool_everything, fc_no_bias<128>]

A down block's first convolution has stride 2 and, as in dlib, no padding; its shortcut is a
2x2/2 average pool of the block's input. dlib adds the two branches with zero padding where
their shapes differ (more channels, or one more row/column in the pooled shortcut), and so does
:func:`add_zero_padded`. dlib's ``affine`` layers (per-channel scale and shift, its inference
form of batch normalisation) are :class:`torch.nn.BatchNorm2d` modules here, so the network can be
fine-tuned with batch statistics and :func:`fer_core.model.fuse_batchnorm` folds them at inference.

The input is dlib's: RGB pixels ``(x - mean_rgb) / 256`` with ``mean_rgb`` =
:data:`DLIB_MEAN_RGB`, i.e. ``mean = DLIB_MEAN_RGB / 255``, ``std = 256 / 255`` in
:mod:`fer_core.preprocess` terms. dlib runs it at 150x150; any side from
:data:`DLIB_MIN_INPUT_SIZE` (104) up works (the descriptor is only meaningful at 150).
"""

from __future__ import annotations

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from fer_core.backbones import Backbone, register_backbone

#: (channels, number of blocks, first block is a down block) per level, input to output.
LEVELS: tuple[tuple[int, int, bool], ...] = ((32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True),
                                             (256, 1, True))
#: Width of the pooled feature vector.
FEATURES: int = 256


def add_zero_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a + b`` where the smaller tensor is zero-padded to the larger (dlib's ``add_prev``).

    Args:
        a, b: float tensors ``(N, C, H, W)`` with the same ``N``; ``C``, ``H``, ``W`` may differ.

    Returns:
        ``(N, max C, max H, max W)``: each input padded with zeros after its last channel, row and
        column, then summed.
    """
    if a.shape == b.shape:
        return a + b
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def pad(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))

    return pad(a) + pad(b)


# A leaf for torch.fx: its shape test cannot be traced symbolically, and fuse_batchnorm traces.
torch.fx.wrap("add_zero_padded")


class DlibBlock(nn.Module):
    """One residual block of the dlib ResNet (``ares`` or, with ``down``, ``ares_down``).

    Args:
        in_channels: channels of the input.
        channels: channels of both convolutions and of the output.
        down: first convolution with stride 2 and no padding, shortcut through a 2x2/2 average pool.
    """

    def __init__(self, in_channels: int, channels: int, down: bool) -> None:
        super().__init__()
        stride, padding = (2, 0) if down else (1, 1)
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=padding)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AvgPool2d(2, 2) if down else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``relu(block(x) + shortcut(x))``; float32 ``(N, C_in, H, W)`` -> ``(N, channels, H', W')``."""
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(add_zero_padded(out, self.pool(x)))


class DlibResNet(nn.Module):
    """dlib's face-recognition ResNet: float32 ``(N, 3, S, S)`` -> ``(N, num_outputs)``.

    With the defaults and the converted weights (``python -m research.convert_dlib``) it computes
    dlib's 128-D face descriptor of a 150x150 face chip. As a classifier backbone
    (:func:`fer_core.model.build_backbone`), ``fc`` is replaced by a dropout + linear head on the
    256 pooled features.

    Args:
        num_outputs: width of the final linear layer.
        bias: whether it has a bias (dlib's descriptor layer ``fc_no_bias`` has none).

    An input side below :data:`DLIB_MIN_INPUT_SIZE` makes a convolution fail
    (torch's RuntimeError); :class:`fer_core.config.ModelConfig` refuses such an ``input_size``.
    """

    def __init__(self, num_outputs: int = 128, bias: bool = False) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 32, 7, stride=2, padding=0),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
        )
        blocks, in_channels = [], 32
        for channels, count, down in LEVELS:
            for i in range(count):
                blocks.append(DlibBlock(in_channels, channels, down=down and i == 0))
                in_channels = channels
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc: nn.Module = nn.Linear(FEATURES, num_outputs, bias=bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features, float32 ``(N, 256)``."""
        return torch.flatten(self.pool(self.blocks(self.stem(x))), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``fc`` of the pooled features: ``(N, 3, S, S)`` -> ``(N, num_outputs)``."""
        return self.fc(self.forward_features(x))


#: dlib's face-recognition ResNet takes RGB ``(x - DLIB_MEAN_RGB) / 256`` for pixels ``x`` in 0..255
#: (the means stored in dlib_face_recognition_resnet_model_v1.dat).
DLIB_MEAN_RGB: tuple[float, float, float] = (122.782, 117.001, 104.298)
DLIB_PIXEL_SCALE: float = 256.0
#: Smallest input side: the unpadded stride-2 convolutions need a 3x3 input at the last level (at
#: 103 px and below one gets 2x2).
DLIB_MIN_INPUT_SIZE: int = 104

# importing this module makes ``dlib_resnet`` a backbone fer_core can build and config.json can name
register_backbone("dlib_resnet", Backbone(
    DlibResNet, mean=tuple(m / 255.0 for m in DLIB_MEAN_RGB),  # type: ignore[arg-type]
    std=(DLIB_PIXEL_SCALE / 255.0,) * 3, min_input_size=DLIB_MIN_INPUT_SIZE))

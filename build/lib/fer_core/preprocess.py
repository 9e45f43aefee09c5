"""Face crop -> network input tensor. The one preprocessing path, shared by training and inference.

Steps, all driven by :class:`~fer_core.config.ModelConfig`:
crop -> grayscale or RGB (``color_mode``) -> resize to ``native_size`` (the training data's
resolution, 48 for FER+) -> resize to ``input_size`` -> scale to [0, 1] -> normalise with
``mean``/``std``. Grayscale is replicated to the 3 channels the torchvision backbones expect.
Training applies its augmentation on top of this module (before :func:`crop_to_tensor` for
geometry, after it for random erasing); it never reimplements these steps.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from .config import ModelConfig


def prepare_crop(crop: Image.Image, config: ModelConfig) -> Image.Image:
    """Colour-convert and resize one face crop to the network's input size.

    Args:
        crop: a face crop, any PIL mode and size (square expected; other aspect ratios are
            squashed to square).
        config: the model's config (``color_mode``, ``native_size``, ``input_size``).

    Returns:
        ``PIL.Image`` of size ``(input_size, input_size)``, mode ``"L"`` or ``"RGB"``.
    """
    mode = "L" if config.color_mode == "grayscale" else "RGB"
    if crop.mode != mode:
        crop = crop.convert(mode)
    if config.native_size is not None and crop.size != (config.native_size, config.native_size):
        crop = crop.resize((config.native_size, config.native_size), Image.Resampling.BILINEAR)
    size = (config.input_size, config.input_size)
    if crop.size != size:
        crop = crop.resize(size, Image.Resampling.BILINEAR)
    return crop


def normalization(config: ModelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std as float32 tensors of shape ``(3, 1, 1)`` for ``(x - mean) / std``."""
    mean = torch.tensor(config.mean, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(config.std, dtype=torch.float32).view(3, 1, 1)
    return mean, std


def crop_to_tensor(crop: Image.Image, config: ModelConfig) -> torch.Tensor:
    """One face crop -> normalised network input.

    Args:
        crop: a face crop (PIL image, any mode and size).
        config: the model's config.

    Returns:
        float32 tensor ``(3, input_size, input_size)``, roughly zero-mean unit-variance.
    """
    prepared = prepare_crop(crop, config)
    arr = np.asarray(prepared, dtype=np.float32) / 255.0
    tensor = torch.from_numpy(arr)
    tensor = tensor.unsqueeze(0).expand(3, -1, -1) if tensor.ndim == 2 else tensor.permute(2, 0, 1)
    mean, std = normalization(config)
    return (tensor - mean) / std


def crops_to_batch(crops: Sequence[Image.Image], config: ModelConfig) -> torch.Tensor:
    """Several face crops -> one batch for a single forward pass.

    Args:
        crops: N face crops (PIL images, any mode and size).
        config: the model's config.

    Returns:
        float32 tensor ``(N, 3, input_size, input_size)``; ``(0, 3, S, S)`` when ``crops`` is empty.
    """
    if not crops:
        return torch.empty((0, 3, config.input_size, config.input_size), dtype=torch.float32)
    return torch.stack([crop_to_tensor(c, config) for c in crops])

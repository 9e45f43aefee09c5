"""Face crop -> network input tensor. The one preprocessing path, shared by training and inference.

Steps, all driven by :class:`~fer_core.config.ModelConfig`:
crop -> grayscale or RGB (``color_mode``) -> resize to ``native_size`` (the training data's
resolution, 48 for FER+) -> resize to ``input_size`` -> scale to [0, 1] -> normalise with
``mean``/``std``. Grayscale is replicated to the 3 channels the torchvision backbones expect.
Training applies its augmentation on top of this module (before :func:`crop_to_tensor` for
geometry, after it for random erasing); it never reimplements these steps.

:func:`crops_to_array` is the implementation, in NumPy: importing this module does not import torch
(the ONNX Runtime classifier uses it); :func:`crop_to_tensor` and :func:`crops_to_batch` wrap it for
torch and import torch when called.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from .config import ModelConfig

if TYPE_CHECKING:
    import torch


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


def crops_to_array(crops: Sequence[Image.Image], config: ModelConfig) -> np.ndarray:
    """Face crops -> one normalised network input batch: THE preprocessing implementation (NumPy,
    torch-free); the torch functions below wrap it.

    Each crop goes through :func:`prepare_crop`, is scaled to [0, 1] (``/ 255``), replicated to 3
    channels when gray, and normalised per channel, ``(x - mean) / std`` with ``config.mean`` and
    ``config.std``, all in float32.

    Args:
        crops: N face crops (PIL images, any mode and size).
        config: the model's config (``color_mode``, ``native_size``, ``input_size``, ``mean``, ``std``).

    Returns:
        float32 C-contiguous array ``(N, 3, input_size, input_size)``, roughly zero-mean
        unit-variance; ``(0, 3, S, S)`` when ``crops`` is empty.
    """
    size = config.input_size
    out = np.empty((len(crops), 3, size, size), dtype=np.float32)
    for i, crop in enumerate(crops):
        arr = np.asarray(prepare_crop(crop, config), dtype=np.float32) / np.float32(255.0)
        out[i] = arr if arr.ndim == 2 else arr.transpose(2, 0, 1)  # gray: broadcast to the 3 channels
    out -= np.asarray(config.mean, dtype=np.float32).reshape(1, 3, 1, 1)
    out /= np.asarray(config.std, dtype=np.float32).reshape(1, 3, 1, 1)
    return out


def normalization(config: ModelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std as float32 tensors of shape ``(3, 1, 1)`` for ``(x - mean) / std`` (imports torch)."""
    import torch

    mean = torch.tensor(config.mean, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(config.std, dtype=torch.float32).view(3, 1, 1)
    return mean, std


def crop_to_tensor(crop: Image.Image, config: ModelConfig) -> torch.Tensor:
    """One face crop -> normalised network input, as a torch tensor (imports torch): :func:`crops_to_array`.

    Args:
        crop: a face crop (PIL image, any mode and size).
        config: the model's config.

    Returns:
        float32 tensor ``(3, input_size, input_size)``, roughly zero-mean unit-variance.
    """
    import torch

    return torch.from_numpy(crops_to_array([crop], config)[0])


def crops_to_batch(crops: Sequence[Image.Image], config: ModelConfig) -> torch.Tensor:
    """Several face crops -> one batch for a single forward pass, as a torch tensor (imports torch):
    :func:`crops_to_array`.

    Args:
        crops: N face crops (PIL images, any mode and size).
        config: the model's config.

    Returns:
        float32 tensor ``(N, 3, input_size, input_size)``; ``(0, 3, S, S)`` when ``crops`` is empty.
    """
    import torch

    return torch.from_numpy(crops_to_array(crops, config))

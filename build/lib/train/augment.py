"""Training-time augmentation, layered on top of :mod:`fer_core.preprocess` (never replacing it).

Geometry and photometry act on the 48x48 PIL face before :func:`fer_core.preprocess.crop_to_tensor`;
random erasing acts on the normalised tensor after it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from PIL import Image
from torchvision.transforms import v2

from fer_core.config import ModelConfig
from fer_core.errors import InvalidArgumentError
from fer_core.preprocess import crop_to_tensor


@dataclass
class AugmentConfig:
    """Augmentation knobs (each also a ``python -m train`` flag).

    Attributes:
        geometry: ``"crop"`` (random resized crop), ``"affine"`` (rotation/translation/scale) or
            ``"none"``.
        crop_scale: smallest area fraction kept by the random resized crop (0..1).
        rotation: maximum rotation in degrees (affine mode, and a small one in crop mode).
        hflip: probability of a horizontal flip.
        brightness, contrast: colour-jitter strengths (0 = off).
        erasing: probability of random erasing (Zhong et al. 2020, AAAI).
    """

    geometry: str = "crop"
    crop_scale: float = 0.8
    rotation: float = 10.0
    hflip: float = 0.5
    brightness: float = 0.3
    contrast: float = 0.3
    erasing: float = 0.25


def train_transform(model_config: ModelConfig, aug: AugmentConfig) -> Callable[[Image.Image], torch.Tensor]:
    """PIL face -> augmented, preprocessed float32 tensor ``(3, S, S)`` for training.

    Raises:
        InvalidArgumentError: unknown ``aug.geometry``.
    """
    ops: list = []
    size = 48
    if aug.geometry == "crop":
        ops.append(v2.RandomResizedCrop(size, scale=(aug.crop_scale, 1.0), ratio=(0.9, 1.1)))
        if aug.rotation > 0:
            ops.append(v2.RandomRotation(aug.rotation))
    elif aug.geometry == "affine":
        ops.append(v2.RandomAffine(aug.rotation, translate=(0.1, 0.1), scale=(0.9, 1.1)))
    elif aug.geometry != "none":
        raise InvalidArgumentError(f"geometry must be crop, affine or none, got {aug.geometry!r}")
    if aug.hflip > 0:
        ops.append(v2.RandomHorizontalFlip(aug.hflip))
    if aug.brightness > 0 or aug.contrast > 0:
        ops.append(v2.ColorJitter(brightness=aug.brightness, contrast=aug.contrast))
    geometric = v2.Compose(ops)
    erase = v2.RandomErasing(p=aug.erasing, scale=(0.02, 0.15)) if aug.erasing > 0 else None

    def transform(face: Image.Image) -> torch.Tensor:
        tensor = crop_to_tensor(geometric(face), model_config)
        return erase(tensor) if erase is not None else tensor

    return transform


def eval_transform(model_config: ModelConfig) -> Callable[[Image.Image], torch.Tensor]:
    """PIL face -> preprocessed float32 tensor ``(3, S, S)``, no augmentation."""
    return lambda face: crop_to_tensor(face, model_config)

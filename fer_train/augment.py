"""Training-time augmentation, layered on top of :mod:`fer_core.preprocess` (never replacing it).

Geometry and photometry act on the 48x48 PIL face before :func:`fer_core.preprocess.crop_to_tensor`;
random erasing acts on the normalised tensor after it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

from fer_core.config import ModelConfig
from fer_core.errors import InvalidArgumentError
from fer_core.preprocess import crop_to_tensor


@dataclass
class AugmentConfig:
    """Augmentation knobs (each also a ``python -m fer_train`` flag).

    Attributes:
        geometry: ``"crop"`` (random resized crop), ``"affine"`` (rotation/translation/scale) or
            ``"none"``.
        crop_scale: smallest area fraction kept by the random resized crop (0..1).
        rotation: maximum rotation in degrees (affine mode, and a small one in crop mode).
        hflip: probability of a horizontal flip.
        brightness, contrast: colour-jitter strengths (0 = off).
        erasing: probability of random erasing (Zhong et al. 2020, AAAI).
        zoom_out: largest zoom-out, as the extra side a face is shown with (0.3: the face fills
            as little as 1/1.3 of the side); 0 = off. FER2013's crops have no context beyond
            them, so the border is the face's own mirror image (reflect padding), never a flat
            fill. MTCNN's box is often looser than FER2013's crop, and a network trained only
            on zoom-ins reads zoomed-out faces as neutral (``python -m research.pipeline_eval
            --crop-margin 0.2``).
        zoom_out_p: probability of a zoom-out, sampled uniformly in ``[1, 1 + zoom_out]``.
    """

    geometry: str = "crop"
    crop_scale: float = 0.8
    rotation: float = 10.0
    hflip: float = 0.5
    brightness: float = 0.3
    contrast: float = 0.3
    erasing: float = 0.25
    zoom_out: float = 0.0
    zoom_out_p: float = 0.5


class RandomZoomOutReflect:
    """Show a face smaller within the same frame, its border filled by reflection.

    Args:
        max_extra: largest extra side (the padded side is up to ``(1 + max_extra) * side``), > 0.
        p: probability of applying it, 0..1.

    Called on a PIL image of size ``(W, H)``, it returns an image of the same size and mode: the
    input reflect-padded by a random, equal fraction on each side and resized back (bilinear).

    Raises:
        InvalidArgumentError: ``max_extra`` <= 0 or ``p`` outside 0..1.
    """

    def __init__(self, max_extra: float, p: float = 0.5) -> None:
        if max_extra <= 0 or not 0 <= p <= 1:
            raise InvalidArgumentError(f"zoom-out needs max_extra > 0 and p in 0..1, got {max_extra}, {p}")
        self.max_extra, self.p = max_extra, p

    def __call__(self, face: Image.Image) -> Image.Image:
        if torch.rand(()) >= self.p:
            return face
        scale = 1.0 + float(torch.rand(())) * self.max_extra
        arr = np.asarray(face)
        pad_y, pad_x = (round((scale - 1.0) * n / 2) for n in arr.shape[:2])
        pad_y, pad_x = min(pad_y, arr.shape[0] - 1), min(pad_x, arr.shape[1] - 1)  # reflect's limit
        if pad_y == 0 and pad_x == 0:
            return face
        widths = ((pad_y, pad_y), (pad_x, pad_x)) + ((0, 0),) * (arr.ndim - 2)
        padded = Image.fromarray(np.pad(arr, widths, mode="reflect"), mode=face.mode)
        return padded.resize(face.size, Image.Resampling.BILINEAR)


def train_transform(model_config: ModelConfig, aug: AugmentConfig) -> Callable[[Image.Image], torch.Tensor]:
    """PIL face -> augmented, preprocessed float32 tensor ``(3, S, S)`` for training.

    Raises:
        InvalidArgumentError: unknown ``aug.geometry``, a negative ``aug.zoom_out`` or a zoom-out
            probability outside 0..1.
    """
    ops: list = []
    size = 48
    if aug.zoom_out < 0:
        raise InvalidArgumentError(f"zoom-out needs max_extra >= 0 (0 = off), got {aug.zoom_out}")
    if aug.zoom_out > 0:
        ops.append(RandomZoomOutReflect(aug.zoom_out, aug.zoom_out_p))
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

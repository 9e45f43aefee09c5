"""Training augmentation: the reflect-padded zoom-out, and the whole transform on a real FER+ face."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from fer_core.config import ModelConfig
from fer_train.__main__ import build_parser
from fer_train.augment import AugmentConfig, RandomZoomOutReflect, train_transform
from fer_train.data import load_split


def square_face() -> Image.Image:
    """48x48 dark frame with a bright 24x24 square in the middle."""
    arr = np.zeros((48, 48), np.uint8)
    arr[12:36, 12:36] = 255
    return Image.fromarray(arr)


def test_zoom_out_shrinks_the_face_and_mirrors_the_border():
    torch.manual_seed(0)
    face = square_face()
    out = RandomZoomOutReflect(0.5, p=1.0)(face)
    assert out.size == face.size and out.mode == face.mode
    arr = np.asarray(out)
    bright = (arr > 127).sum()
    assert 24 * 24 / 1.5**2 * 0.8 < bright < 24 * 24 * 0.95  # the square got smaller, at most by 1.5x per side
    # the reflected border repeats the frame's dark edge, never a flat fill of another value
    assert arr[0].max() < 128 and arr[:, 0].max() < 128
    rows, cols = np.nonzero(arr > 127)
    assert abs(rows.mean() - 23.5) < 1 and abs(cols.mean() - 23.5) < 1  # still centred


def test_zoom_out_probability_and_limits():
    face = square_face()
    never = RandomZoomOutReflect(0.3, p=0.0)
    assert all(np.array_equal(np.asarray(never(face)), np.asarray(face)) for _ in range(10))
    torch.manual_seed(1)
    half = RandomZoomOutReflect(0.3, p=0.5)
    changed = sum(not np.array_equal(np.asarray(half(face)), np.asarray(face)) for _ in range(200))
    assert 60 < changed < 140
    big = RandomZoomOutReflect(10.0, p=1.0)(face)  # padding capped at what reflection allows
    assert big.size == (48, 48)
    rgb = RandomZoomOutReflect(0.3, p=1.0)(face.convert("RGB"))
    assert rgb.mode == "RGB" and rgb.size == (48, 48)
    for bad in ((0.0, 0.5), (-0.1, 0.5), (0.3, 1.5)):
        with pytest.raises(ValueError, match="zoom-out needs"):
            RandomZoomOutReflect(*bad)


def test_train_transform_with_zoom_out_on_a_real_face(ferplus):
    face = Image.fromarray(load_split(ferplus, "valid", limit=1).images[0])
    config = ModelConfig(input_size=64)
    tensor = train_transform(config, AugmentConfig(zoom_out=0.3, zoom_out_p=1.0))(face)
    assert tensor.shape == (3, 64, 64) and tensor.dtype == torch.float32
    args = vars(build_parser().parse_args(["--data", "d", "--out", "o", "--aug-zoom-out", "0.3"]))
    assert args["aug_zoom_out"] == 0.3 and args["aug_zoom_out_p"] == 0.5
    with pytest.raises(ValueError, match="zoom-out needs"):
        train_transform(config, AugmentConfig(zoom_out=0.3, zoom_out_p=2.0))
    with pytest.raises(ValueError, match="zoom-out needs max_extra >= 0"):
        train_transform(config, AugmentConfig(zoom_out=-0.1))

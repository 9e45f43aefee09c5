"""Shared fixtures: real photos, FER+ crops from ../shared, a small random model, a recognizer."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fer_core.config import ModelConfig
from fer_core.model import EmotionNet, load_model
from fer_core.recognizer import DEFAULT_MODEL_DIR, EmotionRecognizer

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FER_SHARED", ROOT.parent / "shared"))
FERPLUS = SHARED / "data" / "ferplus"

#: FER+ Valid crops MTCNN finds when upscaled to 160x160 on a grey canvas (checked one by one;
#: see compose_canvas). Majority labels, in reading order: happiness, neutral, happiness, neutral,
#: happiness, neutral.
CANVAS_CROPS = ["fer0028642.png", "fer0028652.png", "fer0028643.png",
                "fer0028671.png", "fer0028657.png", "fer0028672.png"]
TILE, GAP = 160, 40
#: Options of the tiny real training runs (a few hundred FER+ faces, 64 px, 2 threads).
TINY_RUN = ["--limit-train", "192", "--limit-valid", "128", "--img-size", "64", "--batch-size", "32",
            "--threads", "2"]


def require_shared(path: Path) -> Path:
    """``path`` if it exists; otherwise skip, or fail under CI (CI=true)."""
    if not path.exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"shared data missing in CI: {path}")
        pytest.skip(f"shared data not found: {path}")
    return path


@pytest.fixture(scope="session")
def ferplus() -> Path:
    """The FERPlus layout folder (../shared/data/ferplus)."""
    return require_shared(FERPLUS / "FER2013Valid" / "label.csv").parents[1]


@pytest.fixture(scope="module")
def torch_home():
    """``TORCH_HOME`` pointed at ../shared/weights/torch (torchvision's genuine MobileNetV2 ImageNet
    file) for the tests of one module, restored afterwards."""
    home = SHARED / "weights" / "torch"
    require_shared(home / "hub" / "checkpoints" / "mobilenet_v2-b0353104.pth")
    old = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("TORCH_HOME")
    else:
        os.environ["TORCH_HOME"] = old


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """scikit-image's astronaut photo (public domain), uint8 (512, 512, 3): one smiling face
    near box (180, 63, 268, 173)."""
    from skimage import data

    return data.astronaut()


def compose_canvas(folder: Path, names: list[str], columns: int = 3) -> tuple[Image.Image, list[tuple]]:
    """Paste FER+ crops, upscaled to TILE px, on a grey canvas in a grid.

    Returns:
        The RGB canvas and each tile's ``(x1, y1, x2, y2)`` in canvas pixels, in paste order.
    """
    rows = (len(names) + columns - 1) // columns
    canvas = Image.new("RGB", (columns * (TILE + GAP) + GAP, rows * (TILE + GAP) + GAP), (128, 128, 128))
    tiles = []
    for i, name in enumerate(names):
        face = Image.open(folder / name).convert("RGB").resize((TILE, TILE), Image.Resampling.BICUBIC)
        x, y = GAP + (i % columns) * (TILE + GAP), GAP + (i // columns) * (TILE + GAP)
        canvas.paste(face, (x, y))
        tiles.append((x, y, x + TILE, y + TILE))
    return canvas, tiles


@pytest.fixture(scope="session")
def canvas(ferplus: Path) -> tuple[Image.Image, list[tuple]]:
    """A 640x440 canvas with six FER+ faces in a 3x2 grid, and the tiles' boxes."""
    return compose_canvas(ferplus / "FER2013Valid", CANVAS_CROPS)


@pytest.fixture(scope="session")
def ferplus_votes(ferplus: Path) -> dict[str, list[float]]:
    """Image name -> its 10 FER+ votes, for FER+ Valid."""
    with (ferplus / "FER2013Valid" / "label.csv").open() as fh:
        return {row[0]: [float(v) for v in row[2:]] for row in csv.reader(fh)}


@pytest.fixture(scope="session")
def random_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised MobileNetV2 model folder (config.json + model.safetensors)."""
    import torch

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("random_model")
    model = EmotionNet(ModelConfig(input_size=64))
    # Fill BatchNorm running statistics from a few random batches, so that the random network's
    # output depends on its input instead of saturating to a constant.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(4):
            model(torch.rand(16, 3, 64, 64) * 4 - 2)
    model.eval().save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def model_dir(random_model_dir: Path) -> Path:
    """The bundled default model if present, else the random one."""
    return DEFAULT_MODEL_DIR if (DEFAULT_MODEL_DIR / "model.safetensors").is_file() else random_model_dir


@pytest.fixture(scope="session")
def recognizer(model_dir: Path) -> EmotionRecognizer:
    """A recognizer on :func:`model_dir`, shared by the tests (loaded once)."""
    return EmotionRecognizer(load_model(model_dir), source=str(model_dir))

"""FER+ data: read the FERPlus folder layout or the raw Kaggle CSVs into memory, and serve samples.

Two input forms here (more through :data:`READERS`), one in-memory result (:class:`VoteSplit`:
48x48 gray faces + 10 votes each):

* FERPlus layout (microsoft/FERPlus ``generate_training_data.py``): ``FER2013Train/``,
  ``FER2013Valid/``, ``FER2013Test/``, each with ``label.csv`` (no header: ``image name,
  "(x, y, w, h)", 10 votes``) and the PNGs.
* Raw form: ``fer2013.csv`` (``emotion,pixels,Usage``; 48*48 space-separated gray values) with
  ``fer2013new.csv`` (``Usage,Image name,neutral,...,NF``), same row order. Usage ``Training`` /
  ``PublicTest`` / ``PrivateTest`` = train / valid / test.
* Other forms through :data:`READERS` (``research.pack`` adds its packed file).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from fer_core.config import ModelConfig
from fer_core.errors import FERError, InvalidArgumentError
from fer_core.labels import LABELS, VOTE_COLUMNS

from .labels import training_target, vote_distribution


class DatasetError(FERError, ValueError):
    """The training data is missing or malformed (a split folder, ``label.csv``, ``fer2013.csv``);
    the message names the file and, for a bad row, its line."""

SPLIT_FOLDERS = {"train": "FER2013Train", "valid": "FER2013Valid", "test": "FER2013Test"}
RAW_USAGE = {"train": "Training", "valid": "PublicTest", "test": "PrivateTest"}
FACE_SIZE = 48
#: Readers of other data forms, tried first by :func:`load_split`: ``reader(path, split, limit)``
#: returns the split, or ``None`` when ``path`` is not of its form.
READERS: list[Callable[[Path, str, int | None], VoteSplit | None]] = []


@dataclass
class VoteSplit:
    """One split in memory.

    Attributes:
        images: uint8 ``(N, 48, 48)`` gray faces.
        votes: float32 ``(N, 10)`` vote counts in :data:`fer_core.labels.VOTE_COLUMNS` order.
        names: N image names (file names, or ``row<i>`` for the raw CSV form).
    """

    images: np.ndarray
    votes: np.ndarray
    names: list[str]

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, indices: np.ndarray | list[int]) -> VoteSplit:
        """The images at ``indices``, as a new split."""
        idx = np.asarray(indices, dtype=np.int64)
        return VoteSplit(self.images[idx], self.votes[idx], [self.names[i] for i in idx])


def _parse_box(text: str) -> tuple[int, int, int, int]:
    x, y, w, h = (int(v) for v in text.strip().strip("()").split(","))
    return x, y, w, h


def read_ferplus_folder(root: str | Path, split: str, limit: int | None = None) -> VoteSplit:
    """Read one split of the FERPlus folder layout.

    Args:
        root: folder holding ``FER2013Train/`` etc.
        split: ``train``, ``valid`` or ``test``.
        limit: read only the first ``limit`` rows (for quick runs and tests).

    Returns:
        The split; each face is cropped to its ``label.csv`` rectangle and resized to 48x48 if the
        rectangle is not the whole image.

    Raises:
        DatasetError: the split's folder or ``label.csv`` is missing, or a row is malformed.
    """
    folder = Path(root) / SPLIT_FOLDERS[split]
    label_file = folder / "label.csv"
    if not label_file.is_file():
        raise DatasetError(f"{label_file} not found (expected the FERPlus layout under {root})")
    images, votes, names = [], [], []
    with label_file.open(newline="") as fh:
        for lineno, row in enumerate(csv.reader(fh), start=1):
            if not row:
                continue
            if len(row) != 2 + len(VOTE_COLUMNS):
                raise DatasetError(f"{label_file}:{lineno}: expected 12 columns, got {len(row)}")
            name = row[0]
            x, y, w, h = _parse_box(row[1])
            with Image.open(folder / name) as img:
                face = img.convert("L")
                if (x, y, w, h) != (0, 0, face.width, face.height):
                    face = face.crop((x, y, x + w, y + h))
                if face.size != (FACE_SIZE, FACE_SIZE):
                    face = face.resize((FACE_SIZE, FACE_SIZE), Image.Resampling.BILINEAR)
                images.append(np.asarray(face, dtype=np.uint8))
            votes.append([float(v) for v in row[2:]])
            names.append(name)
            if limit is not None and len(names) >= limit:
                break
    return VoteSplit(np.stack(images), np.asarray(votes, dtype=np.float32), names)


def read_raw_csv(fer2013_csv: str | Path, ferplus_csv: str | Path, split: str) -> VoteSplit:
    """Read one split from the raw ``fer2013.csv`` + ``fer2013new.csv`` pair.

    Rows whose FER+ image name is empty (FER+ left them out) are skipped.

    Raises:
        DatasetError: the two files have different row counts or usages, or a row is malformed.
    """
    usage = RAW_USAGE[split]
    with open(fer2013_csv, newline="") as f1, open(ferplus_csv, newline="") as f2:
        rows1, rows2 = list(csv.DictReader(f1)), list(csv.DictReader(f2))
    if len(rows1) != len(rows2):
        raise DatasetError(f"{fer2013_csv} has {len(rows1)} rows but {ferplus_csv} has {len(rows2)}")
    images, votes, names = [], [], []
    for i, (r1, r2) in enumerate(zip(rows1, rows2)):
        if r1["Usage"] != r2["Usage"]:
            raise DatasetError(f"row {i + 2}: usage differs ({r1['Usage']!r} vs {r2['Usage']!r})")
        if r1["Usage"] != usage or not r2.get("Image name", "").strip():
            continue
        pixels = np.array(r1["pixels"].split(), dtype=np.uint8)
        if pixels.size != FACE_SIZE * FACE_SIZE:
            raise DatasetError(f"row {i + 2}: expected {FACE_SIZE * FACE_SIZE} pixels, got {pixels.size}")
        images.append(pixels.reshape(FACE_SIZE, FACE_SIZE))
        votes.append([float(r2[c]) for c in VOTE_COLUMNS])
        names.append(r2["Image name"].strip())
    if not names:
        return VoteSplit(np.zeros((0, FACE_SIZE, FACE_SIZE), np.uint8), np.zeros((0, 10), np.float32), [])
    return VoteSplit(np.stack(images), np.asarray(votes, dtype=np.float32), names)


def load_split(data: str | Path, split: str, limit: int | None = None) -> VoteSplit:
    """Read a split from ``data``: a form a :data:`READERS` step knows, a FERPlus layout folder,
    or a folder holding ``fer2013.csv`` and ``fer2013new.csv``.

    Raises:
        DatasetError: none of the forms is found at ``data``, or a file is malformed.
    """
    root = Path(data)
    for reader in READERS:
        if (result := reader(root, split, limit)) is not None:
            return result
    if (root / "fer2013.csv").is_file() and (root / "fer2013new.csv").is_file():
        result = read_raw_csv(root / "fer2013.csv", root / "fer2013new.csv", split)
        return result if limit is None else result.subset(range(min(limit, len(result))))
    return read_ferplus_folder(root, split, limit=limit)



#: Steps that pick the faces a model is measured on (:func:`measured_faces`): ``hook(faces, config,
#: split)`` returns ``(faces, name)`` for a model it knows, else ``None`` (:mod:`research.final_fit`:
#: a final fit's held-out fold of Valid).
MEASURE_HOOKS: list[Callable[[VoteSplit, ModelConfig, str], tuple[VoteSplit, str] | None]] = []


def measured_faces(data: str | Path, split: str, config: ModelConfig, limit: int | None = None
                   ) -> tuple[VoteSplit, str]:
    """The faces a model of ``config`` is measured on (calibrated, evaluated) and their name: the
    whole split (the first ``limit`` faces) named ``split``, unless a :data:`MEASURE_HOOKS` step picks others.

    Raises:
        DatasetError: the data is missing or malformed.
        InvalidArgumentError: Valid for a final fit (``recipe.final_fit`` > 0, trained on most of
            Valid) that no hook measured on its held-out fold: the figures would count trained-on faces.
    """
    faces = load_split(data, split, limit=limit)
    for hook in MEASURE_HOOKS:
        if (picked := hook(faces, config, split)) is not None:
            return picked
    if split == "valid" and float(config.recipe.get("final_fit") or 0.0) > 0:
        raise InvalidArgumentError("this model is a final fit, trained on most of Valid: measure it on its held-out "
                                   "fold with python -m research.train calibrate|evaluate|export")
    return faces, split


class LabelledFaces(Dataset):
    """Faces with FER+ targets in one label mode, for a ``DataLoader``.

    Images the label mode drops (no clear outcome, unknown, not a face) are left out.

    Args:
        split: the faces and votes.
        mode: label mode (:data:`fer_train.labels.LABEL_MODES`); for evaluation use ``majority``.
        transform: PIL ``L`` 48x48 image -> float32 tensor ``(3, S, S)``
            (augmentation + :func:`fer_core.preprocess.crop_to_tensor`).
        seed: seed of the generator used by the ``probability`` mode's sampling.

    Items: ``(image (3, S, S) float32, target (8,) float32, majority label int64)``; the majority
    label is the argmax of the mode's distribution; :attr:`mix` mixes other probabilities into the target.
    """

    def __init__(
        self,
        split: VoteSplit,
        mode: str,
        transform: Callable[[Image.Image], torch.Tensor],
        seed: int = 0,
    ) -> None:
        keep, dists = [], []
        for i, votes in enumerate(split.votes):
            dist = vote_distribution(votes, mode)
            if dist is not None:
                keep.append(i)
                dists.append(dist)
        self.images = split.images[keep]
        self.dists = np.stack(dists) if dists else np.zeros((0, len(LABELS)), np.float32)
        self.mode = mode
        self.transform = transform
        self.rng = np.random.default_rng(seed)
        #: ``(probabilities (N, 8), w)`` or ``None``: each target becomes ``(1 - w) * target + w *
        #: probabilities[i]`` (soft targets from elsewhere, e.g. knowledge distillation)
        self.mix: tuple[np.ndarray, float] | None = None

    def __len__(self) -> int:
        return len(self.images)

    def class_counts(self) -> np.ndarray:
        """int64 ``(8,)`` number of images whose distribution's argmax is each class."""
        return np.bincount(self.dists.argmax(1), minlength=len(LABELS))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        image = Image.fromarray(self.images[index], mode="L")
        dist = self.dists[index]
        target = training_target(dist, self.mode, self.rng)
        if self.mix is not None:
            target = (1.0 - self.mix[1]) * target + self.mix[1] * self.mix[0][index]
        return self.transform(image), torch.from_numpy(target), int(dist.argmax())

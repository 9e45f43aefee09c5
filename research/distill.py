"""Knowledge distillation targets: what trained teacher models say about the training faces.

Offline distillation (Hinton, Vinyals & Dean 2015, "Distilling the knowledge in a neural network",
arXiv:1503.02531) from an ensemble: every teacher classifies every kept training face once, before
training, through the inference path (:func:`fer_core.preprocess.crops_to_batch` with its own
input size and colour mode, and the BatchNorm-folded network), averaged with the mirrored face;
its calibrated probabilities (``softmax(logits / T)``, T from its ``config.json``) are averaged
over the teachers. The training loop then mixes them into each face's target: ``(1 - w) *
label-mode target + w * teacher probabilities`` (:attr:`fer_train.data.LabelledFaces.mix`).

The probabilities are cached in the run folder (``teacher_probs.npz``) so ``--resume`` does not
recompute them.

It plugs into fer_train through its extension points, registered on import (``python -m
research.train --teacher DIR --distill-weight W``): :func:`distill_targets` in
:data:`fer_train.train.DATA_HOOKS` (the options arrive in ``TrainConfig.extra`` and are recorded in
the recipe as ``teachers`` / ``distill_weight``), and :func:`teacher_recipe` in
:data:`fer_train.export.EXPORT_HOOKS` (teacher summaries and training time in the model card).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from fer_core.errors import InvalidArgumentError
from fer_core.labels import LABELS
from fer_core.model import fuse_batchnorm, load_model
from fer_core.preprocess import crops_to_batch
from fer_train import export, train
from fer_train.data import LabelledFaces
from fer_train.engine import TrainConfig
from fer_train.export import train_minutes

CACHE_NAME = "teacher_probs.npz"


@torch.inference_mode()
def teacher_probabilities(teachers: Sequence[str | Path], images: np.ndarray, batch_size: int = 256
                          ) -> np.ndarray:
    """Mean calibrated, flip-averaged probabilities of ``teachers`` on ``images``.

    Args:
        teachers: model folders (``config.json`` + ``model.safetensors``), e.g. ``runs/X/best``.
        images: uint8 ``(N, 48, 48)`` gray faces (:attr:`fer_train.data.LabelledFaces.images`).
        batch_size: faces per forward pass.

    Returns:
        float32 ``(N, 8)``, rows summing to 1, classes in :data:`fer_core.labels.LABELS` order.

    Raises:
        InvalidArgumentError: no teachers, or a teacher's labels are not the FER+ labels in that order.
        fer_core.errors.ModelLoadError: a teacher folder is missing or invalid.
    """
    if not teachers:
        raise InvalidArgumentError("knowledge distillation needs at least one teacher model folder")
    total = np.zeros((len(images), len(LABELS)), np.float64)
    for folder in teachers:
        model = load_model(folder)  # in eval mode
        cfg = model.config
        if list(cfg.labels) != list(LABELS):
            raise InvalidArgumentError(f"teacher {folder} predicts {cfg.labels}, not the FER+ labels {list(LABELS)}")
        net = fuse_batchnorm(model).to(memory_format=torch.channels_last)  # what EmotionRecognizer runs
        for start in range(0, len(images), batch_size):
            faces = [Image.fromarray(face, mode="L") for face in images[start:start + batch_size]]
            batch = crops_to_batch(faces, cfg).contiguous(memory_format=torch.channels_last)
            logits = (net(batch) + net(torch.flip(batch, dims=[3]))) / 2
            total[start:start + len(batch)] += model.probabilities(logits, balanced=False).numpy()
    return (total / len(teachers)).astype(np.float32)


def cached_teacher_probabilities(run: str | Path, teachers: Sequence[str | Path], images: np.ndarray
                                 ) -> np.ndarray:
    """:func:`teacher_probabilities`, read from ``run/teacher_probs.npz`` when that file was made
    for the same teachers and the same number of faces, else computed and written there with the
    wall-clock seconds the computation took (see :func:`teacher_pass_seconds`).

    Returns / raises: as :func:`teacher_probabilities`.
    """
    path = Path(run) / CACHE_NAME
    key = json.dumps([str(Path(t).resolve()) for t in teachers])
    if path.is_file():
        with np.load(path) as cached:
            if str(cached["teachers"]) == key and cached["probs"].shape == (len(images), len(LABELS)):
                return cached["probs"]
    start = time.time()
    probs = teacher_probabilities(teachers, images)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, probs=probs, teachers=np.array(key), seconds=np.array(time.time() - start))
    tmp.replace(path)
    return probs


def teacher_pass_seconds(run: str | Path) -> float | None:
    """Wall-clock seconds it took to compute ``run/teacher_probs.npz``; ``None`` when the run has no
    such file or the file does not record it (files written before it was recorded)."""
    path = Path(run) / CACHE_NAME
    if not path.is_file():
        return None
    with np.load(path) as cached:
        return float(cached["seconds"]) if "seconds" in cached.files else None


def set_teacher(faces: LabelledFaces, probs: np.ndarray, weight: float) -> None:
    """Mix teacher probabilities into every target of ``faces``: ``(1 - weight) * target + weight * probs[i]``.

    Args:
        faces: the training faces.
        probs: float32 ``(len(faces), 8)`` rows summing to 1, in the dataset's order
            (e.g. :func:`teacher_probabilities` of ``faces.images``).
        weight: share of the teacher in the target, in ``[0, 1]``.

    Raises:
        InvalidArgumentError: wrong shape or weight out of range.
    """
    if probs.shape != faces.dists.shape:
        raise InvalidArgumentError(f"teacher probabilities have shape {probs.shape}, expected {faces.dists.shape}")
    if not 0.0 <= weight <= 1.0:
        raise InvalidArgumentError(f"distill_weight must be in [0, 1], got {weight}")
    faces.mix = (probs.astype(np.float32), float(weight))


def distill_targets(faces: LabelledFaces, cfg: TrainConfig) -> str | None:
    """The step before training (:data:`fer_train.train.DATA_HOOKS`): with teachers in
    ``cfg.extra["teachers"]``, mix their cached probabilities into the targets with weight
    ``cfg.extra["distill_weight"]``; nothing (``None``) without teachers.

    Raises:
        InvalidArgumentError: the label mode is ``multi_target`` or the weight is out of range.
        fer_core.errors.ModelLoadError: a teacher folder is missing or invalid.
    """
    teachers, weight = cfg.extra.get("teachers") or [], cfg.extra.get("distill_weight", 0.5)
    if not teachers:
        return None
    if cfg.label_mode == "multi_target":
        raise InvalidArgumentError("knowledge distillation (--teacher) needs a probability-target label mode, "
                                   "not multi_target")
    if not 0.0 <= weight <= 1.0:
        raise InvalidArgumentError(f"distill_weight must be in [0, 1], got {weight}")
    start = time.time()
    set_teacher(faces, cached_teacher_probabilities(cfg.out, teachers, faces.images), weight)
    return (f"distillation: {len(teachers)} teacher(s), weight {weight}; "
            f"teacher probabilities ready in {time.time() - start:.0f}s")


def teacher_summary(folder: str | Path) -> tuple[str, float | None, Path | None]:
    """One-line description of a distillation teacher (its folder, backbone, input size, epochs and
    best Valid accuracy when its run's ``metrics.json`` is found beside it), its run's training
    minutes, and that run folder.

    Raises:
        InvalidArgumentError: the teacher has no ``config.json``.
    """
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise InvalidArgumentError(f"{folder}/config.json not found: is the teacher {folder} a model folder?")
    config = json.loads((folder / "config.json").read_text())
    recipe = config.get("recipe", {})
    text = f"`{folder}` ({config['backbone']}, {config['input_size']} px, {recipe.get('epochs', '?')} epochs"
    run = folder.parent if (folder.parent / "metrics.json").is_file() else None
    minutes = None
    if run is not None:
        history = json.loads((run / "metrics.json").read_text())
        text += f", Valid accuracy {max(row['valid_acc'] for row in history):.4f}"
        minutes = train_minutes(run)
    return text + ")", minutes, run


def teacher_recipe(run: Path, recipe: dict[str, Any], minutes_of: dict[Path, float | None]) -> None:
    """The export step (:data:`fer_train.export.EXPORT_HOOKS`): for a distilled run, write each
    teacher's summary into the recipe (``teacher_summaries``, shown in the model card) and add
    the training minutes of the teachers' runs (found beside their folders, each run once) and
    of the teacher pass (when ``teacher_probs.npz`` records it) to the model's training time.

    Raises:
        InvalidArgumentError: a teacher folder has no ``config.json``.
    """
    summaries = []
    for teacher in recipe.get("teachers") or []:
        text, minutes, teacher_run = teacher_summary(teacher)
        summaries.append(text)
        if teacher_run is not None:
            minutes_of.setdefault(teacher_run.resolve(), minutes)
    if summaries:
        recipe["teacher_summaries"] = summaries
        seconds = teacher_pass_seconds(run)
        if seconds is not None:  # computing the teachers' probabilities is part of the training time
            minutes_of[(run / CACHE_NAME).resolve()] = seconds / 60


if distill_targets not in train.DATA_HOOKS:
    train.DATA_HOOKS.append(distill_targets)
if teacher_recipe not in export.EXPORT_HOOKS:
    export.EXPORT_HOOKS.append(teacher_recipe)

"""Knowledge distillation targets: what trained teacher models say about the training faces.

Offline distillation (Hinton, Vinyals & Dean 2015, "Distilling the knowledge in a neural network",
arXiv:1503.02531) from an ensemble: every teacher classifies every kept training face once, before
training, through the inference path (:func:`fer_core.preprocess.crops_to_batch` with its own
input size and colour mode, and the BatchNorm-folded network), averaged with the mirrored face;
its calibrated probabilities (``softmax(logits / T)``, T from its ``config.json``) are averaged
over the teachers. The training loop then mixes them into each face's target: ``(1 - w) *
label-mode target + w * teacher probabilities``.

The probabilities are cached in the run folder (``teacher_probs.npz``) so ``--resume`` does not
recompute them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fer_core.errors import InvalidArgumentError
from fer_core.labels import LABELS
from fer_core.model import fuse_batchnorm, load_model
from fer_core.preprocess import crops_to_batch

CACHE_NAME = "teacher_probs.npz"


@torch.inference_mode()
def teacher_probabilities(teachers: Sequence[str | Path], images: np.ndarray, batch_size: int = 256
                          ) -> np.ndarray:
    """Mean calibrated, flip-averaged probabilities of ``teachers`` on ``images``.

    Args:
        teachers: model folders (``config.json`` + ``model.safetensors``), e.g. ``runs/X/best``.
        images: uint8 ``(N, 48, 48)`` gray faces (:attr:`fer_train.data.VoteSplit.images`).
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

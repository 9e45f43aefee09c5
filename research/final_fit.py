"""A final fit: the practice of training once more, with the recipe and epoch count fixed on
Valid-selected runs, on Train plus most of Valid (``python -m research.train --final-fit 0.2``).

The run trains on Train plus Valid except a held-out fold of that share (:func:`holdout_mask`:
stratified by each face's most-voted column, fold seed :data:`HOLDOUT_SEED`, so every seed of a
recipe holds out the same faces) and validates the fold each epoch for the record. Its model is
the schedule's last epoch (``last/``; ``best/`` is selected on the fold and means little).
``python -m research.train calibrate|evaluate`` measure such a model on its fold alone (the
fraction is in its recipe, ``final_fit``); ``python -m research.train export`` exports ``last/``
of a final fit, measured on the fold, with the final fit's data in the card. E.g.::

    python -m research.train --data ../shared/data/ferplus --out runs/final --final-fit 0.2 --epochs 28
    python -m research.train export --run runs/final --out exported/final

It plugs into fer_train through its extension points, registered on import:
:data:`fer_train.train.SPLIT_HOOKS` (the faces trained on and validated),
:data:`fer_train.data.MEASURE_HOOKS` (the faces calibrate and evaluate measure) and
:data:`fer_train.export.EXPORT_HOOKS` (the recipe's data line). Runs made before the move, by
``python -m train --final-fit`` (fer_train's old name), hold their model in ``final/``: export it with
``--run runs/NAME/final --data DIR``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fer_core.config import ModelConfig
from fer_core.errors import InvalidArgumentError
from fer_train import data as fer_data
from fer_train import export, train
from fer_train.data import VoteSplit, load_split
from fer_train.engine import TrainConfig

#: Seed of the held-out Valid fold of a final fit: fixed, so every seed of a recipe (and
#: ``python -m research.train evaluate``) holds out the same faces.
HOLDOUT_SEED = 0


def holdout_mask(votes: np.ndarray, fraction: float, seed: int = HOLDOUT_SEED) -> np.ndarray:
    """Choose a held-out fold of a split, stratified by each face's most-voted column.

    For a final fit (train on Train plus most of Valid, epoch count fixed in advance), the fold
    is kept out of training to fit the temperature and to check the run. Within each group of
    faces sharing an ``argmax`` of the votes (the 8 emotions, unknown, not-a-face), a seeded
    permutation picks ``round(fraction * group size)`` faces, so the fold keeps the split's
    class mix, and the same votes, fraction and seed give the same fold.

    Args:
        votes: float ``(N, 10)`` vote counts (:class:`fer_train.data.VoteSplit.votes`).
        fraction: share of faces held out, in (0, 1).
        seed: permutation seed (default :data:`HOLDOUT_SEED`).

    Returns:
        bool ``(N,)``, true for the held-out faces.

    Raises:
        InvalidArgumentError: ``fraction`` is not in (0, 1).
    """
    if not 0.0 < fraction < 1.0:
        raise InvalidArgumentError(f"the held-out fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    top = np.asarray(votes).argmax(axis=1)
    mask = np.zeros(len(top), dtype=bool)
    for group in np.unique(top):
        members = np.flatnonzero(top == group)
        mask[rng.permutation(members)[:int(round(fraction * len(members)))]] = True
    return mask


def concat(first: VoteSplit, second: VoteSplit) -> VoteSplit:
    """``first``'s faces followed by ``second``'s, as a new split."""
    return VoteSplit(np.concatenate([first.images, second.images]), np.concatenate([first.votes, second.votes]),
                     first.names + second.names)


def final_fit_fraction(config: ModelConfig) -> float:
    """The share of Valid a model's run held out (``recipe.final_fit`` in its ``config.json``),
    0.0 for a model trained on Train alone."""
    return float((config.recipe or {}).get("final_fit") or 0.0)


def evaluation_faces(data: str | Path, split: str, final_fit: float = 0.0, limit: int | None = None) -> VoteSplit:
    """The faces a model is measured on: the whole split, or on ``valid`` for a final fit
    (``final_fit`` > 0) only its held-out fold (:func:`holdout_mask`, the rest was trained on).

    Raises:
        DatasetError: the data is missing or malformed.
    """
    faces = load_split(data, split, limit=limit)
    if split == "valid" and final_fit > 0:
        faces = faces.subset(np.flatnonzero(holdout_mask(faces.votes, final_fit)))
    return faces


def faces_name(split: str, final_fit: float = 0.0) -> str:
    """How :func:`evaluation_faces` names the faces it returns: ``"valid"``, ``"test"`` or
    ``"valid held-out fold (F)"``."""
    return f"valid held-out fold ({final_fit:g})" if split == "valid" and final_fit > 0 else split


def fit_splits(train_split: VoteSplit, valid_split: VoteSplit, cfg: TrainConfig) -> tuple[VoteSplit, VoteSplit]:
    """The step on a run's splits (:data:`fer_train.train.SPLIT_HOOKS`): with ``--final-fit F`` > 0
    (``cfg.extra["final_fit"]``), Train plus Valid except the held-out fold to train on, and the
    fold to validate; the splits as they are otherwise.

    Raises:
        InvalidArgumentError: ``F`` is not in [0, 1).
    """
    fraction = cfg.extra.get("final_fit") or 0.0
    if not 0.0 <= fraction < 1.0:
        raise InvalidArgumentError(f"final_fit (the held-out share of Valid) must be in [0, 1), got {fraction}")
    if fraction == 0:
        return train_split, valid_split
    fold = holdout_mask(valid_split.votes, fraction)
    print(f"final fit: training on Train + {int((~fold).sum())} Valid faces; {int(fold.sum())} Valid faces "
          f"held out (fold seed {HOLDOUT_SEED})")
    return (concat(train_split, valid_split.subset(np.flatnonzero(~fold))),
            valid_split.subset(np.flatnonzero(fold)))


def fold_faces(faces: VoteSplit, config: ModelConfig, split: str) -> tuple[VoteSplit, str] | None:
    """The step that picks the faces a model is measured on (:data:`fer_train.data.MEASURE_HOOKS`):
    for a final fit on ``valid``, its held-out fold and its name; ``None`` for other models."""
    fraction = final_fit_fraction(config)
    if split != "valid" or fraction == 0:
        return None
    return faces.subset(np.flatnonzero(holdout_mask(faces.votes, fraction))), faces_name(split, fraction)


def fit_recipe(run: Path, recipe: dict[str, Any], minutes_of: dict[Path, float | None]) -> None:
    """The export step (:data:`fer_train.export.EXPORT_HOOKS`): a final fit's data line in the recipe."""
    fraction = recipe.get("final_fit") or 0.0
    if fraction > 0:
        recipe["data"] = (f"FER+ (FER2013Train + {1 - fraction:.0%} of FER2013Valid, final fit with the epoch count "
                          f"fixed in advance; {fraction:.0%} of FER2013Valid held out, stratified, fold seed "
                          f"{HOLDOUT_SEED})")


if fit_splits not in train.SPLIT_HOOKS:
    train.SPLIT_HOOKS.append(fit_splits)
if fold_faces not in fer_data.MEASURE_HOOKS:
    fer_data.MEASURE_HOOKS.append(fold_faces)
if fit_recipe not in export.EXPORT_HOOKS:
    export.EXPORT_HOOKS.append(fit_recipe)

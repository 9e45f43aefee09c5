"""``python -m research.paired MODEL_A MODEL_B --data DIR``: two models on the same faces, with an
exact McNemar test of their accuracy difference.

Both models classify the same FER+ faces (majority protocol, no test-time augmentation, BatchNorm
folded as fer_core runs them). Only the faces one model gets right and the other wrong say
anything about which is better; the test asks whether that split could be a fair coin
(two-sided exact binomial test on the discordant faces: McNemar's test in its exact form, as
recommended for comparing two classifiers on one test set by Dietterich 1998, "Approximate
statistical tests for comparing supervised classification learning algorithms", Neural
Computation 10(7)).

On ``valid``, when either model is a final fit (``python -m research.train --final-fit F``, trained on
the rest of Valid), both are measured on that model's held-out fold only, so neither has
trained on the faces; two final fits must have held out the same fraction.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import binomtest

import research.dlib_resnet  # noqa: F401  (registers the dlib_resnet backbone)
import research.final_fit  # noqa: F401  (final fits measured on their held-out fold)
import research.pack  # noqa: F401  (--data reads packed files)
from fer_core.errors import FERError, InvalidArgumentError
from fer_core.model import load_model
from fer_train.engine import majority_logits
from research.final_fit import evaluation_faces, faces_name, final_fit_fraction


@dataclass
class PairedComparison:
    """Two models measured on the same faces.

    Attributes:
        n_images: faces both models classified (majority protocol).
        faces: which faces: ``"valid"``, ``"test"`` or ``"valid held-out fold (F)"``.
        accuracy_a, accuracy_b: each model's accuracy on them, 0..1.
        only_a, only_b: faces only model A (only model B) classified correctly.
        p_value: two-sided exact McNemar p-value, 0..1 (1.0 when no face is discordant).
    """

    n_images: int
    faces: str
    accuracy_a: float
    accuracy_b: float
    only_a: int
    only_b: int
    p_value: float


def mcnemar(right_a: np.ndarray, right_b: np.ndarray) -> tuple[int, int, float]:
    """Exact McNemar test of two classifiers on the same faces (module docstring).

    Args:
        right_a, right_b: bool ``(N,)``, whether each classifier got each face right.

    Returns:
        ``(only_a, only_b, p_value)``: faces only A (only B) got right, and the two-sided exact
        binomial p-value of that split, 0..1 (1.0 when no face is discordant).
    """
    only_a, only_b = int(np.sum(right_a & ~right_b)), int(np.sum(~right_a & right_b))
    p_value = float(binomtest(only_a, only_a + only_b).pvalue) if only_a + only_b else 1.0
    return only_a, only_b, p_value


def paired(model_a: str | Path, model_b: str | Path, data: str | Path, split: str = "valid",
           limit: int | None = None) -> PairedComparison:
    """Classify one set of FER+ faces with both models and compare them (module docstring).

    Args:
        model_a, model_b: model folders (``config.json`` + ``model.safetensors``).
        data: FER+ folder (FERPlus layout or raw CSVs).
        split: ``valid`` or ``test``.
        limit: only the first N faces of the split (tests); for final fits, the fold is chosen
            among these, as in :func:`fer_train.evaluate.evaluate`.

    Raises:
        InvalidArgumentError: both are final fits with different held-out fractions.
        ModelLoadError: a model folder is invalid. DatasetError: the data is missing or malformed.
    """
    models = [load_model(model_a), load_model(model_b)]
    fractions = {f for f in (final_fit_fraction(m.config) for m in models) if f > 0}
    if split == "valid" and len(fractions) > 1:
        raise InvalidArgumentError(f"the two final fits held out different shares of Valid ({sorted(fractions)}), "
                                   "so no Valid face is unseen by both")
    final_fit = fractions.pop() if fractions and split == "valid" else 0.0
    faces = evaluation_faces(data, split, final_fit, limit)
    correct = []
    for model in models:
        logits, labels = majority_logits(model, faces)
        correct.append(logits.argmax(1) == labels)
    a, b = correct
    only_a, only_b, p_value = mcnemar(a, b)
    return PairedComparison(n_images=len(a), faces=faces_name(split, final_fit), accuracy_a=float(a.mean()),
                            accuracy_b=float(b.mean()), only_a=only_a, only_b=only_b, p_value=p_value)


def main(argv: list[str] | None = None) -> int:
    """Print the comparison; exit status 1 with a message on bad models or data."""
    p = argparse.ArgumentParser(prog="python -m research.paired", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_a", help="model folder A")
    p.add_argument("model_b", help="model folder B")
    p.add_argument("--data", required=True, help="FER+ folder")
    p.add_argument("--split", default="valid", choices=("valid", "test"))
    p.add_argument("--limit", type=int, default=None)
    args = p.parse_args(argv)
    try:
        r = paired(args.model_a, args.model_b, args.data, args.split, args.limit)
    except FERError as exc:  # the project's errors; anything else is a bug and keeps its traceback
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{r.faces}: {r.n_images} faces")
    print(f"A {args.model_a}: accuracy {r.accuracy_a:.4f}")
    print(f"B {args.model_b}: accuracy {r.accuracy_b:.4f}")
    print(f"right by A only {r.only_a}, by B only {r.only_b}: exact McNemar p = {r.p_value:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

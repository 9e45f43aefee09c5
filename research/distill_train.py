"""``python -m research.distill_train [calibrate|evaluate|export] ARGS``: the fer_train steps with
offline knowledge distillation (:mod:`research.distill`) plugged in.

With no step name it trains: every ``python -m fer_train`` flag, plus

* ``--teacher MODEL_DIR`` (repeatable): a trained model folder whose calibrated, mirror-averaged
  probabilities on the training faces are mixed into the targets (an ensemble's are averaged);
* ``--distill-weight W`` (default 0.5): the teachers' share of each target.

``calibrate``, ``evaluate`` and ``export`` run ``python -m fer_train.<step>`` with the same
arguments; ``export`` then writes the teachers' summaries and training time into the card. The
dlib parts of ``python -m research.dlib_train`` are registered too, so dlib models can teach or
learn. E.g.::

    python -m research.distill_train --data ../shared/data/ferplus --out runs/kd \\
        --teacher runs/long28/best --teacher runs/ft112/best --distill-weight 0.5
    python -m research.distill_train export --run runs/kd --out exported/kd
"""

from __future__ import annotations

import argparse
import importlib
import sys

import research.dlib_train  # noqa: F401  (dlib_resnet students and teachers load, as under research.dlib_train)
from fer_train import export, train
from fer_train.__main__ import build_parser
from fer_train.__main__ import main as train_main
from research.distill import distill_targets, teacher_recipe

#: The steps besides training, by the name given as the first argument.
STEPS = {"calibrate": "fer_train.calibrate", "evaluate": "fer_train.evaluate", "export": "fer_train.export"}

if distill_targets not in train.DATA_HOOKS:
    train.DATA_HOOKS.append(distill_targets)
if teacher_recipe not in export.EXPORT_HOOKS:
    export.EXPORT_HOOKS.append(teacher_recipe)


def distill_parser() -> argparse.ArgumentParser:
    """``python -m fer_train``'s parser with ``--teacher`` and ``--distill-weight``."""
    p = build_parser()
    p.prog = "python -m research.distill_train"
    p.add_argument("--teacher", dest="teachers", action="append", default=[], metavar="MODEL_DIR",
                   help="knowledge distillation: a trained model folder whose calibrated, flip-averaged "
                        "probabilities on the training faces are mixed into the targets (repeat for an "
                        "ensemble; they are averaged)")
    p.add_argument("--distill-weight", type=float, default=0.5,
                   help="share of the teachers' probabilities in the target (with --teacher)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Train with distillation (or run the step named first) with the distillation parts registered."""
    argv = list(sys.argv[1:] if argv is None else argv)
    module = STEPS.get(argv[0]) if argv else None
    if module:
        return importlib.import_module(module).main(argv[1:])
    return train_main(argv, distill_parser())


if __name__ == "__main__":
    sys.exit(main())

"""``python -m research.train [calibrate|evaluate|export] ARGS``: the fer_train steps with every
research extension plugged in, through fer_train's extension points (registered on import):

* the dlib face-recognition ResNet (:mod:`research.dlib_train`: ``--backbone dlib_resnet``,
  ``--pretrained dlib-face`` and the affine-layer calibration before training);
* offline knowledge distillation (:mod:`research.distill`): ``--teacher MODEL_DIR`` (repeatable;
  an ensemble's probabilities are averaged) and ``--distill-weight W`` (default 0.5, the
  teachers' share of each target); ``export`` adds the teachers' summaries and time to the card;
* a final fit (:mod:`research.final_fit`): ``--final-fit FRACTION`` trains on Train plus Valid
  except a held-out fold of that share; ``calibrate``, ``evaluate`` and ``export`` measure such a
  model on its fold, and ``export`` takes its last epoch (unless ``--epoch`` is given);
* packed data (:mod:`research.pack`): every ``--data`` takes a file ``python -m research.pack`` wrote.

With no step name it trains (every ``python -m fer_train`` flag and the ones above);
``calibrate``, ``evaluate`` and ``export`` run ``python -m fer_train.<step>`` with the same
arguments. E.g.::

    python -m research.train --data ../shared/data/ferplus --out runs/kd --teacher runs/long28/best \\
        --teacher runs/ft112/best --distill-weight 0.5
    python -m research.train export --run runs/kd --out exported/kd
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

import research.distill  # noqa: F401  (registers the extension points' steps)
import research.facemesh_backbone  # noqa: F401  (--backbone facemesh_trunk, --pretrained facemesh)
import research.final_fit  # noqa: F401
import research.pack  # noqa: F401
from fer_train.__main__ import build_parser
from fer_train.__main__ import main as train_main
from research.dlib_train import STEPS  # (importing it registers the dlib parts)


def research_parser() -> argparse.ArgumentParser:
    """``python -m fer_train``'s parser with the research options (they land in ``TrainConfig.extra``)."""
    p = build_parser()
    p.prog = "python -m research.train"
    p.add_argument("--teacher", dest="teachers", action="append", default=[], metavar="MODEL_DIR",
                   help="knowledge distillation: a trained model folder whose calibrated, flip-averaged "
                        "probabilities on the training faces are mixed into the targets (repeat for an "
                        "ensemble; they are averaged)")
    p.add_argument("--distill-weight", type=float, default=0.5,
                   help="share of the teachers' probabilities in the target (with --teacher)")
    p.add_argument("--final-fit", type=float, default=0.0, metavar="FRACTION",
                   help="final fit: train on Train plus Valid except a held-out fold of this share (stratified, the "
                        "same for every seed) for the fixed --epochs; its model is OUT/last; 0 = the usual Train run")
    return p


def is_final_fit(run: str | Path) -> bool:
    """Whether ``run`` is a final-fit run folder (``--final-fit`` > 0 in its ``args.json``)."""
    args_file = Path(run) / "args.json"
    args = json.loads(args_file.read_text()) if args_file.is_file() else {}
    return float((args.get("extra") or {}).get("final_fit") or 0.0) > 0


def main(argv: list[str] | None = None) -> int:
    """Train (or run the step named first) with every research extension registered."""
    argv = list(sys.argv[1:] if argv is None else argv)
    module = STEPS.get(argv[0]) if argv else None
    if module is None:
        return train_main(argv, research_parser())
    argv = argv[1:]
    if module == "fer_train.export" and not any(a.startswith("--epoch") for a in argv):
        run_option = argparse.ArgumentParser(add_help=False)
        run_option.add_argument("--run")
        run = run_option.parse_known_args(argv)[0].run
        if run and is_final_fit(run):
            argv += ["--epoch", "last"]  # a final fit's model is its last epoch: nothing is selected
    return importlib.import_module(module).main(argv)


if __name__ == "__main__":
    sys.exit(main())

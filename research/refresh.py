"""``python -m research.refresh MODEL_DIR --data DIR``: re-calibrate and re-evaluate an exported
model folder in place and re-render its model card, after its ``config.json`` changed (e.g. a
class prior, ``tau`` or ``balanced`` added by hand); the weights are not touched.

It strings together the product's steps (:func:`fer_train.calibrate.calibrate`,
:func:`fer_train.evaluate.evaluate`, :func:`fer_train.export.render_card`) on a folder that
``python -m fer_train.export`` wrote earlier.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import research.dlib_resnet  # noqa: F401  (registers the dlib_resnet backbone)
import research.final_fit  # noqa: F401  (final fits measured on their held-out fold)
import research.pack  # noqa: F401  (--data reads packed files)
from fer_core.errors import FERError, InvalidArgumentError
from fer_train.calibrate import calibrate
from fer_train.data import LabelledFaces, load_split
from fer_train.evaluate import evaluate
from fer_train.export import render_card


def refresh(model_dir: str | Path, data: str | Path, repo_id: str = "fer-core/ferplus",
            model_name: str | None = None, limit: int | None = None) -> dict[str, Any]:
    """Re-calibrate and re-evaluate an exported folder in place and re-render its card, after its ``config.json``
    changed (e.g. a class prior, ``tau`` or ``balanced`` added); the weights are not touched.

    The number of kept Train faces shown in the card is counted again from ``data`` with the
    recipe's label mode. ``limit``: evaluate on the first N Valid images only (tests).

    Returns:
        The Valid evaluation report.

    Raises:
        InvalidArgumentError: the folder has no ``config.json``. DatasetError: the data is missing
            or malformed. ModelLoadError: the folder is not a valid model.
    """
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise InvalidArgumentError(f"{model_dir}/config.json not found: is {model_dir} an exported model folder?")
    calibrate(model_dir, data, limit=limit)
    config = json.loads((model_dir / "config.json").read_text())
    metrics = model_dir / "metrics.json"
    report = evaluate(model_dir, data, "valid", out_dir=model_dir,
                      metrics_file=metrics if metrics.is_file() else None, limit=limit)
    mode = config.get("recipe", {}).get("label_mode", "crossentropy")
    n_train = len(LabelledFaces(load_split(data, "train"), mode, transform=lambda face: face))
    name = model_name or f"ferplus-{config['backbone']}"
    render_card(model_dir, report, None, repo_id, name, n_train=n_train).save(model_dir / "README.md")
    return report


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; exit status 1 with a message on bad input."""
    p = argparse.ArgumentParser(prog="python -m research.refresh", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir", metavar="MODEL_DIR", help="an exported model folder")
    p.add_argument("--data", required=True, help="FER+ folder for evaluation")
    p.add_argument("--repo-id", default="fer-core/ferplus", help="repo id shown in the card")
    p.add_argument("--model-name", default=None)
    p.add_argument("--limit", type=int, default=None, help="evaluate on the first N Valid images")
    args = p.parse_args(argv)
    try:
        r = refresh(args.model_dir, args.data, args.repo_id, args.model_name, args.limit)
    except FERError as exc:  # the project's errors; anything else is a bug and keeps its traceback
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"refreshed {args.model_dir}: valid accuracy {r['accuracy']:.4f}, UAR {r['uar']:.4f}, "
          f"ECE {r['ece_before']:.4f} -> {r['ece_after']:.4f} (T={r['temperature']:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

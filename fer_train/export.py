"""``python -m fer_train.export --run runs/NAME --out DIR``: a run's best model -> a Hub-ready folder.

Writes ``config.json`` (with the temperature fitted on Valid by :mod:`fer_train.calibrate`),
``model.safetensors``, ``model.onnx`` (:func:`fer_core.export_onnx.export_onnx`, checked against torch on
FER+ Valid faces), the plots (confusion matrix, reliability diagram, learning curves of every
stage), ``metrics.json`` (the per-epoch numbers behind the curves), ``report.json`` and ``README.md``: the
model card rendered from the package's ``model_card.md`` template with the measured numbers and Hub
metadata (``ModelCardData`` with a model-index of ``EvalResult``s).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from PIL import Image

from fer_core.errors import FERError, InvalidArgumentError
from fer_core.export_onnx import export_onnx
from fer_core.hub import ONNX_NAME
from fer_core.model import load_model

from .calibrate import calibrate
from .data import load_split
from .evaluate import evaluate

TEMPLATE = Path(__file__).resolve().parent / "model_card.md"
RECIPE_FROM_ARGS = ("warmup_epochs", "dropout", "label_smoothing")
#: FER+ Valid faces the ONNX export is checked on (the first ones of the split).
ONNX_CHECK_FACES = 64
#: Steps run on an exported model's recipe: ``hook(run, recipe, minutes_of)`` may add keys to
#: ``recipe`` and, to ``minutes_of`` (resolved path -> minutes, each counted once), the training
#: time of other work the model rests on (``python -m research.train --teacher``: its teachers).
EXPORT_HOOKS: list[Callable[[Path, dict[str, Any], dict[Path, float | None]], None]] = []


def card_data(report: dict[str, Any], model_name: str) -> ModelCardData:
    """Hub metadata with a model-index of the evaluation's numbers."""
    common = dict(task_type="image-classification", task_name="Facial expression recognition",
                  dataset_type="ferplus", dataset_name="FER+ (majority protocol)",
                  dataset_split={"valid": "validation", "test": "test"}.get(report["split"],
                                                                            "validation (held-out fold)"))
    results = [
        EvalResult(metric_type="accuracy", metric_value=round(report["accuracy"], 4), **common),
        EvalResult(metric_type="f1", metric_name="macro-F1", metric_value=round(report["macro_f1"], 4),
                   metric_args={"average": "macro"}, **common),
        EvalResult(metric_type="recall", metric_name="UAR (mean per-class recall)",
                   metric_value=round(report["uar"], 4), metric_args={"average": "macro"}, **common),
        EvalResult(metric_type="ece", metric_name="ECE after temperature scaling",
                   metric_value=round(report["ece_after"], 4), **common),
    ]
    return ModelCardData(
        model_name=model_name, license="mit", library_name="pytorch", pipeline_tag="image-classification",
        tags=["facial-expression-recognition", "emotion-recognition", "ferplus", "fer_core", "safetensors"],
        datasets=["ferplus"], metrics=["accuracy", "f1", "recall"], eval_results=results,
    )


def render_card(model_dir: Path, report: dict[str, Any], run: Path | None, repo_id: str,
                model_name: str, n_train: int | None = None) -> ModelCard:
    """Render ``model_card.md`` for an exported folder (``n_train``: kept Train faces, default
    from the run's ``args.json``)."""
    config = json.loads((model_dir / "config.json").read_text())
    recipe = config.get("recipe", {})
    names = config["labels"]
    per_class = [{"name": n, **report["per_class"][n]} for n in names]
    args = json.loads((run / "args.json").read_text()) if run and (run / "args.json").is_file() else {}
    n_train = args.get("n_train", n_train)  # recorded by the training loop
    aug = recipe.get("augment", {})
    return ModelCard.from_template(
        card_data(report, model_name), template_path=str(TEMPLATE),
        model_name=model_name, repo_id=repo_id, labels=names, backbone=config["backbone"],
        init=recipe.get("base_init") or recipe.get("init", "unknown init"),
        split_name={"valid": "Valid", "test": "Test"}.get(report["split"], "Valid held-out fold"),
        per_class=per_class, recipe={**{k: "?" for k in ("optimizer", "lr", "weight_decay", "scheduler",
                                                         "batch_size", "epochs", "best_epoch", "balance",
                                                         "seed", "hardware", "dropout", "label_smoothing")}, **recipe},
        label_mode=recipe.get("label_mode", "?"), color_mode=config["color_mode"],
        native_size=config.get("native_size"), input_size=config["input_size"],
        crop_margin=config.get("crop_margin", 0.0), align=config.get("align", True),
        augment=", ".join(f"{k}={v}" for k, v in aug.items()) or "none",
        train_minutes=recipe.get("train_minutes", "?"),  # set by export() from the run's metrics
        n_train=n_train if n_train is not None else "?", has_curves=(model_dir / "curves.png").is_file(),
        balanced=report.get("balanced"), tau_sweep=report.get("tau_sweep", []),
        balanced_default=config.get("balanced", False),
        **{k: report[k] for k in ("accuracy", "uar", "macro_f1", "ece_before", "ece_after", "temperature",
                                  "n_images")},
    )


def run_model(run: str | Path, epoch: str = "best") -> Path:
    """The model folder of a training run: ``best/`` (the epoch selected on Valid) or, with
    ``epoch="last"``, ``last/`` (the latest epoch, no selection); ``run`` itself when it is an
    exported model folder (``config.json`` at its top, as ``fer_core/default_model``).

    Raises:
        InvalidArgumentError: ``epoch`` is not ``best`` or ``last``.
    """
    if epoch not in ("best", "last"):
        raise InvalidArgumentError(f"epoch must be best or last, got {epoch!r}")
    run = Path(run)
    if not (run / epoch / "config.json").is_file() and (run / "config.json").is_file():
        return run
    return run / epoch


def train_minutes(run: Path) -> float | None:
    """Wall-clock training minutes of a run (its last ``metrics.json`` row), ``None`` without one."""
    if not (run / "metrics.json").is_file():
        return None
    return json.loads((run / "metrics.json").read_text())[-1]["elapsed_s"] / 60


def previous_stage(run: Path) -> tuple[str, float, str]:
    """One-line summary of an earlier run this one continued from, its training minutes, and the
    initialisation it started from.

    Raises:
        InvalidArgumentError: the run (or exported model folder) has no ``config.json`` or no
            ``metrics.json``.
    """
    config = run_model(run) / "config.json"
    if not config.is_file():
        raise InvalidArgumentError(f"{config} not found: is {run} a finished training run or an exported model?")
    recipe = json.loads(config.read_text()).get("recipe", {})
    minutes = train_minutes(run)
    if minutes is None:
        raise InvalidArgumentError(f"{run}/metrics.json not found: is {run} a finished training run?")
    text = (f"{recipe.get('epochs')} epochs from {recipe.get('init')}, {recipe.get('optimizer')} lr "
            f"{recipe.get('lr')}, {recipe.get('scheduler')}, label mode {recipe.get('label_mode')}, "
            f"{minutes:.0f} min")
    return text, minutes, recipe.get("base_init") or recipe.get("init", "?")


def stage_history(run: Path, previous_run: str | Path | None = None) -> list[dict[str, Any]]:
    """The per-epoch metrics of ``run``, after those of the run it continued from when given, with
    epochs numbered on through both and each row's ``stage`` set to its run folder's name.

    Raises:
        InvalidArgumentError: a run has no ``metrics.json``.
    """
    stages = ([Path(previous_run)] if previous_run is not None else []) + [Path(run)]
    history: list[dict[str, Any]] = []
    for stage in stages:
        if not (stage / "metrics.json").is_file():
            raise InvalidArgumentError(f"{stage}/metrics.json not found: is {stage} a finished training run?")
        offset = len(history)
        for row in json.loads((stage / "metrics.json").read_text()):
            history.append({**row, "epoch": offset + row["epoch"], "stage_epoch": row.get("stage_epoch", row["epoch"]),
                            "stage": row.get("stage", stage.name)})  # an exported folder keeps its stages
    return history


def export(run: str | Path, out: str | Path, data: str | Path | None = None, repo_id: str = "fer-core/ferplus",
           model_name: str | None = None, crop_margin: float | None = None, limit: int | None = None,
           previous_run: str | Path | None = None, balanced: bool | None = None,
           tau: float | None = None, epoch: str = "best") -> dict[str, Any]:
    """Export a run's model (``run/best``, or ``run/last`` with ``epoch="last"``: :func:`run_model`)
    to ``out``, then calibrate it and evaluate it on Valid (:func:`fer_train.data.measured_faces`)
    with plots and model card.

    Args:
        run: a ``python -m fer_train`` run folder (with ``best/``, ``metrics.json``, ``args.json``).
        out: destination folder (created; existing files overwritten).
        data: FER+ folder for the evaluation (default: the run's ``--data``).
        repo_id: the Hub repo id shown in the card's usage snippet.
        model_name: card title (default: ``ferplus-<backbone>``).
        crop_margin: override the crop margin stored in ``config.json``.
        limit: evaluate on the first N Valid images only (tests).
        previous_run: the run whose model ``run`` was initialised from (``--pretrained``); its
            recipe and time are recorded as an earlier stage and its minutes added to the total
            (and those :data:`EXPORT_HOOKS` add).
        balanced: the exported model's default operating point (``config.json`` ``balanced``);
            ``None`` keeps the run's (plain).
        tau: strength of the balanced operating point (``config.json`` ``tau``); ``None`` keeps it.
        epoch: ``best`` (the epoch selected on Valid) or ``last`` (the latest epoch of a schedule
            fixed in advance; runs from before ``last/`` existed have none).

    Returns:
        The Valid evaluation report, plus ``onnx_max_abs_diff`` (:func:`write_onnx`).

    Raises:
        ExportCheckError: ``model.onnx`` does not reproduce torch's probabilities on Valid faces.
        InvalidArgumentError: the run has no such model (no ``config.json`` or ``model.safetensors``),
            ``epoch`` is unknown, no data is given or named by the run, or a previous run has no
            ``config.json`` / ``metrics.json``.
        DatasetError: the data is missing or malformed. ModelLoadError: the model is invalid.
    """
    run, out = Path(run), Path(out)
    model_dir = run_model(run, epoch)
    for name in ("config.json", "model.safetensors"):
        if not (model_dir / name).is_file():
            raise InvalidArgumentError(f"{model_dir}/{name} not found: is {run} a finished training run"
                                       + (" that saves last/?" if epoch == "last" else "?"))
    args = json.loads((run / "args.json").read_text()) if (run / "args.json").is_file() else {}
    data = data or args.get("data")
    if not data:
        raise InvalidArgumentError("no --data given and the run's args.json names none")
    out.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copyfile(model_dir / name, out / name)
    config = json.loads((out / "config.json").read_text())
    if crop_margin is not None:
        config["crop_margin"] = crop_margin
    if tau is not None:
        config["tau"] = tau
    if balanced is not None:
        config["balanced"] = balanced
    for key in RECIPE_FROM_ARGS:  # options that runs from before summarise() recorded them lack
        if key in args:
            config["recipe"].setdefault(key, args[key])
    minutes_of = {run.resolve(): train_minutes(run)}  # all the work that went into the model, once each
    if previous_run is not None:
        text, minutes, base_init = previous_stage(Path(previous_run))
        config["recipe"]["previous_stage"] = text
        config["recipe"]["base_init"] = base_init
        minutes_of[Path(previous_run).resolve()] = minutes
    for hook in EXPORT_HOOKS:
        hook(run, config["recipe"], minutes_of)
    known = [m for m in minutes_of.values() if m is not None]
    if known:
        config["recipe"]["train_minutes"] = round(sum(known), 1)
    (out / "config.json").write_text(json.dumps(config, indent=2))
    metrics_file = None
    if (run / "metrics.json").is_file():
        history = stage_history(run, previous_run)
        metrics_file = out / "metrics.json"
        metrics_file.write_text(json.dumps(history, indent=2))
    calibrate(out, data, limit=limit)
    report = evaluate(out, data, "valid", out_dir=out, metrics_file=metrics_file, limit=limit)
    report["onnx_max_abs_diff"] = write_onnx(out, data)
    name = model_name or f"ferplus-{config['backbone']}"
    render_card(out, report, run, repo_id, name).save(out / "README.md")
    return report


def write_onnx(model_dir: str | Path, data: str | Path, n_faces: int = ONNX_CHECK_FACES) -> float:
    """Write ``model_dir/model.onnx`` beside ``model.safetensors``, checked against the model loaded back
    from the folder on the first ``n_faces`` FER+ Valid faces (48x48 gray, as stored).

    Returns:
        The largest difference between ONNX Runtime's and torch's probabilities (<= 1e-5).

    Raises:
        ExportCheckError: the difference is larger; no file is written. ModelLoadError: the folder is
            invalid. DatasetError: the data is missing or malformed.
    """
    model_dir = Path(model_dir)
    faces = load_split(data, "valid", limit=n_faces)
    crops = [Image.fromarray(face) for face in faces.images]  # uint8 (48, 48): mode L
    return export_onnx(load_model(model_dir), model_dir / ONNX_NAME, check_crops=crops)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    p = argparse.ArgumentParser(prog="python -m fer_train.export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="training run folder")
    p.add_argument("--out", required=True, help="export folder")
    p.add_argument("--data", default=None, help="FER+ folder for evaluation (default: the run's)")
    p.add_argument("--repo-id", default="fer-core/ferplus", help="repo id shown in the card")
    p.add_argument("--model-name", default=None)
    p.add_argument("--crop-margin", type=float, default=None, help="override config.json's crop_margin")
    p.add_argument("--limit", type=int, default=None, help="evaluate on the first N Valid images")
    p.add_argument("--previous-run", default=None, help="the run this one continued from (--pretrained)")
    p.add_argument("--epoch", choices=("best", "last"), default="best",
                   help="best: the epoch selected on Valid; last: the schedule's latest epoch, no selection")
    p.add_argument("--balanced", action=argparse.BooleanOptionalAction, default=None,
                   help="make balanced (prior-corrected) decisions the model's default operating point")
    p.add_argument("--tau", type=float, default=None, help="strength of the balanced operating point (0..5)")
    args = p.parse_args(argv)
    try:
        r = export(args.run, args.out, args.data, args.repo_id, args.model_name, args.crop_margin, args.limit,
                   args.previous_run, args.balanced, args.tau, args.epoch)
    except FERError as exc:  # the project's errors; anything else is a bug and keeps its traceback
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"exported to {args.out}: valid accuracy {r['accuracy']:.4f}, UAR {r['uar']:.4f}, "
          f"ECE {r['ece_before']:.4f} -> {r['ece_after']:.4f} (T={r['temperature']:.3f})"
          + (f"; balanced (tau {r['balanced']['tau']:g}): accuracy {r['balanced']['accuracy']:.4f}, "
             f"UAR {r['balanced']['uar']:.4f}" if "balanced" in r else "")
          + f"; model.onnx agrees with torch within {r['onnx_max_abs_diff']:.2g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m fer_train.evaluate --model DIR --data DIR --split valid|test``: metrics and plots.

Always the FER+ majority protocol, and read-only on the model folder (``python -m
fer_train.calibrate`` fits its temperature). Writes to ``--out`` (default ``MODEL/eval_SPLIT``):
``report.json`` (with the balanced operating point and a sweep of its strength ``tau`` when the
config has a class prior), ``confusion_matrix.png`` (row-normalised), ``reliability.png`` (before
and after the stored temperature) and, when the run's ``metrics.json`` is found, ``curves.png``. The faces
are the split's, or those :data:`fer_train.data.MEASURE_HOOKS` pick (e.g. a final fit's held-out fold).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from scipy.special import softmax
from sklearn import metrics

from fer_core.errors import FERError
from fer_core.model import load_model

from .calibrate import ECE_BINS, calibration_bins, expected_calibration_error
from .data import measured_faces
from .engine import majority_logits


def evaluate(
    model_dir: str | Path,
    data: str | Path,
    split: str = "valid",
    out_dir: str | Path | None = None,
    metrics_file: str | Path | None = None,
    tta_flip: bool = False,
    limit: int | None = None,
) -> dict[str, Any]:
    """Evaluate a model folder on a FER+ split and write the report and plots (the model folder
    itself is only read: its temperature comes from ``python -m fer_train.calibrate``).

    Args:
        model_dir: folder with ``config.json`` + ``model.safetensors``.
        data: FERPlus layout folder (or raw CSV folder).
        split: ``valid`` or ``test``.
        out_dir: output folder (default ``model_dir/eval_<split>``).
        metrics_file: a run's ``metrics.json`` for the learning-curves plot (default: looked for
            beside ``model_dir`` and in it).
        tta_flip: average logits with the mirrored face (off by default: fer_core does not).
        limit: evaluate only the first N images (tests); a hook picks its faces among these.

    Returns:
        The report dict (also written as ``report.json``).

    Raises:
        ModelLoadError: the model folder is invalid. DatasetError: the data is missing or malformed.
    """
    model_dir = Path(model_dir)
    out = Path(out_dir) if out_dir else model_dir / f"eval_{split}"
    out.mkdir(parents=True, exist_ok=True)
    model = load_model(model_dir)
    cfg = model.config
    faces, name = measured_faces(data, split, cfg, limit)
    logits, labels = majority_logits(model, faces, tta_flip)
    k = list(range(cfg.num_classes))
    temperature = cfg.temperature
    before, after = softmax(logits, axis=1), softmax(logits / temperature, axis=1)
    pred = logits.argmax(1)
    report = {
        "model": str(model_dir),
        "split": name,
        "protocol": "majority",
        "n_images": int(len(labels)),
        "tta_flip": tta_flip,
        "accuracy": float(metrics.accuracy_score(labels, pred)),
        "macro_f1": float(metrics.f1_score(labels, pred, labels=k, average="macro", zero_division=0)),
        "uar": float(metrics.balanced_accuracy_score(labels, pred)),
        "per_class": metrics.classification_report(labels, pred, labels=k, target_names=cfg.labels,
                                                   output_dict=True, zero_division=0),
        "confusion_matrix": metrics.confusion_matrix(labels, pred, labels=k).tolist(),
        "temperature": float(temperature),
        "temperature_fitted_on": (cfg.recipe or {}).get("temperature_fitted_on", "not recorded"),
        "ece_before": expected_calibration_error(before, labels),
        "ece_after": expected_calibration_error(after, labels),
        "nll_before": float(metrics.log_loss(labels, before, labels=k)),
        "nll_after": float(metrics.log_loss(labels, after, labels=k)),
    }
    if cfg.prior is not None:
        report["balanced"] = balanced_operating_point(logits / temperature, labels, cfg.prior, cfg.tau, cfg.labels)
        report["tau_sweep"] = [
            {k: v for k, v in balanced_operating_point(logits / temperature, labels, cfg.prior, tau, cfg.labels).items()
             if k in ("tau", "accuracy", "uar", "macro_f1")}
            for tau in TAU_SWEEP
        ]
    (out / "report.json").write_text(json.dumps(report, indent=2))
    _plot_confusion(labels, pred, cfg.labels, out / "confusion_matrix.png", split)
    _plot_reliability(before, after, labels, temperature, out / "reliability.png")
    if metrics_file is None:
        candidates = [model_dir / "metrics.json", model_dir.parent / "metrics.json"]
        metrics_file = next((c for c in candidates if c.is_file()), None)
    if metrics_file is not None and Path(metrics_file).is_file():
        plot_curves(json.loads(Path(metrics_file).read_text()), out / "curves.png")
    return report


#: The logit-adjustment strengths every evaluation reports (``tau_sweep`` in report.json).
TAU_SWEEP: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)


def balanced_operating_point(scaled_logits: np.ndarray, labels: np.ndarray, prior: list[float], tau: float,
                             names: list[str]) -> dict[str, Any]:
    """Metrics of the balanced decisions ``argmax(logits / T - tau * log(prior))`` (post-hoc logit
    adjustment, Menon et al. 2021, ICLR), as :meth:`fer_core.model.EmotionNet.probabilities` makes them.

    Args:
        scaled_logits: float ``(N, C)`` logits already divided by the temperature.
        labels: int ``(N,)`` majority labels.
        prior: the ``C`` training class frequencies.
        tau: adjustment strength (0 = the plain argmax).
        names: the ``C`` label names.

    Returns:
        ``tau``, ``accuracy``, ``uar``, ``macro_f1``, ``recall`` (name -> recall) and
        ``confusion_matrix`` (list of lists).
    """
    k = list(range(len(names)))
    pred = (scaled_logits - tau * np.log(np.asarray(prior, dtype=np.float64))).argmax(1)
    recall = metrics.recall_score(labels, pred, labels=k, average=None, zero_division=0)
    return {
        "tau": float(tau),
        "accuracy": float(metrics.accuracy_score(labels, pred)),
        "uar": float(metrics.balanced_accuracy_score(labels, pred)),
        "macro_f1": float(metrics.f1_score(labels, pred, labels=k, average="macro", zero_division=0)),
        "recall": {n: float(r) for n, r in zip(names, recall)},
        "confusion_matrix": metrics.confusion_matrix(labels, pred, labels=k).tolist(),
    }


def _plot_confusion(labels: np.ndarray, pred: np.ndarray, names: list[str], path: Path, split: str) -> None:
    fig = Figure(figsize=(7.5, 6.5), layout="constrained")
    ax = fig.subplots()
    metrics.ConfusionMatrixDisplay.from_predictions(labels, pred, labels=list(range(len(names))), display_labels=names,
                                                    normalize="true", values_format=".2f", cmap="Blues", ax=ax,
                                                    xticks_rotation=45, colorbar=True)
    ax.set_title(f"FER+ {split}: confusion matrix (rows normalised to recall)")
    fig.savefig(path, dpi=110)


def reliability_diagram(ax: Axes, probs: np.ndarray, labels: np.ndarray, title: str,
                        n_bins: int = ECE_BINS) -> None:
    """Draw a reliability diagram (accuracy per confidence bin vs the diagonal, Guo et al. 2017,
    figure 1) on ``ax`` for float ``(N, C)`` probabilities and int ``(N,)`` labels."""
    conf, acc, counts = calibration_bins(probs, labels, n_bins)
    edges = np.linspace(0, 1, n_bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    mask = counts > 0
    ax.bar(centres[mask], acc[mask], width=1 / n_bins, edgecolor="black", color="#4c72b0", label="accuracy")
    ax.bar(centres[mask], np.abs(conf - acc)[mask], bottom=np.minimum(acc, conf)[mask], width=1 / n_bins,
           color="#dd8452", alpha=0.5, edgecolor="#dd8452", label="gap to confidence")
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title}  (ECE {expected_calibration_error(probs, labels, n_bins):.3f})")
    ax.legend(loc="upper left", fontsize=8)


def _plot_reliability(before: np.ndarray, after: np.ndarray, labels: np.ndarray, temperature: float,
                      path: Path) -> None:
    fig = Figure(figsize=(10, 4.5), layout="constrained")
    a, b = fig.subplots(1, 2)
    reliability_diagram(a, before, labels, "before (T = 1)")
    reliability_diagram(b, after, labels, f"after (T = {temperature:.3f})")
    fig.savefig(path, dpi=110)


def plot_curves(history: list[dict[str, Any]], path: str | Path) -> None:
    """Training/validation loss and accuracy per epoch as a PNG.

    Args:
        history: a run's ``metrics.json`` rows (``epoch``, ``train_loss``, ``valid_loss``,
            ``train_acc``, ``valid_acc``, ``valid_uar``; optional ``valid_acc_raw`` for EMA runs,
            plotted where present). Rows of a multi-stage export carry a ``stage`` name; a dotted
            vertical line marks where each later stage starts.
        path: PNG to write.
    """
    epochs = [r["epoch"] for r in history]
    fig = Figure(figsize=(10, 4), layout="constrained")
    a, b = fig.subplots(1, 2)
    a.plot(epochs, [r["train_loss"] for r in history], "o-", label="train (soft targets, augmented)")
    a.plot(epochs, [r["valid_loss"] for r in history], "o-", label="valid (majority)")
    a.set_xlabel("epoch")
    a.set_ylabel("cross-entropy")
    a.set_title("loss")
    b.plot(epochs, [r["train_acc"] for r in history], "o-", label="train accuracy")
    ema = any("valid_acc_raw" in r for r in history)
    b.plot(epochs, [r["valid_acc"] for r in history], "o-", label="valid accuracy" + (" (EMA weights)" if ema else ""))
    if ema:
        b.plot(epochs, [r.get("valid_acc_raw", np.nan) for r in history], "o:", label="valid accuracy (raw weights)")
    b.plot(epochs, [r["valid_uar"] for r in history], "o--", label="valid UAR")
    b.set_xlabel("epoch")
    b.set_title("accuracy")
    for prev, row in zip(history, history[1:]):
        if row.get("stage") != prev.get("stage"):
            for ax in (a, b):
                ax.axvline(row["epoch"] - 0.5, color="grey", linestyle=":")
                ax.annotate(row["stage"], (row["epoch"] - 0.5, 0.98), xycoords=("data", "axes fraction"),
                            rotation=90, color="grey", fontsize=8, ha="right", va="top")
    a.legend()
    b.legend()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; prints the headline numbers."""
    p = argparse.ArgumentParser(prog="python -m fer_train.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="model folder (config.json + model.safetensors)")
    p.add_argument("--data", required=True, help="FERPlus layout folder")
    p.add_argument("--split", default="valid", choices=("valid", "test"))
    p.add_argument("--out", default=None, help="output folder (default MODEL/eval_SPLIT)")
    p.add_argument("--metrics", default=None, help="a run's metrics.json for the curves plot")
    p.add_argument("--tta-flip", action="store_true")
    p.add_argument("--limit", type=int, default=None)
    args = p.parse_args(argv)
    try:
        r = evaluate(args.model, args.data, args.split, args.out, args.metrics, args.tta_flip, args.limit)
    except FERError as exc:  # the project's errors; anything else is a bug and keeps its traceback
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{r['split']}: {r['n_images']} images, accuracy {r['accuracy']:.4f}, macro-F1 {r['macro_f1']:.4f}, "
          f"UAR {r['uar']:.4f}, ECE {r['ece_before']:.4f} -> {r['ece_after']:.4f} (T={r['temperature']:.3f}, fitted "
          f"on {r['temperature_fitted_on']})")
    if "balanced" in r:
        b = r["balanced"]
        print(f"balanced (tau {b['tau']:g}): accuracy {b['accuracy']:.4f}, macro-F1 {b['macro_f1']:.4f}, "
              f"UAR {b['uar']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m fer_train.calibrate MODEL_DIR --data DIR``: fit the softmax temperature on Valid and
store it in the model's ``config.json``.

Temperature scaling and the expected calibration error as in Guo et al., "On Calibration of
Modern Neural Networks", ICML 2017 (ECE with 15 equal-width confidence bins). The temperature is
fitted on the FER+ majority labels of Valid (or the faces :data:`fer_train.data.MEASURE_HOOKS`
pick, e.g. a final fit's held-out fold); it is the only thing written
(with ``recipe.temperature_fitted_on``), and ``python -m fer_train.evaluate`` then reads it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fer_core.errors import FERError, ModelLoadError
from fer_core.model import load_model

from .data import measured_faces
from .engine import majority_logits

ECE_BINS = 15


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature ``T > 0`` minimising the negative log-likelihood of ``softmax(logits / T)``.

    Args:
        logits: float ``(N, C)`` validation logits.
        labels: int ``(N,)`` true classes.

    Returns:
        ``T`` (float, clipped to 0.05..20). Optimised over ``log T`` with L-BFGS.
    """
    z = torch.tensor(logits, dtype=torch.float64)
    y = torch.tensor(labels, dtype=torch.long)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(np.clip(log_t.exp().item(), 0.05, 20.0))


def calibration_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-bin mean confidence, accuracy and count, for equal-width confidence bins on (0, 1].

    Returns:
        Three float64 ``(n_bins,)`` arrays (confidence and accuracy are 0 in empty bins).
    """
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    idx = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    counts = np.bincount(idx, minlength=n_bins).astype(np.float64)
    conf_sum = np.bincount(idx, weights=conf, minlength=n_bins)
    acc_sum = np.bincount(idx, weights=correct, minlength=n_bins)
    safe = np.maximum(counts, 1)
    return conf_sum / safe, acc_sum / safe, counts


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """ECE = sum over bins of (bin size / N) * |accuracy - confidence| (Guo et al. 2017, eq. 3).

    Args:
        probs: float ``(N, C)`` probabilities. labels: int ``(N,)``. n_bins: number of bins.

    Returns:
        ECE in [0, 1].
    """
    conf, acc, counts = calibration_bins(probs, labels, n_bins)
    return float(np.sum(counts / max(1, counts.sum()) * np.abs(acc - conf)))


def calibrate(model_dir: str | Path, data: str | Path, limit: int | None = None) -> float:
    """Fit the temperature of a model folder on Valid (:func:`fer_train.data.measured_faces`) and write it,
    with where it was fitted (``recipe.temperature_fitted_on``), into ``model_dir/config.json``;
    every other key of the file is kept as it is.

    Args:
        model_dir: folder with ``config.json`` + ``model.safetensors``.
        data: FER+ data (any form :func:`fer_train.data.load_split` reads).
        limit: use only the first N Valid images (tests); a hook picks its faces among these.

    Returns:
        The temperature ``T`` (0.05..20).

    Raises:
        ModelLoadError: the model folder is missing or invalid. DatasetError: the data is missing or malformed.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():  # it rewrites config.json: a Hub id is no folder to write to
        raise ModelLoadError(f"{model_dir}: no such model folder (calibrate writes its config.json)")
    model = load_model(model_dir)
    faces, name = measured_faces(data, "valid", model.config, limit)
    logits, labels = majority_logits(model, faces)
    temperature = fit_temperature(logits, labels)
    config_path = model_dir / "config.json"
    stored = json.loads(config_path.read_text())
    stored["temperature"] = temperature
    stored.setdefault("recipe", {})["temperature_fitted_on"] = f"{name}: {len(labels)} faces"
    config_path.write_text(json.dumps(stored, indent=2))
    return temperature


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; prints the temperature."""
    p = argparse.ArgumentParser(prog="python -m fer_train.calibrate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="model folder (config.json + model.safetensors); its config.json is rewritten")
    p.add_argument("--data", required=True, help="FER+ data with the Valid split (any form load_split reads)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N Valid images")
    args = p.parse_args(argv)
    try:
        temperature = calibrate(args.model, args.data, args.limit)
    except FERError as exc:  # the project's errors; anything else is a bug and keeps its traceback
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"temperature {temperature:.4f} written to {Path(args.model) / 'config.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

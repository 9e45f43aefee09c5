"""Calibration: temperature scaling, expected calibration error, reliability diagrams.

Temperature scaling and ECE as in Guo et al., "On Calibration of Modern Neural Networks",
ICML 2017 (ECE with 15 equal-width confidence bins); reliability diagram as in their figure 1.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes

ECE_BINS = 15


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise ``softmax(logits / T)``; float64 ``(N, C)`` input or output."""
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


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


def reliability_diagram(ax: Axes, probs: np.ndarray, labels: np.ndarray, title: str,
                        n_bins: int = ECE_BINS) -> None:
    """Draw a reliability diagram (accuracy per confidence bin vs the diagonal) on ``ax``."""
    conf, acc, counts = calibration_bins(probs, labels, n_bins)
    edges = np.linspace(0, 1, n_bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    mask = counts > 0
    ax.bar(centres[mask], acc[mask], width=1 / n_bins, edgecolor="black", color="#4c72b0", label="accuracy")
    ax.bar(centres[mask], np.abs(conf - acc)[mask], bottom=np.minimum(acc, conf)[mask], width=1 / n_bins,
           color="#dd8452",
           alpha=0.5, edgecolor="#dd8452", label="gap to confidence")
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title}  (ECE {expected_calibration_error(probs, labels, n_bins):.3f})")
    ax.legend(loc="upper left", fontsize=8)

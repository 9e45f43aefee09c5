"""Calibrated class probabilities from logits: the one implementation, in NumPy (torch-free).

Plain: ``softmax(logits / temperature)`` (temperature scaling, Guo et al. 2017, "On Calibration
of Modern Neural Networks", ICML). Balanced: ``softmax(logits / temperature - tau * log(prior))``,
the plain probabilities divided by ``prior ** tau`` and renormalised, so rare classes (disgust,
contempt, fear) are no longer out-voted by the training prior (post-hoc logit adjustment, Menon et
al. 2021, "Long-tail learning via logit adjustment", ICLR). ``temperature``, ``prior`` and ``tau``
come from ``config.json`` (:class:`~fer_core.config.ModelConfig`).
:meth:`fer_core.model.EmotionNet.probabilities` and both classifiers
(:mod:`fer_core.classifier`) call this function.
"""

from __future__ import annotations

import numpy as np

from .config import ModelConfig
from .errors import InvalidArgumentError


def probabilities(logits: np.ndarray, config: ModelConfig, balanced: bool | None = None) -> np.ndarray:
    """Calibrated probabilities of a batch of logits.

    Args:
        logits: float ``(N, num_classes)`` network outputs (any float dtype; computed in float32).
        config: the model's config (``temperature``, ``prior``, ``tau``, ``balanced``).
        balanced: balanced (prior-corrected) instead of plain probabilities; ``None`` for the
            model's default, ``config.balanced``.

    Returns:
        float32 ``(N, num_classes)``, each row in [0, 1] summing to 1 (to float32 rounding);
        ``(0, num_classes)`` for no rows.

    Raises:
        InvalidArgumentError: balanced probabilities asked of a model without ``prior`` in its
            config, or ``logits`` not of shape ``(N, num_classes)``.
    """
    wanted = config.resolve_balanced(balanced)
    logits = np.asarray(logits)
    if logits.ndim != 2 or logits.shape[1] != config.num_classes:
        raise InvalidArgumentError(f"logits must have shape (N, {config.num_classes}), got {logits.shape}")
    scaled = logits.astype(np.float32) / np.float32(config.temperature)
    if wanted:
        scaled = scaled - np.float32(config.tau) * np.log(np.asarray(config.prior, dtype=np.float32))
    if scaled.shape[0] == 0:
        return scaled.astype(np.float32)
    shifted = np.exp(scaled - scaled.max(axis=-1, keepdims=True))
    return (shifted / shifted.sum(axis=-1, keepdims=True)).astype(np.float32)

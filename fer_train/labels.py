"""FER+ vote processing: 10 crowd votes per image -> a training target in one of four label modes.

A port of ``_process_data`` / ``_process_target`` in microsoft/FERPlus ``src/ferplus.py`` (MIT), as
described in Barsoum et al., "Training Deep Networks for Facial Expression Recognition with
Crowd-Sourced Label Distribution", ICMI 2016, arXiv:1608.01041, section 3:

1. Outlier removal: an emotion that got a single vote is set to zero.
2. Mode-specific selection of the votes that count (below), over the 10 columns (8 emotions,
   ``unknown``, ``NF``), normalised to sum 1.
3. If the argmax of that is ``unknown`` or ``NF``, or the selection fails, the image is dropped;
   otherwise the 8 emotion entries, renormalised, are the image's vote distribution.

Evaluation always uses the ``majority`` protocol: an image counts only if one emotion has more
than half of the (outlier-removed) votes, and a prediction is right if its argmax is that emotion.
"""

from __future__ import annotations

import numpy as np

from fer_core.errors import InvalidArgumentError
from fer_core.labels import NUM_CLASSES, VOTE_COLUMNS

LABEL_MODES: tuple[str, ...] = ("majority", "probability", "crossentropy", "multi_target")

_UNKNOWN = VOTE_COLUMNS.index("unknown")


def _check_mode(mode: str) -> None:
    if mode not in LABEL_MODES:
        raise InvalidArgumentError(f"label mode must be one of {', '.join(LABEL_MODES)}, got {mode!r}")


def vote_distribution(votes: np.ndarray | list[float], mode: str) -> np.ndarray | None:
    """Process one image's 10 raw FER+ votes into its 8-emotion distribution, or drop it.

    Args:
        votes: 10 non-negative vote counts in :data:`fer_core.labels.VOTE_COLUMNS` order.
        mode: one of :data:`LABEL_MODES`. ``majority``: the top emotion alone, if it has more
            than half of the votes. ``probability`` / ``crossentropy``: the top emotions (at most 3)
            until they cover 75 % of the votes; dropped if they cover <= 50 % or if ``unknown``/``NF``
            ties among them. ``multi_target``: every emotion with >= 30 % of the votes; dropped if
            they cover <= 50 %.

    Returns:
        float32 ``(8,)`` summing to 1 (one-hot for ``majority``), or ``None`` if the image is dropped
        (no clear outcome, or the outcome is ``unknown`` / not a face).

    Raises:
        ValueError: unknown mode, or ``votes`` does not have 10 entries.
    """
    _check_mode(mode)
    raw = [float(v) for v in votes]
    if len(raw) != len(VOTE_COLUMNS):
        raise InvalidArgumentError(f"expected {len(VOTE_COLUMNS)} vote counts, got {len(raw)}")
    size = len(raw)
    unknown = [0.0] * size
    unknown[_UNKNOWN] = 1.0
    raw = [0.0 if v < 1.0 + 1e-9 else v for v in raw]  # single votes are outliers
    total = sum(raw)
    emotion = [0.0] * size
    if total <= 0:
        return None
    if mode == "majority":
        peak = max(raw)
        if peak > 0.5 * total:
            emotion[int(np.argmax(raw))] = peak
        else:
            emotion = unknown
    elif mode in ("probability", "crossentropy"):
        covered, count, valid = 0.0, 0, True
        while covered < 0.75 * total and count < 3 and valid:
            peak = max(raw)
            for i in range(size):
                if raw[i] == peak:
                    emotion[i] = peak
                    raw[i] = 0.0
                    covered += emotion[i]
                    count += 1
                    if i >= NUM_CLASSES:  # unknown / NF ties with the top votes
                        valid = False
                        if sum(emotion) > peak:  # other emotions came first: drop this column
                            emotion[i] = 0.0
                            count -= 1
                        break
        if sum(emotion) <= 0.5 * total or count > 3:
            emotion = unknown
    else:  # multi_target
        for i in range(size):
            if raw[i] >= 0.3 * total:
                emotion[i] = raw[i]
        if sum(emotion) <= 0.5 * total:
            emotion = unknown
    dist = np.asarray(emotion, dtype=np.float64) / sum(emotion)
    if int(np.argmax(dist)) >= NUM_CLASSES:
        return None
    dist = dist[:NUM_CLASSES]
    return (dist / dist.sum()).astype(np.float32)


def training_target(dist: np.ndarray, mode: str, rng: np.random.Generator) -> np.ndarray:
    """The per-epoch training target for one image (FERPlus ``_process_target``).

    Args:
        dist: float32 ``(8,)`` distribution from :func:`vote_distribution` in the same ``mode``.
        mode: one of :data:`LABEL_MODES`. ``majority`` / ``crossentropy``: ``dist`` itself.
            ``probability``: a one-hot target sampled from ``dist`` (new each call, i.e. each epoch).
            ``multi_target``: 1 for every emotion in ``dist``, 0 elsewhere, smoothed by 0.001.
        rng: random generator used by ``probability``.

    Returns:
        float32 ``(8,)``.
    """
    _check_mode(mode)
    if mode in ("majority", "crossentropy"):
        return dist.astype(np.float32)
    if mode == "probability":
        target = np.zeros_like(dist, dtype=np.float32)
        target[rng.choice(len(dist), p=dist / dist.sum())] = 1.0
        return target
    eps = 0.001
    target = (dist > 0).astype(np.float32)
    return ((1 - eps) * target + eps).astype(np.float32)


def majority_label(votes: np.ndarray | list[float]) -> int | None:
    """Evaluation label of one image under the majority protocol: the index of the emotion with
    more than half of the outlier-removed votes, or ``None`` if the image is excluded."""
    dist = vote_distribution(votes, "majority")
    return None if dist is None else int(np.argmax(dist))

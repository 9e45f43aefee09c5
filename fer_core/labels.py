"""The FER+ label set: the one place the project names its classes.

Source: Barsoum et al., "Training Deep Networks for Facial Expression Recognition with
Crowd-Sourced Label Distribution", ICMI 2016 (arXiv:1608.01041), and microsoft/FERPlus.
"""

from __future__ import annotations

from collections.abc import Sequence

#: The 8 FER+ emotion classes, in the order of the vote columns of FER+ ``label.csv`` and of
#: every model output (logits and probabilities) in this project.
LABELS: tuple[str, ...] = (
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
)

#: The two extra vote columns of FER+ ``label.csv`` that are not emotions: ``unknown`` (the
#: tagger could not tell) and ``NF`` (not a face). Images whose outcome is one of these are dropped.
EXTRA_VOTE_COLUMNS: tuple[str, ...] = ("unknown", "NF")

#: All 10 vote columns of FER+ ``label.csv``, in file order.
VOTE_COLUMNS: tuple[str, ...] = LABELS + EXTRA_VOTE_COLUMNS

NUM_CLASSES: int = len(LABELS)

#: One colour per FER+ label, for every picture and plot (colour-blind-friendly Okabe-Ito palette
#: plus grey for neutral).
LABEL_COLORS: dict[str, str] = {
    "neutral": "#9e9e9e",
    "happiness": "#E69F00",
    "surprise": "#56B4E9",
    "sadness": "#0072B2",
    "anger": "#D55E00",
    "disgust": "#009E73",
    "fear": "#CC79A7",
    "contempt": "#7f3c8d",
}


#: Colours for labels outside FER+ (matplotlib's "tab10" less the hues close to the ones above),
#: handed out in label order by :func:`label_colors`.
EXTRA_COLORS: tuple[str, ...] = ("#4c72b0", "#c44e52", "#55a868", "#8172b3", "#937860", "#ccb974", "#64b5cd",
                                 "#8c8c8c", "#da8bc3", "#dd8452")


def label_colors(labels: Sequence[str]) -> dict[str, str]:
    """A hex colour per label of a model: FER+ labels keep :data:`LABEL_COLORS`; any others get
    :data:`EXTRA_COLORS` in order (distinct for up to 10 such labels, then the cycle repeats).

    Args:
        labels: the model's label names in output order.

    Returns:
        ``{label: "#rrggbb"}`` for every label.
    """
    colors = {k: LABEL_COLORS[k] for k in labels if k in LABEL_COLORS}
    others = [k for k in labels if k not in colors]
    colors.update({k: EXTRA_COLORS[i % len(EXTRA_COLORS)] for i, k in enumerate(others)})
    return colors


def label_color(label: str, labels: Sequence[str] | None = None) -> str:
    """Hex colour of ``label`` among the model's ``labels`` (:func:`label_colors`); without
    ``labels``, a FER+ label's own colour or the first of :data:`EXTRA_COLORS`."""
    return label_colors(labels if labels is not None and label in labels else [label])[label]

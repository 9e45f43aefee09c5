"""The FER+ label set: the one place the project names its classes.

Source: Barsoum et al., "Training Deep Networks for Facial Expression Recognition with
Crowd-Sourced Label Distribution", ICMI 2016 (arXiv:1608.01041), and microsoft/FERPlus.
"""

from __future__ import annotations

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


def label_color(label: str) -> str:
    """Hex colour used for ``label`` (a fixed grey-blue for labels outside FER+)."""
    return LABEL_COLORS.get(label, "#4c72b0")

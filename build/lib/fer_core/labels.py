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

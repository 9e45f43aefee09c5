"""What monitoring needs of a model, as a :class:`typing.Protocol`, and the rules its labels must follow.

Monitoring never imports the web app: the app hands the REST routes and its tab an object with
the :class:`Predictor` attributes (its ``ServicePredictor`` wraps the app's model service), so any
model exported by ``fer_train`` (any label list, e.g. 3, 7 or the 8 FER+ labels) works.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from PIL import Image

from fer_core.result import FaceResult

#: Most labels a monitored model may have (each stored second holds one probability per label).
MAX_MODEL_LABELS = 64
#: Longest label name, characters (the ``aggregates.label`` column).
MAX_LABEL_NAME = 64
#: Columns of the timeline CSV before the per-label ones: a label may not take one of these names.
CSV_COLUMNS: tuple[str, ...] = ("start_s", "face_id", "n_frames", "faces", "label")


@runtime_checkable
class Predictor(Protocol):
    """A loaded model as monitoring uses it (the REST frames route and the app's tab).

    Attributes:
        labels: the model's label names in probability order (2..:data:`MAX_MODEL_LABELS`
            distinct names: :func:`check_labels`); a session stores them when it starts.
        model_id: what was loaded (Hub repo id or folder), recorded with each session.
        model_revision: the resolved Hub commit, or ``None`` (a local folder).
    """

    @property
    def labels(self) -> list[str]: ...

    @property
    def model_id(self) -> str: ...

    @property
    def model_revision(self) -> str | None: ...

    def predict(self, image: Any) -> tuple[Image.Image, list[FaceResult]]:
        """Find and classify the faces of one image with the model's default options.

        Args:
            image: encoded bytes or a decoded array/PIL image (a webcam frame).

        Returns:
            The oriented RGB image and its faces, whose ``probs`` are keyed by :attr:`labels`.

        Raises:
            fer_core.FERError: the image is unusable (answered 400 by the REST route).
            Exception: with an int attribute ``retry_after_s`` when the server is too busy
                (answered 503 with ``Retry-After``).
        """
        ...


def check_labels(labels: Sequence[str]) -> list[str]:
    """A model's labels as monitoring stores them, checked.

    Returns:
        ``list(labels)``.

    Raises:
        ValueError: fewer than 2 or more than :data:`MAX_MODEL_LABELS` labels, repeated ones,
            one that is not a non-empty string of at most :data:`MAX_LABEL_NAME` printable
            characters, names a fixed CSV column (:data:`CSV_COLUMNS`), or starts like a
            spreadsheet formula (``= + - @``).
    """
    out = list(labels)
    if not 2 <= len(out) <= MAX_MODEL_LABELS or len(set(out)) != len(out):
        raise ValueError(f"a monitored model needs 2 to {MAX_MODEL_LABELS} distinct labels, got {len(out)} "
                         f"({len(set(out))} distinct)")
    for label in out:
        if not (isinstance(label, str) and 0 < len(label) <= MAX_LABEL_NAME and label.isprintable()):
            raise ValueError(f"a label must be 1 to {MAX_LABEL_NAME} printable characters, got {label!r:.80}")
        if label in CSV_COLUMNS or label.startswith(("=", "+", "-", "@")):
            raise ValueError(f"the label {label!r} cannot be a CSV column (a fixed column's name, or a formula)")
    return out

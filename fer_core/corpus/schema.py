"""The columns of a corpus job's output (``OUT_DIR/faces/`` and ``OUT_DIR/errors.parquet``) as pyarrow
schemas; docs/corpus.md describes them for readers.

One row of ``faces/`` is one face in one image, or one tracked face in one analysed frame of a video.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

#: Bumped when the columns or their meaning change; part of the options hash, so an output folder of
#: another schema version is never mixed with this one's rows.
SCHEMA_VERSION: int = 1

#: Columns before the per-label probability columns: name -> pyarrow type.
BASE_FIELDS: tuple[tuple[str, pa.DataType], ...] = (
    ("path", pa.string()),        # absolute path of the input file
    ("sha256", pa.string()),      # hex SHA-256 of the file's bytes
    ("media", pa.string()),       # "image" or "video"
    ("frame", pa.int64()),        # video: frame index (0-based); image: 0
    ("time_s", pa.float64()),     # video: frame time, seconds; image: 0.0
    ("face_id", pa.int64()),      # video: tracker id (from 1, stable over the clip); image: 1.. in reading order
    ("x1", pa.float64()), ("y1", pa.float64()), ("x2", pa.float64()), ("y2", pa.float64()),  # box, pixels
    ("score", pa.float64()),      # MTCNN detection probability, 0..1
    ("label", pa.string()),       # argmax of the label columns
)
#: Columns after the probability columns: the model that produced the row.
MODEL_FIELDS: tuple[tuple[str, pa.DataType], ...] = (("model", pa.string()), ("revision", pa.string()))

#: ``OUT_DIR/errors.parquet``: one row per input that failed (or, for a damaged video, that kept only
#: the frames before the damage).
ERRORS_SCHEMA: pa.Schema = pa.schema([
    ("path", pa.string()),
    ("sha256", pa.string()),      # null when the file could not be read at all
    ("error_type", pa.string()),  # e.g. "InvalidImageError", "InvalidVideoError", "FileNotFoundError"
    ("reason", pa.string()),      # the human-readable reason
])


def label_columns(labels: Sequence[str]) -> list[str]:
    """The probability columns for ``labels``: first ``<label>`` for each (for videos the smoothed
    probability), then ``raw_<label>`` for each (the frame's own, unsmoothed probability; for images
    equal to ``<label>``)."""
    return [*labels, *(f"raw_{k}" for k in labels)]


def faces_schema(labels: Sequence[str]) -> pa.Schema:
    """The pyarrow schema of ``OUT_DIR/faces/`` for a model with ``labels`` (in output order).

    Returns:
        :data:`BASE_FIELDS`, then one float32 column per entry of :func:`label_columns` (probabilities,
        0..1, each group summing to 1 per row), then :data:`MODEL_FIELDS`.
    """
    return pa.schema([*BASE_FIELDS, *((name, pa.float32()) for name in label_columns(labels)), *MODEL_FIELDS])

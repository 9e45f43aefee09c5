"""Per-face expression timelines: tracked faces over time, as a table, a summary, a plot, CSV, JSON.

A :class:`Timeline` is filled one analysed frame at a time (by
:func:`fer_core.video_analysis.analyze_video` for a file, by the app's live tab for a webcam) and
holds no pixels, only numbers: never a face image.
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InvalidArgumentError
from .result import FaceResult

#: Row columns before the per-label probability columns (see :meth:`Timeline.to_dataframe`).
BASE_COLUMNS: tuple[str, ...] = ("frame", "time_s", "face_id", "x1", "y1", "x2", "y2", "score", "label")


@dataclass(frozen=True)
class TimelineRow:
    """One tracked face in one analysed frame.

    Attributes:
        frame: the frame's index in the video (0-based) or the stream's frame counter.
        time_s: the frame's time, seconds from the start.
        face_id: the tracker's stable identity (from 1).
        box: ``(x1, y1, x2, y2)`` float pixels.
        score: detection probability, 0..1.
        label: argmax of the smoothed probabilities.
        probs: float32 ``(num_classes,)`` smoothed probabilities (sum 1), in the labels' order.
        raw_probs: float32 ``(num_classes,)`` this frame's own probabilities, before smoothing.
    """

    frame: int
    time_s: float
    face_id: int
    box: tuple[float, float, float, float]
    score: float
    label: str
    probs: np.ndarray
    raw_probs: np.ndarray

    def to_face(self, labels: Sequence[str]) -> FaceResult:
        """This row as a :class:`FaceResult` (smoothed probabilities; landmarks are not kept: zeros)."""
        return FaceResult(self.box, self.score, np.zeros((5, 2), np.float32),
                          {k: float(v) for k, v in zip(labels, self.probs)}, self.label, self.face_id)


class Timeline:
    """Tracked faces over time.

    Args:
        labels: label names in probability order.
        window_s: keep only the last ``window_s`` seconds (a live stream); ``None`` keeps all.
        frame_period_s: nominal seconds per analysed frame, used as the last frame's duration
            (``None``: the median gap between frames).
    """

    def __init__(self, labels: Sequence[str], *, window_s: float | None = None,
                 frame_period_s: float | None = None) -> None:
        if window_s is not None and not window_s > 0:
            raise InvalidArgumentError(f"window_s must be > 0 seconds, got {window_s}")
        self.labels = list(labels)
        self.window_s = window_s
        self.frame_period_s = frame_period_s
        self.frames: deque[tuple[int, float]] = deque()  # (frame, time_s) of every analysed frame
        self.rows: deque[TimelineRow] = deque()

    def add(self, frame: int, time_s: float, faces: Sequence[FaceResult],
            raw: Sequence[FaceResult] | None = None) -> None:
        """Record one analysed frame.

        Args:
            frame: frame index; time_s: its time in seconds (not earlier than the previous one).
            faces: the frame's tracked faces (``face_id`` set, smoothed ``probs``), possibly empty.
            raw: the same faces before smoothing, same order; ``None`` if not kept.

        Raises:
            InvalidArgumentError: a face has no ``face_id`` or ``raw`` has another length.
        """
        if raw is not None and len(raw) != len(faces):
            raise InvalidArgumentError(f"{len(faces)} faces but {len(raw)} raw results")
        if any(face.face_id is None for face in faces):
            raise InvalidArgumentError("faces must be tracked (face_id set): use fer_core.track.FaceTracker")
        self.frames.append((int(frame), float(time_s)))
        for i, face in enumerate(faces):
            probs = np.array([face.probs[k] for k in self.labels], dtype=np.float32)
            raw_probs = probs if raw is None else np.array([raw[i].probs[k] for k in self.labels], np.float32)
            self.rows.append(TimelineRow(int(frame), float(time_s), face.face_id, tuple(map(float, face.box)),
                                         float(face.score), face.label, probs, raw_probs))
        if self.window_s is not None:
            oldest = float(time_s) - self.window_s
            while self.frames and self.frames[0][1] < oldest:
                self.frames.popleft()
            while self.rows and self.rows[0].time_s < oldest:
                self.rows.popleft()

    @property
    def face_ids(self) -> list[int]:
        """The ids of the faces seen, ascending."""
        return sorted({r.face_id for r in self.rows})

    def to_dataframe(self, raw: bool = True):
        """One row per face per analysed frame (``pandas.DataFrame``).

        Columns: ``frame, time_s, face_id, x1, y1, x2, y2, score, label``, then one column per
        label with the smoothed probability (0..1), then, with ``raw``, ``raw_<label>`` columns with
        the frame's unsmoothed probabilities. Frames without a face have no row.
        """
        import pandas as pd

        columns = [*BASE_COLUMNS, *self.labels, *([f"raw_{k}" for k in self.labels] if raw else [])]
        records = [
            [r.frame, round(r.time_s, 6), r.face_id, *r.box, r.score, r.label, *r.probs.tolist(),
             *(r.raw_probs.tolist() if raw else [])]
            for r in self.rows
        ]
        df = pd.DataFrame.from_records(records, columns=columns)
        return df.astype({"frame": "int64", "face_id": "int64"}) if len(df) else df

    def faces_per_frame(self) -> list[tuple[int, float, int]]:
        """``(frame, time_s, number of faces)`` for every analysed frame, in time order."""
        counts: dict[int, int] = {}
        for r in self.rows:
            counts[r.frame] = counts.get(r.frame, 0) + 1
        return [(f, t, counts.get(f, 0)) for f, t in self.frames]

    def durations(self) -> dict[int, float]:
        """Seconds each analysed frame stands for: the gap to the next frame (at most 3x the
        typical gap, so a stalled stream does not count), the last one the nominal period."""
        times = np.array([t for _, t in self.frames], dtype=np.float64)
        gaps = np.diff(times)
        typical = self.frame_period_s or (float(np.median(gaps)) if len(gaps) else 0.0)
        dur = np.minimum(gaps, 3 * typical) if typical > 0 else gaps
        return {f: float(d) for (f, _), d in zip(self.frames, [*dur.tolist(), typical])}

    def summary(self) -> list[dict[str, Any]]:
        """Per face: how long it was visible and the share of that time under each expression.

        Returns:
            One dict per face id, ascending: ``face_id``, ``first_s``, ``last_s``,
            ``seconds_visible`` (sum of the durations of the frames it is in), ``frames``,
            ``dominant`` (label with the largest share), ``shares`` (label -> fraction of its visible
            time whose smoothed label was that one; sums to 1) and ``mean_probs`` (label -> mean
            smoothed probability).
        """
        durations = self.durations()
        out = []
        for face_id in self.face_ids:
            rows = [r for r in self.rows if r.face_id == face_id]
            weights = np.array([durations.get(r.frame, 0.0) for r in rows])
            if weights.sum() <= 0:
                weights = np.ones(len(rows))
            shares = dict.fromkeys(self.labels, 0.0)
            for r, w in zip(rows, weights):
                shares[r.label] += float(w)
            total = sum(shares.values())
            shares = {k: v / total for k, v in shares.items()}
            mean = np.average(np.stack([r.probs for r in rows]), axis=0, weights=weights)
            out.append({
                "face_id": face_id,
                "first_s": round(rows[0].time_s, 3),
                "last_s": round(rows[-1].time_s, 3),
                "seconds_visible": round(float(weights.sum()) if durations else 0.0, 3),
                "frames": len(rows),
                "dominant": max(shares, key=shares.get),
                "shares": {k: round(v, 4) for k, v in shares.items()},
                "mean_probs": {k: round(float(v), 4) for k, v in zip(self.labels, mean)},
            })
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable: ``labels``, ``summary`` and ``rows`` (one dict per face per frame,
        smoothed ``probs`` and unsmoothed ``raw_probs`` as label -> probability)."""
        return {
            "labels": self.labels,
            "frames_analyzed": len(self.frames),
            "summary": self.summary(),
            "rows": [self._row_dict(r) for r in self.rows],
        }

    def _row_dict(self, r: TimelineRow) -> dict[str, Any]:
        return {
            "frame": r.frame, "time_s": round(r.time_s, 6), "face_id": r.face_id,
            "box": [round(v, 2) for v in r.box], "score": round(r.score, 5), "label": r.label,
            "probs": {k: round(float(v), 6) for k, v in zip(self.labels, r.probs)},
            "raw_probs": {k: round(float(v), 6) for k, v in zip(self.labels, r.raw_probs)},
        }

    def to_csv(self, path: str | os.PathLike, raw: bool = True) -> None:
        """Write :meth:`to_dataframe` as CSV (UTF-8, header row, no index)."""
        self.to_dataframe(raw=raw).to_csv(path, index=False, float_format="%.6g")

    def to_json(self, path: str | os.PathLike) -> None:
        """Write :meth:`to_dict` as indented JSON."""
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(self.to_dict(), fh, indent=1)

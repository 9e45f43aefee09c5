"""Frames of tracked faces -> one row per second per face, written as soon as a second is complete."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

#: The least sum of one face's probabilities in one frame (the model's always sum to 1; a client's JSON may
#: not): below it, a second's mean can underflow to zero and its renormalisation to NaN.
MIN_PROB_SUM: float = 1e-6


@dataclass
class SecondRow:
    """One completed second of one tracked face.

    Attributes:
        second: whole seconds since the session started (``floor(time_s)``).
        face_id: the tracker's id.
        n_frames: frames the face was seen in during that second.
        faces: the most faces seen in one frame of that second.
        probs: float64 ``(L,)`` mean probabilities in the aggregator's label order, summing to 1.
        label: the argmax label.
    """

    second: int
    face_id: int
    n_frames: int
    faces: int
    probs: np.ndarray
    label: str


@dataclass
class SecondAggregator:
    """Accumulate per-frame face probabilities and hand out each second once it is complete
    (a frame of a later second has arrived) or at :meth:`flush`.

    Frames must come in time order (``time_s`` non-decreasing), as they do from a live session.

    Attributes:
        labels: the label names (``L`` of them) in the order of every ``probs`` given and returned.
    """

    labels: Sequence[str]
    _sums: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)
    _counts: dict[tuple[int, int], int] = field(default_factory=dict)
    _faces: dict[int, int] = field(default_factory=dict)
    _current: int | None = None

    def add(self, time_s: float, faces: Sequence[tuple[int, Sequence[float]]]) -> list[SecondRow]:
        """Feed one frame: ``faces`` = ``(face_id, probs)`` pairs (``L`` probabilities in
        :attr:`labels` order each).

        Returns:
            The rows of the seconds this frame completes (possibly empty).

        Raises:
            ValueError: ``time_s`` negative, not finite, or earlier than an already completed
                second; or a face's probabilities are not ``L`` finite numbers >= 0 summing to at least
                :data:`MIN_PROB_SUM`.
        """
        second, arrays = self._check(time_s, faces, self._current)
        done = self._complete(before=second)
        self._current = second
        self._faces[second] = max(self._faces.get(second, 0), len(faces))
        for (face_id, _), probs in zip(faces, arrays):
            key = (second, int(face_id))
            self._sums[key] = self._sums.get(key, 0) + probs
            self._counts[key] = self._counts.get(key, 0) + 1
        return done

    def add_frames(self, frames: Sequence[tuple[float, Sequence[tuple[int, Sequence[float]]]]]) -> list[SecondRow]:
        """Feed several frames (``(time_s, faces)`` as in :meth:`add`), all or none: every frame is
        checked before any is added, so a refused batch leaves the open seconds as they were.

        Returns:
            The rows of the seconds these frames complete.

        Raises:
            ValueError: as :meth:`add`, for any frame of the batch.
        """
        current = self._current
        for time_s, faces in frames:
            current = self._check(time_s, faces, current)[0]
        return [row for time_s, faces in frames for row in self.add(time_s, faces)]

    def _check(self, time_s: float, faces: Sequence[tuple[int, Sequence[float]]],
               current: int | None) -> tuple[int, list[np.ndarray]]:
        """A frame's second and its faces' probabilities as arrays, checked against the open
        second ``current`` (see :meth:`add` for the errors)."""
        if not (math.isfinite(time_s) and time_s >= 0):
            raise ValueError(f"time_s must be a finite number >= 0, got {time_s}")
        arrays = [np.asarray(probs, dtype=np.float64) for _, probs in faces]
        if any(a.shape != (len(self.labels),) for a in arrays):
            raise ValueError(f"each face needs {len(self.labels)} probabilities, in the order {list(self.labels)}")
        # a second's mean is renormalised to sum to 1: rows of subnormal numbers (5e-324) would average to 0
        # and store NaN, which no later read could parse
        if any(not (np.isfinite(a).all() and (a >= 0).all() and a.sum() >= MIN_PROB_SUM) for a in arrays):
            raise ValueError(f"each face's probabilities must be finite, >= 0 and sum to at least {MIN_PROB_SUM:g}")
        second = int(time_s)
        if current is not None and second < current:
            raise ValueError(f"frames must come in time order: {time_s} s after second {current}")
        return second, arrays

    def flush(self) -> list[SecondRow]:
        """The rows of every second still open (at the end of a session)."""
        return self._complete(before=None)

    def _complete(self, before: int | None) -> list[SecondRow]:
        keys = sorted(k for k in self._sums if before is None or k[0] < before)
        rows = []
        for key in keys:
            mean = self._sums.pop(key) / self._counts[key]
            mean = mean / mean.sum()
            rows.append(SecondRow(key[0], key[1], self._counts.pop(key), self._faces.get(key[0], 0), mean,
                                  self.labels[int(mean.argmax())]))
        for second in [s for s in self._faces if before is None or s < before]:
            del self._faces[second]
        return rows

"""One monitoring session receiving frames: the tracker, the open seconds, and the writes.

Used by the REST routes and the app's Monitoring tab alike, so both store exactly the same rows.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from fer_core.labels import LABELS
from fer_core.result import FaceResult
from fer_core.track import FaceTracker

from . import store
from .aggregate import SecondAggregator


@dataclass
class LiveSession:
    """In-memory state of a session that is receiving frames (lost on a crash: at most the open
    second, since every completed second is committed at once).

    Attributes:
        session_id: the ``sessions`` row.
        tracker: gives the faces of image frames their ``face_id``.
        aggregator: the seconds still open.
    """

    session_id: int
    tracker: FaceTracker = field(default_factory=lambda: FaceTracker(list(LABELS)))
    aggregator: SecondAggregator = field(default_factory=SecondAggregator)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_faces(self, db: Session, time_s: float, faces: Sequence[FaceResult]) -> tuple[list[FaceResult], int]:
        """Track one image frame's faces (raw per-frame probabilities) and commit the seconds it completes.

        Returns:
            The tracked faces (``face_id`` set, smoothed probabilities) and the number of rows written.

        Raises:
            ValueError: ``time_s`` goes back before a completed second.
        """
        with self.lock:
            tracked = self.tracker.update(faces, time_s)
            rows = self.aggregator.add(time_s, [(t.face_id, [f.probs[k] for k in LABELS])
                                                for t, f in zip(tracked, faces)])
        return tracked, self._write(db, rows)

    def add_results(self, db: Session, frames: Sequence[tuple[float, Sequence[tuple[int, Sequence[float]]]]]) -> int:
        """Add frames of results tracked by the client: ``(time_s, [(face_id, probs in label order)])``.

        Returns:
            Rows written. Raises: ValueError: a frame out of time order.
        """
        rows: list[Any] = []
        with self.lock:
            for time_s, faces in frames:
                rows += self.aggregator.add(time_s, faces)
        return self._write(db, rows)

    def finish(self, db: Session) -> int:
        """Write the seconds still open (at the end of the session); returns rows written."""
        with self.lock:
            rows = self.aggregator.flush()
        return self._write(db, rows)

    def _write(self, db: Session, rows: list[Any]) -> int:
        if rows:
            store.write_rows(db, self.session_id, rows)
            db.commit()
        return len(rows)

"""One monitoring session receiving frames: the tracker, the open seconds, and the writes.

Used by the REST routes and the app's Monitoring tab alike, so both store exactly the same rows,
in the label order the session stored when it started (``sessions.labels``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fer_core.result import FaceResult
from fer_core.track import FaceTracker

from . import store
from .aggregate import SecondAggregator, SecondRow
from .models import MonitoringSession


@dataclass
class LiveSession:
    """In-memory state of a session that is receiving frames (lost on a crash: at most the open
    second, since every completed second is committed at once).

    Attributes:
        session_id: the ``sessions`` row.
        started_at: that row's start (with the id, it names the row even where SQLite reuses ids).
        labels: the row's ``labels`` (keyword only): the order of every probability list here.
        tracker: gives the faces of image frames their ``face_id``.
        aggregator: the seconds still open.
    """

    session_id: int
    started_at: datetime | None = None
    labels: list[str] = field(kw_only=True)
    tracker: FaceTracker = field(init=False)
    aggregator: SecondAggregator = field(init=False)
    lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self.labels = list(self.labels)
        self.tracker = FaceTracker(self.labels)
        self.aggregator = SecondAggregator(self.labels)

    @classmethod
    def of(cls, row: MonitoringSession) -> LiveSession:
        """The live state of a ``sessions`` row (its id, start and labels)."""
        return cls(row.id, row.started_at, labels=row.labels)

    def add_faces(self, db: Session, time_s: float, faces: Sequence[FaceResult]) -> tuple[list[FaceResult], int]:
        """Track one image frame's faces (raw per-frame probabilities, keyed by :attr:`labels`) and
        commit the seconds it completes.

        Returns:
            The tracked faces (``face_id`` set, smoothed probabilities) and the number of rows written.

        Raises:
            ValueError: ``time_s`` goes back before a completed second, a face's ``probs`` are not
                keyed by exactly :attr:`labels` (a model with other labels), or the session is gone
                (:meth:`_write`).
            fer_app.monitoring.store.SessionEndedError: the session has ended (:meth:`_write`).
        """
        if any(set(f.probs) != set(self.labels) for f in faces):
            raise ValueError(f"session {self.session_id} records the labels {self.labels}: these faces are "
                             "of a model with other labels")
        with self.lock:
            tracked = self.tracker.update(faces, time_s)
            rows = self.aggregator.add(time_s, [(t.face_id, [f.probs[k] for k in self.labels])
                                                for t, f in zip(tracked, faces)])
        return tracked, self._write(db, rows)

    def add_results(self, db: Session, frames: Sequence[tuple[float, Sequence[tuple[int, Sequence[float]]]]]) -> int:
        """Add frames of results tracked by the client: ``(time_s, [(face_id, probs)])``, ``probs``
        one number per label in :attr:`labels` order.

        Returns:
            Rows written.

        Raises:
            ValueError: a frame out of time order, probabilities not one per label (then no frame of
                the batch is added), or the session is gone (:meth:`_write`).
            fer_app.monitoring.store.SessionEndedError: the session has ended (:meth:`_write`).
        """
        with self.lock:
            rows = self.aggregator.add_frames(frames)  # all or none: a refused batch changes nothing
        return self._write(db, rows)

    def finish(self, db: Session) -> int:
        """Write the seconds still open (at the end of the session); returns rows written."""
        with self.lock:
            rows = self.aggregator.flush()
        return self._write(db, rows)

    def _write(self, db: Session, rows: list[SecondRow]) -> int:
        """Commit ``rows``; seconds already stored (a restarted server, REST and the tab on one session)
        are skipped.

        Raises:
            ValueError: the session no longer exists (erased meanwhile), or its id now names another
                session (SQLite reuses the id of an erased session), or the row's labels are not
                :attr:`labels`: checked in the writing transaction, so rows never land in another
                subject's (or team's) session, nor in another label order.
            fer_app.monitoring.store.SessionEndedError: the session has ended: no row is stored after
                its end.
        """
        if not rows:
            return 0
        row = db.get(MonitoringSession, self.session_id)
        if row is None or (self.started_at is not None and not store.same_moment(row.started_at, self.started_at)):
            # erased while this frame was on its way; SQLite may have given the id to a new session
            raise ValueError(f"session {self.session_id} no longer exists (erased?)")
        if list(row.labels) != self.labels:
            raise ValueError(f"session {self.session_id} records the labels {row.labels}, not {self.labels}")
        if row.ended_at is not None:  # a frame that was on its way when the session ended
            raise store.SessionEndedError(f"session {self.session_id} has ended")
        try:
            written = store.write_rows(db, self.session_id, rows)
            db.commit()
        except IntegrityError as exc:
            db.rollback()
            raise ValueError(f"session {self.session_id} no longer exists (erased?)") from exc
        return written


class LiveRegistry:
    """The sessions receiving frames through REST, by session id; one per app, shared by the REST
    routes and the tab's erase. Thread-safe.

    An entry is replaced when the row with that id is not the one it was made for (``started_at``
    differs: SQLite reuses the id of an erased session), dropped when its subject is erased or
    the session ends, and forgotten after ``idle_s`` without a frame.

    Args:
        idle_s: seconds without a frame after which an entry is forgotten (its open second lost).
    """

    def __init__(self, idle_s: float = 6 * 3600) -> None:
        self.idle_s = idle_s
        self._entries: dict[int, tuple[LiveSession, float]] = {}
        self._lock = threading.Lock()

    def get(self, row: MonitoringSession) -> LiveSession:
        """The live state of the session ``row`` (named by its id and start), made when missing."""
        now = time.monotonic()
        with self._lock:
            for key in [k for k, (_, used) in self._entries.items() if now - used > self.idle_s]:
                del self._entries[key]
            found = self._entries.get(row.id)
            live = found[0] if found and store.same_moment(found[0].started_at, row.started_at) else \
                LiveSession.of(row)
            self._entries[row.id] = (live, now)
            return live

    def pop(self, session_id: int) -> LiveSession | None:
        """Remove and return a session's live state (at its end)."""
        with self._lock:
            found = self._entries.pop(session_id, None)
        return found[0] if found else None

    def forget(self, session_ids: Iterable[int]) -> None:
        """Drop the live state of these sessions (their subject was erased)."""
        with self._lock:
            for session_id in session_ids:
                self._entries.pop(session_id, None)

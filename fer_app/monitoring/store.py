"""Every query of the monitoring part, through the SQLAlchemy ORM (so every value is a bound
parameter, never pasted into SQL). Functions take an ORM ``Session`` and a team id: a row of
another team is treated as absent. Session start/end, erasure and the CSV export live here once,
for the REST routes and the app's tab alike (the tab's CSV link is the REST route).

Probabilities are stored per session label: ``sessions.labels`` is the model's label list (JSON),
fixed at the start, and each ``aggregates.probs`` a JSON list in that order. The timeline (JSON
and CSV) has one probability per label of the session, in that order."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import ObjectDeletedError

from .aggregate import SecondRow
from .models import ROLES, Aggregate, AuditEvent, MonitoringSession, Subject, Team, User
from .predictor import CSV_COLUMNS, Predictor, check_labels
from .security import check_text, hash_password, normalize_username

#: Timeline resolutions: name -> seconds per bucket.
RESOLUTIONS: dict[str, int] = {"1s": 1, "10s": 10, "1min": 60}
#: Longest subject label, characters.
MAX_LABEL_LENGTH = 200
#: Tries of :func:`scrub` before it gives up.
SCRUB_TRIES = 4
#: Decimals kept of each stored probability (the timeline reports 6).
PROB_DECIMALS = 8

log = logging.getLogger(__name__)


class ScrubError(RuntimeError):
    """Deleted rows are gone from the tables but may still be in the database files' free bytes."""


class NotInTeamError(LookupError):
    """The subject or session does not exist, or belongs to another team (callers answer alike)."""


class SessionEndedError(ValueError):
    """Rows for a session that has ended (a frame on its way at the end): never stored."""


def now() -> datetime:
    """The current time, UTC."""
    return datetime.now(UTC)


def aware(moment: datetime) -> datetime:
    """``moment`` with its time zone: SQLite hands back naive datetimes for timezone-aware columns
    (they are UTC), PostgreSQL aware ones."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def same_moment(a: datetime | None, b: datetime | None) -> bool:
    """Whether two stored timestamps are the same (SQLite hands back naive UTC, PostgreSQL aware)."""
    if a is None or b is None:
        return a is b
    return abs((aware(a) - aware(b)).total_seconds()) < 1e-3


def create_team(db: Session, name: str) -> Team:
    """A new team (deployment)."""
    team = Team(name=name, created_at=now())
    db.add(team)
    db.flush()
    return team


def create_user(db: Session, team_id: int, username: str, password: str, role: str) -> User:
    """A new user of ``team_id`` with a random token key (the caller commits).

    Raises:
        ValueError: unknown role or an invalid username (:func:`~fer_app.monitoring.security.normalize_username`).
        fer_app.monitoring.security.WeakPasswordError: a weak password (a ``ValueError`` too).
        sqlalchemy.exc.IntegrityError: the normalised username is taken (in any team).
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    name = normalize_username(username)
    user = User(team_id=team_id, username=name, password_hash=hash_password(password, name), role=role,
                created_at=now(), key=secrets.token_hex(16), active=True, token_version=0)
    db.add(user)
    db.flush()
    return user


def get_user(db: Session, team_id: int, user_id: int) -> User | None:
    """The user, if it exists and belongs to ``team_id``."""
    return db.scalar(select(User).where(User.id == user_id, User.team_id == team_id))


def disable_user(user: User) -> None:
    """Disable ``user`` and revoke every token issued to it (the caller commits)."""
    user.active = False
    user.token_version += 1


def set_password(user: User, password: str) -> None:
    """Give ``user`` a new password and revoke every token issued before (the caller commits).

    Raises:
        fer_app.monitoring.security.WeakPasswordError: a weak password.
    """
    user.password_hash = hash_password(password, user.username)
    user.token_version += 1


def audit(db: Session, action: str, *, team_id: int | None = None, actor_id: int | None = None,
          subject_id: int | None = None, session_id: int | None = None, target_user_id: int | None = None,
          detail: str | None = None) -> None:
    """Add an audit line (the caller commits). Ids only: never probabilities, labels or images."""
    db.add(AuditEvent(at=now(), action=action, team_id=team_id, actor_id=actor_id, subject_id=subject_id,
                      session_id=session_id, target_user_id=target_user_id, detail=detail))


def list_audit(db: Session, team_id: int, limit: int = 100) -> list[AuditEvent]:
    """The team's newest ``limit`` audit lines, newest first."""
    return list(db.scalars(select(AuditEvent).where(AuditEvent.team_id == team_id)
                           .order_by(AuditEvent.id.desc()).limit(limit)))


def create_subject(db: Session, team_id: int, label: str) -> Subject:
    """A new subject of ``team_id`` with a pseudonymous ``label`` (outer whitespace removed; unique
    within the team: a duplicate raises ``IntegrityError`` at flush).

    Raises:
        ValueError: empty, longer than :data:`MAX_LABEL_LENGTH`, or not storable text.
    """
    label = check_text(label, "label").strip()
    if not label or len(label) > MAX_LABEL_LENGTH:
        raise ValueError(f"the label must have 1 to {MAX_LABEL_LENGTH} characters")
    subject = Subject(team_id=team_id, label=label, created_at=now())
    db.add(subject)
    db.flush()
    return subject


def erase_subject(db: Session, subject: Subject, actor_id: int) -> list[int]:
    """Erase a subject with its sessions and aggregates, commit, and scrub the database files so
    the label and numbers are not left in freed bytes (:func:`scrub`). The audit line keeps the
    subject's id only.

    Returns:
        The ids of the erased sessions. If the scrub fails after its retries, the error is logged
        and an audit line ``scrub_failed`` added (the next erasure's scrub covers these bytes too).
    """
    ids = [s.id for s in list_sessions(db, subject.id)]
    team_id, subject_id = subject.team_id, subject.id
    audit(db, "subject_erase", team_id=team_id, actor_id=actor_id, subject_id=subject_id)
    db.delete(subject)
    db.commit()
    try:
        scrub(db)
    except ScrubError:  # the rows are gone; say loudly that freed bytes may remain until the next scrub
        log.exception("subject %s erased, database files not scrubbed", subject_id)
        audit(db, "scrub_failed", team_id=team_id, actor_id=actor_id, subject_id=subject_id)
        db.commit()
    return ids


def scrub(db: Session) -> None:
    """Overwrite what deleted rows leave behind in the database's files.

    SQLite runs with ``secure_delete`` (freed content is zeroed as it is freed, see
    :func:`fer_app.monitoring.db.make_engine`); here the write-ahead log, which still holds older copies
    of the pages, is checkpointed into the file and truncated. PostgreSQL: ``VACUUM FULL subjects``
    rewrites that table and its indexes without the dead rows (the labels); ``VACUUM`` frees the
    dead session and aggregate rows (numbers) for reuse. PostgreSQL's WAL segments and any backups
    keep old bytes until they are recycled or expire: see README, "Monitoring".

    Raises:
        ScrubError: still not done after :data:`SCRUB_TRIES` tries (the rows are deleted all the same).
    """
    engine = db.get_bind()
    for attempt in range(SCRUB_TRIES):
        try:
            if engine.dialect.name == "sqlite":
                with engine.connect() as connection:
                    busy = connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
                if busy:  # a reader or writer kept the WAL: its old pages are still there
                    raise RuntimeError("the write-ahead log is in use")
            elif engine.dialect.name == "postgresql":
                with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                    connection.execute(text("SET lock_timeout = '10s'"))  # never queue every query behind it
                    connection.execute(text("VACUUM FULL subjects"))
                    connection.execute(text("VACUUM sessions, aggregates"))
            return
        except Exception as exc:  # noqa: BLE001 (retried, then reported)
            if attempt == SCRUB_TRIES - 1:
                raise ScrubError(f"the rows are deleted, but the database files could not be scrubbed: {exc}") \
                    from exc
            time.sleep(0.5 * (attempt + 1))


def start_session(db: Session, user: User, subject_id: int, predictor: Predictor) -> MonitoringSession:
    """Start (and commit, with an audit line) a session of ``subject_id`` by ``user``, recording
    the model's id, revision and label list (the order of every probability the session stores).

    Raises:
        NotInTeamError: no subject ``subject_id`` in the user's team.
        ValueError: the model's labels cannot be recorded (:func:`fer_app.monitoring.predictor.check_labels`).
    """
    if get_subject(db, user.team_id, subject_id) is None:
        raise NotInTeamError(f"no subject {subject_id} in your team")
    labels = check_labels(predictor.labels)
    started = MonitoringSession(subject_id=subject_id, started_by=user.id, started_at=now(),
                                model_id=predictor.model_id, model_revision=predictor.model_revision, labels=labels)
    db.add(started)
    db.flush()
    audit(db, "session_start", team_id=user.team_id, actor_id=user.id, subject_id=subject_id, session_id=started.id)
    db.commit()
    return started


def end_session(db: Session, monitored: MonitoringSession, user: User,
                flush: Callable[[Session], int] | None = None) -> int:
    """End (and commit) a session of ``user``'s team (``monitored``, looked up within it): first
    ``flush`` writes its open seconds (:meth:`fer_app.monitoring.live.LiveSession.finish`; a failure there
    is logged and rolled back, and the session is ended all the same), then ``ended_at`` is set
    once: of concurrent calls one sets it (a conditional update, audited) and the others read it
    back. ``monitored`` is refreshed.

    Returns:
        Rows ``flush`` wrote (0 without one or when it failed).

    Raises:
        NotInTeamError: the session was erased meanwhile (also when SQLite has given its id to a
            new session since: the row's team, subject and start must still be ``monitored``'s).
    """
    session_id, subject_id, started, written = monitored.id, monitored.subject_id, monitored.started_at, 0
    if flush is not None:
        try:
            written = flush(db)
        except Exception:  # the end must be recorded whatever happened to the last second
            log.exception("session %s: the last seconds could not be written", session_id)
            db.rollback()
    row = db.execute(select(MonitoringSession.subject_id, MonitoringSession.started_at).join(Subject)
                     .where(MonitoringSession.id == session_id, Subject.team_id == user.team_id)).first()
    if row is None or row.subject_id != subject_id or not same_moment(row.started_at, started):
        db.rollback()
        raise NotInTeamError(f"no session {session_id} in your team")
    done = db.execute(update(MonitoringSession).where(MonitoringSession.id == session_id,
                                                      MonitoringSession.subject_id == subject_id,
                                                      MonitoringSession.ended_at.is_(None))
                      .values(ended_at=now()).execution_options(synchronize_session=False))
    if done.rowcount:
        audit(db, "session_end", team_id=user.team_id, actor_id=user.id, subject_id=subject_id,
              session_id=session_id)
    db.commit()
    try:
        db.refresh(monitored)
    except ObjectDeletedError as exc:
        raise NotInTeamError(f"no session {session_id} in your team") from exc
    return written


def get_subject(db: Session, team_id: int, subject_id: int) -> Subject | None:
    """The subject, if it exists and belongs to ``team_id``."""
    return db.scalar(select(Subject).where(Subject.id == subject_id, Subject.team_id == team_id))


def list_subjects(db: Session, team_id: int) -> list[Subject]:
    """The team's subjects, oldest first."""
    return list(db.scalars(select(Subject).where(Subject.team_id == team_id).order_by(Subject.id)))


def get_session(db: Session, team_id: int, session_id: int) -> MonitoringSession | None:
    """The session, if it exists and its subject belongs to ``team_id``."""
    return db.scalar(select(MonitoringSession).join(Subject).where(MonitoringSession.id == session_id,
                                                                   Subject.team_id == team_id))


def list_sessions(db: Session, subject_id: int) -> list[MonitoringSession]:
    """A subject's sessions, oldest first."""
    return list(db.scalars(select(MonitoringSession).where(MonitoringSession.subject_id == subject_id)
                           .order_by(MonitoringSession.id)))


def write_rows(db: Session, session_id: int, rows: list[SecondRow]) -> int:
    """Add completed seconds to a session (each row's ``probs`` in the session's label order,
    stored rounded to :data:`PROB_DECIMALS`), skipping seconds of a face already stored (the caller
    commits); returns the rows added."""
    if not rows:
        return 0
    stored = {(second, face) for second, face in db.execute(select(Aggregate.second, Aggregate.face_id).where(
        Aggregate.session_id == session_id, Aggregate.second >= min(r.second for r in rows),
        Aggregate.second <= max(r.second for r in rows)))}
    added = 0
    for r in rows:
        if (r.second, r.face_id) in stored:
            continue
        db.add(Aggregate(session_id=session_id, second=r.second, face_id=r.face_id, n_frames=r.n_frames,
                         faces=r.faces, label=r.label, probs=[round(float(p), PROB_DECIMALS) for p in r.probs]))
        added += 1
    return added


def timeline_csv(rows: list[dict[str, Any]], labels: Sequence[str]) -> str:
    """:func:`timeline` rows as CSV text: ``start_s, face_id, n_frames, faces, label`` and one
    column per label of the session, in its order (the columns :func:`export_csv` serves)."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([*CSV_COLUMNS, *labels])
    for r in rows:
        writer.writerow([r["start_s"], r["face_id"], r["n_frames"], r["faces"], r["label"],
                         *[r["probs"][k] for k in labels]])
    return buf.getvalue()


def export_csv(db: Session, monitored: MonitoringSession, user: User, resolution: str) -> str:
    """A session's timeline at ``resolution`` as CSV text (:func:`timeline_csv`), made in memory
    and audited as ``export`` by ``user`` (committed); ``monitored`` must have been looked up
    within the user's team. The one export path: the REST download, which the tab's link calls.

    Raises:
        ValueError: unknown resolution.
    """
    out = timeline_csv(timeline(db, monitored, resolution), monitored.labels)
    audit(db, "export", team_id=user.team_id, actor_id=user.id, subject_id=monitored.subject_id,
          session_id=monitored.id)
    db.commit()
    return out


def timeline(db: Session, monitored: MonitoringSession, resolution: str) -> list[dict[str, Any]]:
    """A session's rows at ``resolution`` (``1s``, ``10s``, ``1min``): per bucket and face, the
    frame-weighted mean probabilities (``probs``: the session's label -> probability, 6
    decimals), their argmax ``label``, ``n_frames`` and the most ``faces`` in a frame; ordered by
    ``start_s`` (seconds since the start), then ``face_id``.

    Raises:
        ValueError: unknown resolution.
    """
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {', '.join(RESOLUTIONS)}, got {resolution!r}")
    labels = list(monitored.labels)
    step = RESOLUTIONS[resolution]
    bucket = (Aggregate.second // step) * step
    weighted = [func.sum(Aggregate.probs[i].as_float() * Aggregate.n_frames) for i in range(len(labels))]
    query = (select(bucket.label("start_s"), Aggregate.face_id, func.sum(Aggregate.n_frames), func.max(Aggregate.faces),
                    *weighted)
             .where(Aggregate.session_id == monitored.id).group_by(bucket, Aggregate.face_id)
             .order_by(bucket, Aggregate.face_id))
    out = []
    for start, face_id, n_frames, faces, *sums in db.execute(query):
        total = sum(sums) or 1.0
        probs = {label: round(float(s) / total, 6) for label, s in zip(labels, sums)}
        out.append({"start_s": int(start), "face_id": int(face_id), "n_frames": int(n_frames), "faces": int(faces),
                    "label": max(probs, key=probs.get), "probs": probs})
    return out

"""Every query of the monitoring part, through the SQLAlchemy ORM (so every value is a bound
parameter, never pasted into SQL). Functions take an ORM ``Session`` and a team id: a row of
another team is treated as absent. Session start/end, erasure and the CSV text live here once,
for the REST routes and the app's tab alike."""

from __future__ import annotations

import logging
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from fer_core.labels import LABELS

from .aggregate import SecondRow
from .models import PROB_COLUMNS, ROLES, Aggregate, AuditEvent, MonitoringSession, Subject, Team, User
from .security import check_text, hash_password, normalize_username

#: Timeline resolutions: name -> seconds per bucket.
RESOLUTIONS: dict[str, int] = {"1s": 1, "10s": 10, "1min": 60}
#: Longest subject label, characters.
MAX_LABEL_LENGTH = 200
#: Tries of :func:`scrub` before it gives up.
SCRUB_TRIES = 4


class ScrubError(RuntimeError):
    """Deleted rows are gone from the tables but may still be in the database files' free bytes."""


def now() -> datetime:
    """The current time, UTC."""
    return datetime.now(UTC)


def aware(moment: datetime) -> datetime:
    """``moment`` with its time zone: SQLite hands back naive datetimes for timezone-aware columns
    (they are UTC), PostgreSQL aware ones."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def create_team(db: Session, name: str) -> Team:
    """A new team (deployment)."""
    team = Team(name=name, created_at=now())
    db.add(team)
    db.flush()
    return team


def create_user(db: Session, team_id: int, username: str, password: str, role: str) -> User:
    """A new user of ``team_id`` with a random token key (the caller commits).

    Raises:
        ValueError: unknown role or an invalid username (:func:`~monitoring.security.normalize_username`).
        monitoring.security.WeakPasswordError: a weak password (a ``ValueError`` too).
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
        monitoring.security.WeakPasswordError: a weak password.
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
        logging.getLogger(__name__).exception("subject %s erased, database files not scrubbed", subject_id)
        audit(db, "scrub_failed", team_id=team_id, actor_id=actor_id, subject_id=subject_id)
        db.commit()
    return ids


def scrub(db: Session) -> None:
    """Overwrite what deleted rows leave behind in the database's files.

    SQLite runs with ``secure_delete`` (freed content is zeroed as it is freed, see
    :func:`monitoring.db.make_engine`); here the write-ahead log, which still holds older copies
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


def start_session(db: Session, subject_id: int, user_id: int, team_id: int, model_id: str,
                  model_revision: str | None) -> MonitoringSession:
    """Start (and commit) a session of ``subject_id`` by ``user_id``, recording the model's id and revision."""
    started = MonitoringSession(subject_id=subject_id, started_by=user_id, started_at=now(), model_id=model_id,
                                model_revision=model_revision)
    db.add(started)
    db.flush()
    audit(db, "session_start", team_id=team_id, actor_id=user_id, subject_id=subject_id, session_id=started.id)
    db.commit()
    return started


def end_session(db: Session, monitored: MonitoringSession, user_id: int, team_id: int) -> None:
    """Mark (and commit) a session as ended, once: of concurrent calls one sets ``ended_at`` (a
    conditional update) and the others read it back."""
    from sqlalchemy import update

    done = db.execute(update(MonitoringSession).where(MonitoringSession.id == monitored.id,
                                                      MonitoringSession.ended_at.is_(None))
                      .values(ended_at=now()).execution_options(synchronize_session=False))
    if done.rowcount:
        audit(db, "session_end", team_id=team_id, actor_id=user_id, subject_id=monitored.subject_id,
              session_id=monitored.id)
    db.commit()
    db.refresh(monitored)


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
    """Add completed seconds to a session, skipping seconds of a face already stored (the caller
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
                         faces=r.faces, label=r.label, **{c: float(p) for c, p in zip(PROB_COLUMNS, r.probs)}))
        added += 1
    return added


def timeline_csv(rows: list[dict[str, Any]]) -> str:
    """:func:`timeline` rows as CSV text: ``start_s, face_id, n_frames, faces, label`` and one
    column per label (what the REST download serves, to the tab's link too)."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["start_s", "face_id", "n_frames", "faces", "label", *LABELS])
    for r in rows:
        writer.writerow([r["start_s"], r["face_id"], r["n_frames"], r["faces"], r["label"],
                         *[r["probs"][k] for k in LABELS]])
    return buf.getvalue()


def timeline(db: Session, session_id: int, resolution: str) -> list[dict[str, Any]]:
    """A session's rows at ``resolution`` (``1s``, ``10s``, ``1min``): per bucket and face, the
    frame-weighted mean probabilities, their argmax label, frames and the most faces in a frame.

    Raises:
        ValueError: unknown resolution.
    """
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {', '.join(RESOLUTIONS)}, got {resolution!r}")
    step = RESOLUTIONS[resolution]
    bucket = (Aggregate.second // step) * step
    weighted = [func.sum(getattr(Aggregate, c) * Aggregate.n_frames) for c in PROB_COLUMNS]
    query = (select(bucket.label("start_s"), Aggregate.face_id, func.sum(Aggregate.n_frames), func.max(Aggregate.faces),
                    *weighted)
             .where(Aggregate.session_id == session_id).group_by(bucket, Aggregate.face_id)
             .order_by(bucket, Aggregate.face_id))
    out = []
    for start, face_id, n_frames, faces, *sums in db.execute(query):
        total = sum(sums) or 1.0
        probs = {label: round(float(s) / total, 6) for label, s in zip(LABELS, sums)}
        out.append({"start_s": int(start), "face_id": int(face_id), "n_frames": int(n_frames), "faces": int(faces),
                    "label": max(probs, key=probs.get), "probs": probs})
    return out

"""Every query of the monitoring part, through the SQLAlchemy ORM (so every value is a bound
parameter, never pasted into SQL). Functions take an ORM ``Session`` and a team id: a row of
another team is treated as absent."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fer_core.labels import LABELS

from .aggregate import SecondRow
from .models import PROB_COLUMNS, ROLES, Aggregate, MonitoringSession, Subject, Team, User
from .security import hash_password, verify_password

#: Timeline resolutions: name -> seconds per bucket.
RESOLUTIONS: dict[str, int] = {"1s": 1, "10s": 10, "1min": 60}


def now() -> datetime:
    """The current time, UTC."""
    return datetime.now(UTC)


def create_team(db: Session, name: str) -> Team:
    """A new team (deployment)."""
    team = Team(name=name, created_at=now())
    db.add(team)
    db.flush()
    return team


def create_user(db: Session, team_id: int, username: str, password: str, role: str) -> User:
    """A new user of ``team_id``.

    Raises:
        ValueError: unknown role, empty username, or a password under 10 characters.
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if not username.strip():
        raise ValueError("username must not be empty")
    user = User(team_id=team_id, username=username, password_hash=hash_password(password), role=role,
                created_at=now())
    db.add(user)
    db.flush()
    return user


def authenticate(db: Session, username: str, password: str) -> User | None:
    """The user whose name and password match, else ``None``."""
    user = db.scalar(select(User).where(User.username == username))
    return user if user is not None and verify_password(user.password_hash, password) else None


def create_subject(db: Session, team_id: int, label: str) -> Subject:
    """A new subject of ``team_id`` with a pseudonymous ``label`` (unique within the team)."""
    subject = Subject(team_id=team_id, label=label, created_at=now())
    db.add(subject)
    db.flush()
    return subject


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


def write_rows(db: Session, session_id: int, rows: list[SecondRow]) -> None:
    """Add completed seconds to a session (the caller commits)."""
    for r in rows:
        db.add(Aggregate(session_id=session_id, second=r.second, face_id=r.face_id, n_frames=r.n_frames,
                         faces=r.faces, label=r.label, **{c: float(p) for c, p in zip(PROB_COLUMNS, r.probs)}))


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

"""The monitoring tables (SQLAlchemy 2 declarative). Alembic migrations in ``migrations/`` create them.

``teams`` (a deployment: its users see only its subjects) -> ``users`` (argon2 hash, role
``admin`` or ``staff``, a random ``key`` that tokens name, ``active``, ``token_version``) and
``subjects`` (a pseudonymous label) -> ``sessions`` (start/end, model id + revision, the model's
label list) -> ``aggregates`` (one row per second per tracked face, its probabilities a JSON list in
its session's label order). Deleting a subject deletes its sessions and
their aggregates (``ON DELETE CASCADE``). ``audit_events`` records who did what, when (ids only:
no probabilities, labels or images), and outlives what it names. No column holds an image.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, CheckConstraint, DateTime, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from .predictor import MAX_LABEL_NAME

ROLES = ("admin", "staff")
#: A JSON list: ``JSON`` text on SQLite, ``JSONB`` on PostgreSQL (its elements are read in SQL by
#: :func:`fer_app.monitoring.store.timeline`).
JSONList = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    """Declarative base of the monitoring tables."""


class Team(Base):
    """A deployment (care team): users and subjects belong to exactly one."""

    __tablename__ = "teams"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class User(Base):
    """A login: ``username`` (unique, NFKC + case-folded), argon2 ``password_hash``, ``role`` admin
    or staff, ``key`` (random, what tokens name: a token never matches a later user who gets the
    same ``id``), ``active`` (disabled users can do nothing) and ``token_version`` (bumped on
    disable or password change: older tokens stop working)."""

    __tablename__ = "users"
    __table_args__ = (CheckConstraint("role IN ('admin', 'staff')", name="ck_users_role"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    username: Mapped[str] = mapped_column(String(200), unique=True)
    password_hash: Mapped[str] = mapped_column(String(500))
    role: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    key: Mapped[str] = mapped_column(String(32), unique=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    token_version: Mapped[int] = mapped_column(Integer, default=0)


class AuditEvent(Base):
    """One accountable action: ``at`` (UTC), ``action`` (e.g. ``login_failed``, ``subject_erase``),
    the acting user's id and team, and the ids it concerns (``subject_id``, ``session_id``,
    ``target_user_id``). ``detail`` holds at most a username tried at login. Never probabilities,
    labels or images; no foreign keys, so an erased subject keeps its audit lines (id only)."""

    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    action: Mapped[str] = mapped_column(String(40))
    team_id: Mapped[int | None] = mapped_column(Integer, index=True)
    actor_id: Mapped[int | None] = mapped_column(Integer)
    subject_id: Mapped[int | None] = mapped_column(Integer)
    session_id: Mapped[int | None] = mapped_column(Integer)
    target_user_id: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[str | None] = mapped_column(String(100))


class Subject(Base):
    """A person being monitored, by a pseudonymous ``label`` (no name needed)."""

    __tablename__ = "subjects"
    __table_args__ = (UniqueConstraint("team_id", "label", name="uq_subjects_team_label"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class MonitoringSession(Base):
    """One monitoring session of a subject: when, by whom, with which model, and that model's
    ``labels`` (a JSON list of names in probability order, fixed when the session starts: every
    aggregate of the session lists its probabilities in this order)."""

    __tablename__ = "sessions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id", ondelete="CASCADE"), index=True)
    started_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    model_id: Mapped[str] = mapped_column(String(300))
    model_revision: Mapped[str | None] = mapped_column(String(100))
    labels: Mapped[list[str]] = mapped_column(JSONList)


class Aggregate(Base):
    """One second of one tracked face: mean calibrated probabilities over the frames it was seen in
    that second (``probs``: a JSON list of floats in the order of the session's ``labels``, summing
    to 1, each rounded to 8 decimals), their argmax ``label``, ``n_frames`` and the most faces seen
    in one frame of that second (``faces``)."""

    __tablename__ = "aggregates"
    __table_args__ = (UniqueConstraint("session_id", "second", "face_id", name="uq_aggregates_second_face"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), index=True)
    second: Mapped[int] = mapped_column(Integer)
    face_id: Mapped[int] = mapped_column(Integer)
    n_frames: Mapped[int] = mapped_column(Integer)
    faces: Mapped[int] = mapped_column(Integer)
    label: Mapped[str] = mapped_column(String(MAX_LABEL_NAME))
    probs: Mapped[list[float]] = mapped_column(JSONList)

"""Monitoring REST routes (FastAPI), beside the Gradio app. Every route but the token one needs a
bearer token; every row is looked up within the caller's team.

``POST /api/auth/token`` (OAuth2 password form) · ``POST /api/users`` (admin) ·
``POST/GET /api/subjects`` · ``DELETE /api/subjects/{id}`` (admin; erases the subject, its
sessions and aggregates) · ``GET /api/subjects/{id}/sessions`` · ``POST /api/sessions`` ·
``POST /api/sessions/{id}/frames`` (a multipart ``file`` image, or JSON per-frame results) ·
``POST /api/sessions/{id}/end`` · ``GET /api/sessions/{id}/timeline?resolution=1s|10s|1min&format=json|csv``.

(No ``from __future__ import annotations`` here: FastAPI must see the dependency annotations
built inside :func:`build_monitoring_router` as objects, not as strings.)
"""


import csv
import io
import math
import threading
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.security import OAuth2PasswordBearer, OAuth2PasswordRequestForm
from pydantic import BaseModel, Field
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from fer_core import FERError
from fer_core.labels import LABELS

from . import store
from .live import LiveSession
from .models import MonitoringSession
from .security import AuthError, TokenClaims, create_token, read_token
from .settings import MonitoringSettings

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/auth/token", auto_error=False)


class SubjectIn(BaseModel):
    """A new subject: a pseudonymous label (no name needed)."""

    label: str = Field(min_length=1, max_length=200)


class UserIn(BaseModel):
    """A new user of the caller's team."""

    username: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=10, max_length=500)
    role: Literal["admin", "staff"] = "staff"


class SessionIn(BaseModel):
    """A new session for a subject."""

    subject_id: int


class FaceIn(BaseModel):
    """One tracked face of a frame computed by the client: its id and the 8 FER+ probabilities."""

    face_id: int = Field(ge=1)
    probs: dict[str, float]


class FrameIn(BaseModel):
    """One frame's results: seconds since the session started and its faces."""

    time_s: float = Field(ge=0)
    faces: list[FaceIn] = Field(max_length=64)


class FramesIn(BaseModel):
    """A batch of per-frame results, in time order."""

    frames: list[FrameIn] = Field(min_length=1, max_length=600)


def build_monitoring_router(service: Any, settings: MonitoringSettings | None, factory: sessionmaker | None,
                            disabled_reason: str = "") -> APIRouter:
    """The monitoring routes. With ``settings`` ``None`` every route answers 503 with
    ``disabled_reason`` (monitoring not configured), so the public demo still runs.

    Args:
        service: the app's :class:`app_ui.service.FERService` (model, limiter) for image frames.
        settings: monitoring settings, or ``None`` when monitoring is off.
        factory: ORM session factory bound to the migrated database.
        disabled_reason: why monitoring is off.
    """
    router = APIRouter(prefix="/api", tags=["monitoring"])
    live: dict[int, LiveSession] = {}
    live_lock = threading.Lock()

    def db() -> Iterator[Session]:
        if settings is None or factory is None:
            raise HTTPException(503, f"monitoring is off: {disabled_reason}")
        with factory() as session:
            yield session

    Db = Annotated[Session, Depends(db)]

    def claims(token: Annotated[str | None, Depends(oauth2_scheme)], session: Db) -> TokenClaims:
        unauthorized = {"WWW-Authenticate": "Bearer"}
        if not token:
            raise HTTPException(401, "log in first: no bearer token", headers=unauthorized)
        try:
            found = read_token(settings.jwt_secret, token)
        except AuthError as exc:
            raise HTTPException(401, str(exc), headers=unauthorized) from exc
        user = session.get(store.User, found.user_id)
        if user is None or user.team_id != found.team_id or user.role != found.role:
            raise HTTPException(401, "the token's user no longer exists or changed", headers=unauthorized)
        return found

    Claims = Annotated[TokenClaims, Depends(claims)]

    def admin(who: Claims) -> TokenClaims:
        if who.role != "admin":
            raise HTTPException(403, "admins only")
        return who

    def own_session(session: Session, who: TokenClaims, session_id: int) -> MonitoringSession:
        found = store.get_session(session, who.team_id, session_id)
        if found is None:
            raise HTTPException(403, f"no session {session_id} in your team")
        return found

    @router.post("/auth/token")
    def token(form: Annotated[OAuth2PasswordRequestForm, Depends()], session: Db) -> dict[str, Any]:
        """OAuth2 password flow: ``username`` + ``password`` form fields -> a bearer access token."""
        user = store.authenticate(session, form.username, form.password)
        if user is None:
            raise HTTPException(401, "wrong username or password", headers={"WWW-Authenticate": "Bearer"})
        return {"access_token": create_token(settings.jwt_secret, user.id, user.team_id, user.role,
                                             settings.token_minutes),
                "token_type": "bearer", "expires_in": int(settings.token_minutes * 60), "role": user.role}

    @router.post("/users", status_code=201)
    def create_user(body: UserIn, who: Annotated[TokenClaims, Depends(admin)], session: Db) -> dict[str, Any]:
        """Admins create users (admin or staff) of their own team."""
        try:
            user = store.create_user(session, who.team_id, body.username, body.password, body.role)
            session.commit()
        except IntegrityError as exc:
            raise HTTPException(409, f"username {body.username!r} is taken") from exc
        return {"id": user.id, "username": user.username, "role": user.role}

    @router.post("/subjects", status_code=201)
    def create_subject(body: SubjectIn, who: Claims, session: Db) -> dict[str, Any]:
        """A new subject of the caller's team."""
        try:
            subject = store.create_subject(session, who.team_id, body.label)
            session.commit()
        except IntegrityError as exc:
            raise HTTPException(409, f"a subject labelled {body.label!r} exists") from exc
        return _subject(subject)

    @router.get("/subjects")
    def list_subjects(who: Claims, session: Db) -> list[dict[str, Any]]:
        """The caller's team's subjects."""
        return [_subject(s) for s in store.list_subjects(session, who.team_id)]

    @router.delete("/subjects/{subject_id}", status_code=204)
    def delete_subject(subject_id: int, who: Annotated[TokenClaims, Depends(admin)], session: Db) -> Response:
        """Erase a subject and everything about it (sessions, aggregates): the right to erasure.
        Admins only: it cannot be undone."""
        subject = store.get_subject(session, who.team_id, subject_id)
        if subject is None:
            raise HTTPException(403, f"no subject {subject_id} in your team")
        ids = [s.id for s in store.list_sessions(session, subject_id)]
        session.delete(subject)
        session.commit()
        with live_lock:
            for i in ids:
                live.pop(i, None)
        return Response(status_code=204)

    @router.get("/subjects/{subject_id}/sessions")
    def subject_sessions(subject_id: int, who: Claims, session: Db) -> list[dict[str, Any]]:
        """A subject's sessions, oldest first."""
        if store.get_subject(session, who.team_id, subject_id) is None:
            raise HTTPException(403, f"no subject {subject_id} in your team")
        return [_session(s) for s in store.list_sessions(session, subject_id)]

    @router.post("/sessions", status_code=201)
    def start_session(body: SessionIn, who: Claims, session: Db) -> dict[str, Any]:
        """Start a session for a subject of the caller's team, recording the model id and revision."""
        if store.get_subject(session, who.team_id, body.subject_id) is None:
            raise HTTPException(403, f"no subject {body.subject_id} in your team")
        started = MonitoringSession(subject_id=body.subject_id, started_by=who.user_id, started_at=store.now(),
                                    model_id=service.model_id, model_revision=service.recognizer.revision)
        session.add(started)
        session.commit()
        return _session(started)

    @router.post("/sessions/{session_id}/frames")
    async def frames(session_id: int, request: Request, who: Claims, session: Db,
                     time_s: Annotated[float | None, Query(ge=0, description="seconds since the session "
                                                           "started; default: now")] = None) -> dict[str, Any]:
        """Feed frames: a multipart ``file`` image (the server detects, classifies and tracks its
        faces) or a JSON body ``{"frames": [{"time_s", "faces": [{"face_id", "probs"}]}]}`` of
        results computed by the client. Each second is committed as soon as a later frame arrives."""
        monitored = own_session(session, who, session_id)
        if monitored.ended_at is not None:
            raise HTTPException(409, f"session {session_id} has ended")
        state = _live(session_id)
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            form = await request.form()
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise HTTPException(422, "send the image as a multipart field named 'file'")
            data = await upload.read()
            at = time_s if time_s is not None else (store.now() - _aware(monitored.started_at)).total_seconds()
            try:
                _, faces = await run_in_threadpool(service.predict, data, service.defaults())
            except FERError as exc:
                raise HTTPException(400, f"{upload.filename}: {exc}") from exc
            try:
                tracked, written = await run_in_threadpool(state.add_faces, session, at, faces)
            except ValueError as exc:
                raise HTTPException(422, str(exc)) from exc
            answer: dict[str, Any] = {"time_s": at, "faces": [f.to_dict() for f in tracked]}
        else:
            try:
                body = FramesIn.model_validate(await request.json())
            except ValueError as exc:
                raise HTTPException(422, f"expected {{'frames': [...]}} JSON or a multipart image: {exc}") from exc
            try:
                frames_in = [(frame.time_s, [(f.face_id, _probs(f.probs)) for f in frame.faces])
                             for frame in body.frames]
                written = await run_in_threadpool(state.add_results, session, frames_in)
            except ValueError as exc:
                raise HTTPException(422, str(exc)) from exc
            answer = {"frames": len(body.frames)}
        return answer | {"seconds_written": written}

    @router.post("/sessions/{session_id}/end")
    def end(session_id: int, who: Claims, session: Db) -> dict[str, Any]:
        """End a session: its open seconds are written and no more frames are taken."""
        monitored = own_session(session, who, session_id)
        with live_lock:
            state = live.pop(session_id, None)
        written = state.finish(session) if state else 0
        if monitored.ended_at is None:
            monitored.ended_at = store.now()
            session.commit()
        return _session(monitored) | {"seconds_written": written}

    @router.get("/sessions/{session_id}/timeline")
    def timeline(session_id: int, who: Claims, session: Db,
                 resolution: Literal["1s", "10s", "1min"] = "1s",
                 format: Literal["json", "csv"] = "json") -> Any:  # noqa: A002 (the query parameter's name)
        """Per bucket (1 s, 10 s or 1 min) and tracked face: frame-weighted mean probabilities,
        label, frames and faces; JSON, or CSV with one column per label."""
        monitored = own_session(session, who, session_id)
        rows = store.timeline(session, session_id, resolution)
        if format == "csv":
            buf = io.StringIO()
            writer = csv.writer(buf)
            writer.writerow(["start_s", "face_id", "n_frames", "faces", "label", *LABELS])
            for r in rows:
                writer.writerow([r["start_s"], r["face_id"], r["n_frames"], r["faces"], r["label"],
                                 *[r["probs"][k] for k in LABELS]])
            return Response(buf.getvalue(), media_type="text/csv",
                            headers={"Content-Disposition": f'attachment; filename="session_{session_id}.csv"'})
        return {"session": _session(monitored), "resolution": resolution, "labels": list(LABELS), "rows": rows}

    def _live(session_id: int) -> LiveSession:
        with live_lock:
            if session_id not in live:
                live[session_id] = LiveSession(session_id)
            return live[session_id]

    return router


def _probs(probs: dict[str, float]) -> list[float]:
    if set(probs) != set(LABELS):
        raise ValueError(f"probs must have exactly the FER+ labels {list(LABELS)}")
    values = [float(probs[k]) for k in LABELS]
    if not all(math.isfinite(v) and v >= 0 for v in values) or sum(values) <= 0:
        raise ValueError("probs must be finite, non-negative and not all zero")
    return values


def _aware(moment):  # noqa: ANN001, ANN202 (datetime in, datetime out)
    """SQLite returns naive datetimes for timezone-aware columns: they are UTC."""
    from datetime import UTC

    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _subject(s: Any) -> dict[str, Any]:
    return {"id": s.id, "label": s.label, "created_at": _aware(s.created_at).isoformat()}


def _session(s: MonitoringSession) -> dict[str, Any]:
    return {"id": s.id, "subject_id": s.subject_id, "started_at": _aware(s.started_at).isoformat(),
            "ended_at": _aware(s.ended_at).isoformat() if s.ended_at else None, "model_id": s.model_id,
            "model_revision": s.model_revision}

"""Monitoring REST routes (FastAPI), beside the Gradio app. Every route but the login ones needs a
valid login (:func:`fer_app.monitoring.auth.authorize` on every request); every row is looked up within
the caller's team.

Login: ``POST /api/auth/token`` (OAuth2 password form -> bearer token) · ``POST /api/auth/session``
(the same form, with header ``X-Requested-With``; sets the browser's HttpOnly cookie) ·
``POST /api/auth/logout``. Users (admin): ``POST /api/users`` · ``POST /api/users/{id}/disable`` ·
``POST /api/users/{id}/password`` (an admin, or the user for itself) · ``GET /api/audit``.
Subjects: ``POST/GET /api/subjects`` · ``DELETE /api/subjects/{id}`` (admin; erases the subject,
its sessions and aggregates, and scrubs the database files) · ``GET /api/subjects/{id}/sessions``.
Sessions: ``POST /api/sessions`` · ``POST /api/sessions/{id}/frames`` (an image as a multipart
``file`` or a raw ``image/*`` body, held in memory only; or JSON per-frame results) ·
``POST /api/sessions/{id}/end`` · ``GET /api/sessions/{id}/timeline?resolution=1s|10s|1min&format=json|csv``.

A session records the server's model labels when it starts (``labels`` in its JSON): JSON frames
give one probability per label of the session, the timeline and its CSV have one per label, in
that order. Image frames need the server's model to have the session's labels (409 otherwise:
the server was restarted with another model).

Bearer tokens work on every route; the browser's cookie on ``GET`` routes (reads, the CSV link)
only, so a cross-site form can change nothing. Answers: 401 no or invalid login, 403 not yours or
not an admin, 409 a taken name or an ended session, 422 a value out of range (ids 1..2^31-1,
probabilities 0..1, ``time_s`` 0..:data:`MAX_SESSION_S`, text without control characters or
unpaired surrogates), 429 with ``Retry-After`` too many logins.

(No ``from __future__ import annotations`` here: FastAPI must see the dependency annotations
built inside :func:`build_monitoring_router` as objects, not as strings.)
"""


from collections.abc import Iterator
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Depends, Form, Header, HTTPException, Path, Query, Request, Response
from fastapi.security import OAuth2PasswordBearer
from pydantic import AfterValidator, BaseModel, Field, ValidationError, model_validator
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.formparsers import MultiPartParser

from fer_core import FERError

from . import store
from .auth import COOKIE, authorize, cookie_token, login
from .live import LiveRegistry
from .models import MonitoringSession, User
from .predictor import Predictor
from .security import MAX_PASSWORD_LENGTH, MAX_USERNAME_LENGTH, AuthError, check_text, create_token
from .settings import MonitoringSettings
from .throttle import LoginThrottle, TooManyAttemptsError

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/auth/token", auto_error=False)

#: Largest id accepted anywhere (the tables' ids are 32-bit integers).
MAX_ID = 2**31 - 1
#: Latest ``time_s`` of a frame: a week after the session started.
MAX_SESSION_S = 7 * 24 * 3600.0
#: Largest image accepted as a frame, bytes (held in memory, never spooled to disk; the request
#: guard bounds the body before that).
MAX_FRAME_BYTES = 20 * 1024 * 1024

Text = Annotated[str, AfterValidator(lambda v: check_text(v, "text"))]
Id = Annotated[int, Field(ge=1, le=MAX_ID, strict=True)]
PathId = Annotated[int, Path(ge=1, le=MAX_ID)]


class SubjectIn(BaseModel):
    """A new subject: a pseudonymous label (no name needed)."""

    label: Annotated[Text, Field(min_length=1, max_length=store.MAX_LABEL_LENGTH)]


class UserIn(BaseModel):
    """A new user of the caller's team (username normalised; password checked for strength)."""

    username: Annotated[Text, Field(min_length=1, max_length=MAX_USERNAME_LENGTH)]
    password: Annotated[str, Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)]
    role: Literal["admin", "staff"] = "staff"


class PasswordIn(BaseModel):
    """A new password."""

    password: Annotated[str, Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)]


class SessionIn(BaseModel):
    """A new session for a subject."""

    subject_id: Id


#: A probability as a JSON number (strict: the string "0.5" or ``true`` is refused, not coerced).
Probability = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False, strict=True)]


class FaceIn(BaseModel):
    """One tracked face of a frame computed by the client: its id and one probability (0..1) per
    label of the session (``{label: probability}``, exactly the session's ``labels``)."""

    face_id: Id
    probs: dict[str, Probability]


class FrameIn(BaseModel):
    """One frame's results: seconds since the session started and its faces."""

    time_s: Annotated[float, Field(ge=0, le=MAX_SESSION_S, allow_inf_nan=False, strict=True)]
    faces: list[FaceIn] = Field(max_length=64)

    @model_validator(mode="after")
    def _one_row_per_face(self) -> "FrameIn":
        """A tracked face appears once per frame: two rows with one ``face_id`` would be averaged into
        one person's second as if they were two frames."""
        ids = [f.face_id for f in self.faces]
        if len(ids) != len(set(ids)):
            raise ValueError("each face_id may appear once per frame")
        return self


class FramesIn(BaseModel):
    """A batch of per-frame results, in time order."""

    frames: list[FrameIn] = Field(min_length=1, max_length=600)


class _InMemoryMultiPart(MultiPartParser):
    """Starlette's multipart parser with files always kept in memory (the request guard bounds
    the body; :data:`MAX_FRAME_BYTES` is checked after): a monitoring frame never touches the disk."""

    spool_max_size = 2**62


def build_monitoring_router(predictor: Predictor, settings: MonitoringSettings | None, factory: sessionmaker | None,
                            disabled_reason: str = "", throttle: LoginThrottle | None = None,
                            live: LiveRegistry | None = None) -> APIRouter:
    """The monitoring routes. With ``settings`` ``None`` every route answers 503 with
    ``disabled_reason`` (monitoring not configured), so the public demo still runs.

    Args:
        predictor: the server's model (:class:`fer_app.monitoring.predictor.Predictor`): new sessions
            record its id, revision and labels; image frames are classified with it.
        settings: monitoring settings, or ``None`` when monitoring is off.
        factory: ORM session factory bound to the migrated database.
        disabled_reason: why monitoring is off.
        throttle: login limits (default: :meth:`LoginThrottle.from_env`).
        live: the sessions receiving frames (shared with the tab, whose erase must clear them).
    """
    router = APIRouter(prefix="/api", tags=["monitoring"])
    live = live or LiveRegistry()
    throttle = throttle or LoginThrottle.from_env()
    login_slots: list[anyio.CapacityLimiter] = []  # made in the event loop, on first use

    def db() -> Iterator[Session]:
        if settings is None or factory is None:
            raise HTTPException(503, f"monitoring is off: {disabled_reason}")
        with factory() as session:
            yield session

    Db = Annotated[Session, Depends(db)]

    def current(request: Request, token: Annotated[str | None, Depends(oauth2_scheme)], session: Db) -> User:
        unauthorized = {"WWW-Authenticate": "Bearer"}
        if not token and request.method == "GET":
            token = cookie_token(request.headers)
        try:
            return authorize(session, settings.jwt_secret, token)
        except AuthError as exc:
            raise HTTPException(401, str(exc), headers=unauthorized) from exc

    Current = Annotated[User, Depends(current)]

    def admin(who: Current) -> User:
        if who.role != "admin":
            raise HTTPException(403, "admins only")
        return who

    Admin = Annotated[User, Depends(admin)]

    def own_session(session: Session, who: User, session_id: int) -> MonitoringSession:
        found = store.get_session(session, who.team_id, session_id)
        if found is None:
            raise HTTPException(403, f"no session {session_id} in your team")
        return found

    async def checked_login(request: Request, username: str, password: str) -> User:
        if settings is None or factory is None:
            raise HTTPException(503, f"monitoring is off: {disabled_reason}")
        if not login_slots:
            login_slots.append(anyio.CapacityLimiter(2))  # argon2 at most twice at once; others wait, no thread

        def attempt() -> User:
            with factory() as session:
                return login(session, throttle, username, password, request.client.host if request.client else "?")
        try:
            return await anyio.to_thread.run_sync(attempt, limiter=login_slots[0])
        except TooManyAttemptsError as exc:
            raise HTTPException(429, str(exc), headers={"Retry-After": str(exc.retry_after_s)}) from exc
        except AuthError as exc:
            raise HTTPException(401, str(exc), headers={"WWW-Authenticate": "Bearer"}) from exc

    def issue(user: User) -> str:
        return create_token(settings.jwt_secret, user.key, user.token_version, user.team_id, user.role,
                            settings.token_minutes)

    Username = Annotated[str, Form(max_length=1000)]
    Password = Annotated[str, Form(max_length=MAX_PASSWORD_LENGTH)]

    @router.post("/auth/token")
    async def token(request: Request, username: Username, password: Password) -> dict[str, Any]:
        """OAuth2 password flow: ``username`` + ``password`` form fields -> a bearer access token
        (``Cache-Control: no-store``, RFC 6749 §5.1). 401 for any wrong login, 429 with
        ``Retry-After`` past the limits of :mod:`fer_app.monitoring.throttle`."""
        user = await checked_login(request, username, password)
        return {"access_token": issue(user), "token_type": "bearer", "expires_in": int(settings.token_minutes * 60),
                "role": user.role}

    @router.post("/auth/session")
    async def browser_session(request: Request, response: Response, username: Username, password: Password,
                              x_requested_with: Annotated[str | None, Header()] = None) -> dict[str, Any]:
        """The browser's login: sets the token as an HttpOnly, ``SameSite=Strict`` cookie
        (``Secure`` over HTTPS), never readable by page scripts. Needs the header
        ``X-Requested-With`` (a cross-site form cannot send it)."""
        if not x_requested_with:
            raise HTTPException(400, "send the header X-Requested-With")
        user = await checked_login(request, username, password)
        secure = request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"
        response.set_cookie(COOKIE, issue(user), max_age=int(settings.token_minutes * 60), httponly=True,
                            samesite="strict", secure=secure, path="/")
        return {"username": user.username, "role": user.role}

    @router.post("/auth/logout")
    def logout(request: Request, response: Response, session: Db,
               x_requested_with: Annotated[str | None, Header()] = None) -> dict[str, Any]:
        """Log out: every token of the user is revoked (its token version bumped: this browser,
        other devices and API tokens alike, and a webcam stream still running with the old cookie)
        and the cookie is deleted. Needs the header ``X-Requested-With``."""
        if not x_requested_with:
            raise HTTPException(400, "send the header X-Requested-With")
        bearer = request.headers.get("authorization", "")
        token = bearer[7:] if bearer.lower().startswith("bearer ") else cookie_token(request.headers)
        try:
            user = authorize(session, settings.jwt_secret, token)
        except AuthError:
            user = None
        if user is not None:
            user.token_version += 1
            store.audit(session, "logout", team_id=user.team_id, actor_id=user.id)
            session.commit()
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return {"logged_out": True}

    @router.post("/users", status_code=201)
    def create_user(body: UserIn, who: Admin, session: Db) -> dict[str, Any]:
        """Admins create users (admin or staff) of their own team. 409 if the (normalised) name is
        not available, without saying where it is used; 422 for a weak password."""
        try:
            user = store.create_user(session, who.team_id, body.username, body.password, body.role)
            store.audit(session, "user_create", team_id=who.team_id, actor_id=who.id, target_user_id=user.id)
            session.commit()
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        except IntegrityError as exc:
            raise HTTPException(409, "that username is not available") from exc
        return {"id": user.id, "username": user.username, "role": user.role}

    def team_user(session: Session, who: User, user_id: int) -> User:
        user = store.get_user(session, who.team_id, user_id)
        if user is None:
            raise HTTPException(403, f"no user {user_id} in your team")
        return user

    @router.post("/users/{user_id}/disable")
    def disable_user(user_id: PathId, who: Admin, session: Db) -> dict[str, Any]:
        """Disable a user of the admin's team: every token of it stops working at once."""
        user = team_user(session, who, user_id)
        store.disable_user(user)
        store.audit(session, "user_disable", team_id=who.team_id, actor_id=who.id, target_user_id=user.id)
        session.commit()
        return {"id": user.id, "active": user.active}

    @router.post("/users/{user_id}/password")
    def change_password(user_id: PathId, body: PasswordIn, who: Current, session: Db) -> dict[str, Any]:
        """A new password, set by an admin of the team or by the user itself; older tokens stop working."""
        if who.id != user_id and who.role != "admin":
            raise HTTPException(403, "admins only (or yourself)")
        user = team_user(session, who, user_id)
        try:
            store.set_password(user, body.password)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        store.audit(session, "password_change", team_id=who.team_id, actor_id=who.id, target_user_id=user.id)
        session.commit()
        return {"id": user.id, "changed": True}

    @router.get("/audit")
    def audit(who: Admin, session: Db, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
        """The team's newest audit lines (admins): ``at``, ``action``, ``actor_id``, ``subject_id``,
        ``session_id``, ``target_user_id``, ``detail`` (a username tried at login, at most)."""
        return [{"id": e.id, "at": store.aware(e.at).isoformat(), "action": e.action, "actor_id": e.actor_id,
                 "subject_id": e.subject_id, "session_id": e.session_id, "target_user_id": e.target_user_id,
                 "detail": e.detail} for e in store.list_audit(session, who.team_id, limit)]

    @router.post("/subjects", status_code=201)
    def create_subject(body: SubjectIn, who: Current, session: Db) -> dict[str, Any]:
        """A new subject of the caller's team."""
        try:
            subject = store.create_subject(session, who.team_id, body.label)
            store.audit(session, "subject_create", team_id=who.team_id, actor_id=who.id, subject_id=subject.id)
            session.commit()
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        except IntegrityError as exc:
            raise HTTPException(409, "a subject with that label exists in your team") from exc
        return _subject(subject)

    @router.get("/subjects")
    def list_subjects(who: Current, session: Db) -> list[dict[str, Any]]:
        """The caller's team's subjects."""
        return [_subject(s) for s in store.list_subjects(session, who.team_id)]

    @router.delete("/subjects/{subject_id}", status_code=204)
    def delete_subject(subject_id: PathId, who: Admin, session: Db) -> Response:
        """Erase a subject and everything about it (sessions, aggregates), and scrub the database
        files (:func:`fer_app.monitoring.store.scrub`): the right to erasure. Admins only: it cannot be
        undone. The audit trail keeps the subject's id, nothing else."""
        subject = store.get_subject(session, who.team_id, subject_id)
        if subject is None:
            raise HTTPException(403, f"no subject {subject_id} in your team")
        live.forget(store.erase_subject(session, subject, who.id))
        return Response(status_code=204)

    @router.get("/subjects/{subject_id}/sessions")
    def subject_sessions(subject_id: PathId, who: Current, session: Db) -> list[dict[str, Any]]:
        """A subject's sessions, oldest first."""
        if store.get_subject(session, who.team_id, subject_id) is None:
            raise HTTPException(403, f"no subject {subject_id} in your team")
        return [_session(s) for s in store.list_sessions(session, subject_id)]

    @router.post("/sessions", status_code=201)
    def start_session(body: SessionIn, who: Current, session: Db) -> dict[str, Any]:
        """Start a session for a subject of the caller's team, recording the model id, revision
        and labels (:func:`fer_app.monitoring.store.start_session`). 503 if the server's model has labels
        monitoring cannot record (:func:`fer_app.monitoring.predictor.check_labels`)."""
        try:
            started = store.start_session(session, who, body.subject_id, predictor)
        except store.NotInTeamError as exc:
            raise HTTPException(403, str(exc)) from exc
        except ValueError as exc:
            raise HTTPException(503, f"monitoring cannot record this server's model: {exc}") from exc
        return _session(started)

    @router.post("/sessions/{session_id}/frames")
    async def frames(session_id: PathId, request: Request, token: Annotated[str | None, Depends(oauth2_scheme)],
                     time_s: Annotated[float | None, Query(ge=0, le=MAX_SESSION_S, allow_inf_nan=False,
                                                           description="seconds since the session started; "
                                                                       "default: now")] = None) -> dict[str, Any]:
        """Feed frames: an image (multipart ``file``, or a raw ``image/*`` body; the server detects,
        classifies and tracks its faces, in memory; 409 if its model's labels are not the
        session's) or a JSON body ``{"frames": [{"time_s", "faces": [{"face_id", "probs"}]}]}`` of
        results computed by the client (``probs``: the session's labels -> probability). Each
        second is committed as soon as a later frame arrives. No database connection is held
        while the body arrives or the model runs."""
        if settings is None or factory is None:
            raise HTTPException(503, f"monitoring is off: {disabled_reason}")

        def check() -> MonitoringSession:
            with factory() as session:
                try:
                    who = authorize(session, settings.jwt_secret, token)
                except AuthError as exc:
                    raise HTTPException(401, str(exc), headers={"WWW-Authenticate": "Bearer"}) from exc
                return own_session(session, who, session_id)

        def write(add: Any, *args: Any) -> Any:
            with factory() as session:
                return add(session, *args)

        monitored = await run_in_threadpool(check)
        if monitored.ended_at is not None:
            raise HTTPException(409, f"session {session_id} has ended")
        state = live.get(monitored)
        kind = request.headers.get("content-type", "")
        if kind.startswith(("multipart/form-data", "image/")):
            if list(predictor.labels) != list(monitored.labels):
                raise HTTPException(409, f"session {session_id} records the labels {monitored.labels}; this "
                                         "server's model has others: start a new session")
            name, data = await _image(request, kind)
            at = time_s if time_s is not None else (store.now() - store.aware(monitored.started_at)).total_seconds()
            if not at <= MAX_SESSION_S:
                raise HTTPException(422, f"this session is over {MAX_SESSION_S / 86400:.0f} days old; start a new one")
            try:
                _, faces = await run_in_threadpool(predictor.predict, data)
            except FERError as exc:
                raise HTTPException(400, f"{name}: {exc}") from exc
            except Exception as exc:  # the predictor's "busy" (it carries retry_after_s): 503, as on REST
                retry = getattr(exc, "retry_after_s", None)
                if retry is None:
                    raise
                raise HTTPException(503, str(exc), headers={"Retry-After": str(retry)}) from exc
            try:
                tracked, written = await run_in_threadpool(write, state.add_faces, at, faces)
            except store.SessionEndedError as exc:
                raise HTTPException(409, str(exc)) from exc
            except ValueError as exc:
                raise HTTPException(422, str(exc)) from exc
            answer: dict[str, Any] = {"time_s": at, "faces": [f.to_dict() for f in tracked]}
        else:
            try:
                body = FramesIn.model_validate_json(await request.body())
            except ValidationError as exc:  # loc and msg only: never the client's input back
                problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                     for e in exc.errors(include_url=False, include_input=False)[:10])
                raise HTTPException(422, f"expected {{'frames': [...]}} JSON or an image: {problems}") from exc
            try:
                frames_in = [(frame.time_s, [(f.face_id, _probs(f.probs, monitored.labels)) for f in frame.faces])
                             for frame in body.frames]
                written = await run_in_threadpool(write, state.add_results, frames_in)
            except store.SessionEndedError as exc:
                raise HTTPException(409, str(exc)) from exc
            except ValueError as exc:
                raise HTTPException(422, str(exc)) from exc
            answer = {"frames": len(body.frames)}
        return answer | {"seconds_written": written}

    @router.post("/sessions/{session_id}/end")
    def end(session_id: PathId, who: Current, session: Db) -> dict[str, Any]:
        """End a session: its open seconds are written and no more frames are taken. The session
        is marked ended even if writing the last seconds fails (:func:`fer_app.monitoring.store.end_session`)."""
        monitored = own_session(session, who, session_id)
        state = live.pop(session_id)
        try:
            written = store.end_session(session, monitored, who, flush=state.finish if state else None)
        except store.NotInTeamError as exc:  # erased meanwhile
            raise HTTPException(403, str(exc)) from exc
        return _session(monitored) | {"seconds_written": written}

    @router.get("/sessions/{session_id}/timeline")
    def timeline(session_id: PathId, who: Current, session: Db,
                 resolution: Literal["1s", "10s", "1min"] = "1s",
                 format: Literal["json", "csv"] = "json") -> Any:  # noqa: A002 (the query parameter's name)
        """Per bucket (1 s, 10 s or 1 min) and tracked face: frame-weighted mean probabilities
        (one per label of the session), label, frames and faces; JSON (with the session's
        ``labels``), or CSV with one column per label (:func:`fer_app.monitoring.store.export_csv`: made
        in memory, audited, sent with ``Cache-Control: no-store``; no copy stays on the server)."""
        monitored = own_session(session, who, session_id)
        if format == "csv":
            return Response(store.export_csv(session, monitored, who, resolution), media_type="text/csv",
                            headers={"Content-Disposition": f'attachment; filename="session_{session_id}.csv"'})
        return {"session": _session(monitored), "resolution": resolution, "labels": list(monitored.labels),
                "rows": store.timeline(session, monitored, resolution)}

    return router


async def _image(request: Request, kind: str) -> tuple[str, bytes]:
    """The frame image of a request, in memory: ``(name, bytes)``."""
    if kind.startswith("image/"):
        data = await request.body()
        if len(data) > MAX_FRAME_BYTES:
            raise HTTPException(413, f"a frame may have at most {MAX_FRAME_BYTES // 2**20} MB")
        return "frame", data
    try:
        form = await _InMemoryMultiPart(request.headers, request.stream(), max_files=1, max_fields=10).parse()
    except Exception as exc:  # noqa: BLE001 (any malformed multipart body is the client's error)
        raise HTTPException(400, f"malformed multipart body: {exc}") from exc
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise HTTPException(422, "send the image as a multipart field named 'file'")
    try:
        data = await upload.read()
    finally:
        await upload.close()
    if len(data) > MAX_FRAME_BYTES:
        raise HTTPException(413, f"a frame may have at most {MAX_FRAME_BYTES // 2**20} MB")
    # the name is the client's text, in any codec it named: only printable UTF-8 goes back
    name = (upload.filename or "frame").encode("utf-8", "replace").decode("utf-8")
    return "".join(c if c.isprintable() else "?" for c in name)[:100], data


def _probs(probs: dict[str, float], labels: list[str]) -> list[float]:
    """A face's probabilities in the session's label order (each already finite and within 0..1:
    :data:`Probability`).

    Raises:
        ValueError: the keys are not exactly ``labels`` (the aggregator checks their sum:
            :data:`fer_app.monitoring.aggregate.MIN_PROB_SUM`).
    """
    if set(probs) != set(labels):
        raise ValueError(f"probs must have exactly the session's labels {list(labels)}")
    return [probs[k] for k in labels]


def _subject(s: Any) -> dict[str, Any]:
    return {"id": s.id, "label": s.label, "created_at": store.aware(s.created_at).isoformat()}


def _session(s: MonitoringSession) -> dict[str, Any]:
    return {"id": s.id, "subject_id": s.subject_id, "started_at": store.aware(s.started_at).isoformat(),
            "ended_at": store.aware(s.ended_at).isoformat() if s.ended_at else None, "model_id": s.model_id,
            "model_revision": s.model_revision, "labels": list(s.labels)}

"""The one login and the one authorisation check, used by the REST routes and the app's tab alike.

- :func:`login`: rate-limited (:class:`~fer_app.monitoring.throttle.LoginThrottle`), the same work and the
  same answer for unknown users, wrong passwords and disabled users, audited.
- :func:`authorize`: a token is valid only if its signature and expiry hold **and** its user
  (by random key, never by reusable id) still exists, is active, has the token's version (a
  password change or disable revokes older tokens), team and role. Checked on every request and
  every tab event.

The browser tab holds its token in the HttpOnly, ``SameSite=Strict`` cookie :data:`COOKIE` set by
``POST /api/auth/session``, never in page state or Gradio's ``session_hash``.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import store
from .models import User
from .security import AuthError, normalize_username, read_token, verify_password
from .throttle import LoginThrottle

#: Name of the cookie that carries the browser's access token.
COOKIE = "fer_session"
#: The one answer to every failed login.
LOGIN_FAILED = "wrong username or password"


class LoginFailedError(AuthError):
    """Unknown user, wrong password or disabled user: one message for all three (HTTP 401)."""

    def __init__(self) -> None:
        super().__init__(LOGIN_FAILED)


def login(db: Session, throttle: LoginThrottle, username: str, password: str, client: str) -> User:
    """Check a username and password, within the rate limits; commits an audit line.

    Args:
        db: ORM session.
        throttle: the process's login limits.
        username: as typed (normalised here).
        password: as typed.
        client: the client's address (for the per-client limit).

    Returns:
        The user, active and with the right password.

    Raises:
        fer_app.monitoring.throttle.TooManyAttemptsError: over a limit (HTTP 429 with ``Retry-After``).
        LoginFailedError: anything else that is not a valid login (HTTP 401).
    """
    try:
        account = normalize_username(username)
    except ValueError:
        account = None
    throttle.check(account or "\0invalid", client)
    user = db.scalar(select(User).where(User.username == account)) if account else None
    ok = verify_password(user.password_hash if user is not None else None, password)
    if ok and user is not None and user.active:
        throttle.succeeded(account)
        store.audit(db, "login", team_id=user.team_id, actor_id=user.id)
        db.commit()
        return user
    throttle.failed(account or "\0invalid")
    store.audit(db, "login_failed", team_id=user.team_id if user is not None else None,
                target_user_id=user.id if user is not None else None, detail=(account or "")[:100])
    db.commit()
    raise LoginFailedError()


def authorize(db: Session, secret: str, token: str | None) -> User:
    """The user a token stands for, if it may still act.

    Raises:
        AuthError: no token; invalid signature, expired or malformed; or its user is gone,
            disabled, or changed (version, team or role) since it was issued.
    """
    if not token:
        raise AuthError("log in first")
    claims = read_token(secret, token)
    user = db.scalar(select(User).where(User.key == claims.user_key))
    if (user is None or not user.active or user.token_version != claims.version or user.team_id != claims.team_id
            or user.role != claims.role):
        raise AuthError("this login is no longer valid (user removed, disabled or changed); log in again")
    return user


def cookie_token(headers: Mapping[str, str]) -> str | None:
    """The access token in a request's ``Cookie`` header (:data:`COOKIE`), else ``None``. Parsed as
    browsers send it (Starlette's lenient parser), so an unrelated malformed cookie of another app
    on the same host does not hide it."""
    from starlette.requests import cookie_parser

    return cookie_parser(headers.get("cookie", "") or "").get(COOKIE) or None

"""Passwords (argon2id, argon2-cffi) and access tokens (JWT, HS256, PyJWT).

Argon2: Biryukov, Dinu, Khovratovich, "Argon2: the memory-hard function for password hashing",
RFC 9106 (2021); the library's default parameters. JWT: RFC 7519.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()
ALGORITHM = "HS256"
MIN_PASSWORD_LENGTH = 10


class AuthError(Exception):
    """A token is missing, malformed, forged or expired (HTTP 401)."""


def hash_password(password: str) -> str:
    """The argon2id hash of ``password`` (a ``$argon2id$...`` string with its own salt).

    Raises:
        ValueError: shorter than :data:`MIN_PASSWORD_LENGTH` characters.
    """
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"passwords need at least {MIN_PASSWORD_LENGTH} characters")
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``password_hash`` (constant-time in the library)."""
    try:
        return _HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class TokenClaims:
    """What an access token says: user id, team id, role, expiry (UTC)."""

    user_id: int
    team_id: int
    role: str
    expires: datetime


def create_token(secret: str, user_id: int, team_id: int, role: str, minutes: float,
                 now: datetime | None = None) -> str:
    """A signed access token for a user, valid ``minutes`` from ``now`` (default: the current time)."""
    issued = now or datetime.now(UTC)
    claims = {"sub": str(user_id), "team": team_id, "role": role, "iat": issued,
              "exp": issued + timedelta(minutes=minutes)}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def read_token(secret: str, token: str) -> TokenClaims:
    """Verify ``token``'s signature and expiry and return its claims.

    Raises:
        AuthError: expired, badly signed, malformed, or missing claims.
    """
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require": ["sub", "exp"]})
        return TokenClaims(int(claims["sub"]), int(claims["team"]), str(claims["role"]),
                           datetime.fromtimestamp(claims["exp"], UTC))
    except jwt.ExpiredSignatureError as exc:
        raise AuthError("the token has expired; log in again") from exc
    except (jwt.InvalidTokenError, KeyError, ValueError, TypeError) as exc:
        raise AuthError("invalid token") from exc

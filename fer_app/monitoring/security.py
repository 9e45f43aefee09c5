"""Passwords (argon2id, argon2-cffi), usernames, secrets and access tokens (JWT, HS256, PyJWT).

Argon2: Biryukov, Dinu, Khovratovich, "Argon2: the memory-hard function for password hashing",
RFC 9106 (2021); the library's default parameters. JWT: RFC 7519. Password strength: zxcvbn
(Wheeler, "zxcvbn: Low-Budget Password Strength Estimation", USENIX Security 2016), whose
frequency lists also give the 30,000 most common passwords. Usernames: Unicode NFKC + case folding
(Unicode TR15, TR36 §2.11), as recommended for identifiers (RFC 8265 applies the same two steps).
"""

from __future__ import annotations

import threading
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()
ALGORITHM = "HS256"
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024
MAX_USERNAME_LENGTH = 64
#: Lowest zxcvbn score (0-4) a new password needs: 3 = "safely unguessable: moderate protection
#: from offline slow-hash scenario".
MIN_PASSWORD_SCORE = 3
#: Most argon2 computations at once (each takes ~64 MiB and tens of ms of CPU): more guessers
#: wait, so a flood of logins cannot starve the server.
HASH_SLOTS = threading.BoundedSemaphore(2)


class AuthError(Exception):
    """A token is missing, malformed, forged, expired or revoked (HTTP 401)."""


class WeakPasswordError(ValueError):
    """A new password is too short, too long, common or guessable (HTTP 422)."""


def normalize_username(name: str) -> str:
    """The canonical form of a username: NFKC-normalised, case-folded, outer whitespace removed,
    so ``"ALICE"``, ``"ａlice"`` and ``"alice "`` are all ``"alice"``.

    Raises:
        ValueError: empty, longer than :data:`MAX_USERNAME_LENGTH`, or holding control characters,
            unpaired surrogates, or invisible format characters (zero-width spaces, direction marks,
            soft hyphens: ``admin\u200b`` must not pose as ``admin``; RFC 8265 refuses them too).
    """
    check_text(name, "username")
    if any(unicodedata.category(c) == "Cf" for c in name):
        raise ValueError("username must not hold invisible format characters")
    canonical = unicodedata.normalize("NFKC", name).casefold().strip()
    if not canonical:
        raise ValueError("username must not be empty")
    if len(canonical) > MAX_USERNAME_LENGTH:
        raise ValueError(f"username must be at most {MAX_USERNAME_LENGTH} characters")
    return canonical


def check_text(value: str, what: str) -> str:
    """``value`` if it is storable text: no unpaired surrogate (not encodable as UTF-8) and no
    control character (category Cc, tabs and newlines included).

    Raises:
        ValueError: it is not.
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{what} holds an unpaired surrogate (not valid Unicode text)") from exc
    if any(unicodedata.category(c) == "Cc" for c in value):
        raise ValueError(f"{what} must not hold control characters")
    return value


@lru_cache(maxsize=1)
def _common_passwords() -> frozenset[str]:
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(FREQUENCY_LISTS["passwords"])


def check_password(password: str, username: str = "") -> None:
    """Refuse a weak new password.

    Raises:
        WeakPasswordError: shorter than :data:`MIN_PASSWORD_LENGTH` or longer than
            :data:`MAX_PASSWORD_LENGTH` characters, one of zxcvbn's 30,000 common passwords
            (case-insensitive), or a zxcvbn score (first 72 characters, the username counted as
            known) under :data:`MIN_PASSWORD_SCORE`; the message says why.
    """
    from zxcvbn import zxcvbn

    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPasswordError(f"passwords need at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPasswordError(f"passwords may have at most {MAX_PASSWORD_LENGTH} characters")
    if password.casefold() in _common_passwords():
        raise WeakPasswordError("that password is on a list of common passwords; choose another")
    result = zxcvbn(password[:72], user_inputs=[username] if username else [])
    if result["score"] < MIN_PASSWORD_SCORE:
        hint = result["feedback"].get("warning") or "add more words or characters"
        raise WeakPasswordError(f"that password is too easy to guess ({hint}); try a few unrelated words")


def hash_password(password: str, username: str = "") -> str:
    """The argon2id hash of a new ``password`` (a ``$argon2id$...`` string with its own salt).

    Raises:
        WeakPasswordError: see :func:`check_password`.
    """
    check_password(password, username)
    with HASH_SLOTS:
        return _HASHER.hash(password)


#: A hash of a random password, verified against when the username is unknown, so unknown and
#: known names cost the same time.
_DUMMY_HASH = _HASHER.hash("dummy-password-for-unknown-users-" + "x" * 16)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches ``password_hash`` (constant-time in the library). ``None``
    (unknown user) verifies against a dummy hash and returns ``False``, in the same time.
    At most :data:`HASH_SLOTS` run at once; the others wait."""
    with HASH_SLOTS:
        try:
            return _HASHER.verify(password_hash or _DUMMY_HASH, password[:MAX_PASSWORD_LENGTH]) \
                and password_hash is not None
        except (VerificationError, InvalidHashError):
            return False


@dataclass(frozen=True)
class TokenClaims:
    """What an access token says: the user's random key (never reused), the user's token version
    (bumped on disable or password change, revoking older tokens), team id, role, expiry (UTC)."""

    user_key: str
    version: int
    team_id: int
    role: str
    expires: datetime


def create_token(secret: str, user_key: str, version: int, team_id: int, role: str, minutes: float,
                 now: datetime | None = None) -> str:
    """A signed access token for a user, valid ``minutes`` from ``now`` (default: the current time)."""
    issued = now or datetime.now(UTC)
    claims = {"sub": user_key, "ver": version, "team": team_id, "role": role, "iat": issued,
              "exp": issued + timedelta(minutes=minutes)}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def read_token(secret: str, token: str) -> TokenClaims:
    """Verify ``token``'s signature (HS256 only: ``none`` and other algorithms are refused) and
    expiry and return its claims. Whether the user still exists and may act is
    :func:`fer_app.monitoring.auth.authorize`'s job.

    Raises:
        AuthError: expired, badly signed, malformed, or missing claims.
    """
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM],
                            options={"require": ["sub", "exp", "ver", "team", "role"]})
        return TokenClaims(str(claims["sub"]), int(claims["ver"]), int(claims["team"]), str(claims["role"]),
                           datetime.fromtimestamp(claims["exp"], UTC))
    except jwt.ExpiredSignatureError as exc:
        raise AuthError("the token has expired; log in again") from exc
    except (jwt.InvalidTokenError, KeyError, ValueError, TypeError, OverflowError) as exc:
        raise AuthError("invalid token") from exc

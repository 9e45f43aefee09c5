"""Monitoring configuration from the environment.

``FER_DATABASE_URL`` (default ``sqlite:///data/fer.db``; PostgreSQL:
``postgresql+psycopg://user:password@host:5432/db``), ``FER_JWT_SECRET`` (required outside
``--dev``: at least 32 characters, of which at least 16 different, so ``"a" * 32`` or a word
repeated is refused), ``FER_JWT_MINUTES`` (access-token lifetime, default 60).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_DATABASE_URL = "sqlite:///data/fer.db"
#: An old built-in development secret: refused as ``FER_JWT_SECRET`` (anyone can read it here).
#: ``--dev`` without a secret now draws a random one per process.
DEV_SECRET = "dev-only-secret-do-not-use-in-production-0123456789"
MIN_SECRET_LENGTH = 32
#: Different characters a secret needs (``secrets.token_urlsafe(48)`` has about 40).
MIN_SECRET_DISTINCT = 16


class MonitoringConfigError(RuntimeError):
    """Monitoring cannot start with this configuration (no or a weak ``FER_JWT_SECRET``)."""


@dataclass(frozen=True)
class MonitoringSettings:
    """Attributes:
        database_url: SQLAlchemy URL.
        jwt_secret: HS256 signing key.
        token_minutes: access-token lifetime, minutes.
        dev: started with ``--dev`` (a random per-process secret when ``FER_JWT_SECRET`` is unset).
    """

    database_url: str
    jwt_secret: str
    token_minutes: float = 60.0
    dev: bool = False

    @classmethod
    def from_env(cls, dev: bool = False) -> MonitoringSettings:
        """Read the environment.

        Raises:
            MonitoringConfigError: ``FER_JWT_SECRET`` is unset, the development secret, shorter
                than 32 characters or with fewer than 16 different characters, and ``dev`` is
                false; or ``FER_JWT_MINUTES`` is not positive.
        """
        secret = os.environ.get("FER_JWT_SECRET", "")
        if not dev and (not secret or secret == DEV_SECRET or len(secret) < MIN_SECRET_LENGTH
                        or len(set(secret)) < MIN_SECRET_DISTINCT):
            raise MonitoringConfigError(
                "monitoring needs FER_JWT_SECRET (a random string of at least 32 characters, 16 of them "
                "different, e.g. "
                "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`); `fer-app --dev` "
                "uses a random per-process secret for local development only")
        try:
            minutes = float(os.environ.get("FER_JWT_MINUTES", "60"))
        except ValueError as exc:
            raise MonitoringConfigError(f"FER_JWT_MINUTES must be a number, got {os.environ['FER_JWT_MINUTES']!r}") \
                from exc
        if minutes <= 0:
            raise MonitoringConfigError(f"FER_JWT_MINUTES must be positive, got {minutes}")
        if not secret:  # --dev: a fresh random secret per process (logins end with the process)
            import secrets

            secret = secrets.token_urlsafe(48)
        return cls(os.environ.get("FER_DATABASE_URL") or DEFAULT_DATABASE_URL, secret, minutes, dev)

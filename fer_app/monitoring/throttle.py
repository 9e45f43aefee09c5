"""Login rate limits: per client address and per account, with a lockout that doubles each time.

Counting is the ``limits`` library's moving window (in memory: one server process, as the app
runs). The rules, each an environment variable read at start-up:

==========================  =======  ======================================================
Variable                     Default  Meaning
==========================  =======  ======================================================
``FER_LOGIN_PER_CLIENT``     20       login attempts per minute from one client address
``FER_LOGIN_FAILURES``       5        failed logins of one account within the window that
                                      lock it
``FER_LOGIN_WINDOW_S``       900      the failure window, seconds
``FER_LOGIN_LOCKOUT_S``      60       the first lockout, seconds; each further lockout
                                      without a successful login in between doubles it
                                      (at most a day)
==========================  =======  ======================================================

An account is the *normalised* username tried, known or not, so answers never tell which
accounts exist. While an account is locked even its right password gets 429.
"""

from __future__ import annotations

import math
import os
import threading
import time

from limits import RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

MAX_LOCKOUT_S = 86400.0


class TooManyAttemptsError(Exception):
    """Too many login attempts (HTTP 429).

    Attributes:
        retry_after_s: whole seconds until the next attempt may be made (>= 1).
    """

    def __init__(self, retry_after_s: float) -> None:
        self.retry_after_s = max(1, math.ceil(retry_after_s))
        super().__init__(f"too many login attempts; try again in {self.retry_after_s} s")


def _int_env(name: str, default: int) -> int:
    value = os.environ.get(name) or str(default)
    try:
        number = int(value)
    except ValueError as exc:
        raise RuntimeError(f"{name}={value!r} is not a whole number") from exc
    if number < 1:
        raise RuntimeError(f"{name}={value!r} must be at least 1")
    return number


class LoginThrottle:
    """Per-client and per-account login limits with doubling lockouts. Thread-safe.

    Args:
        per_client_per_minute: attempts per minute from one client address.
        failures: failed attempts of one account within ``window_s`` that lock it.
        window_s: the failure window, seconds.
        lockout_s: the first lockout, seconds (doubled per further lockout, at most a day).
        clock: ``time.time``-like function (seconds).
    """

    def __init__(self, per_client_per_minute: int = 20, failures: int = 5, window_s: int = 900,
                 lockout_s: float = 60.0, clock=time.time) -> None:  # noqa: ANN001 (a callable)
        self.limiter = MovingWindowRateLimiter(MemoryStorage())
        self.client_item = RateLimitItemPerMinute(per_client_per_minute)
        self.account_item = RateLimitItemPerSecond(failures, window_s)
        self.lockout_s = float(lockout_s)
        self.clock = clock
        self._locks: dict[str, tuple[float, int]] = {}  # account -> (locked until, lockouts so far)
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls) -> LoginThrottle:
        """The limits from ``FER_LOGIN_*`` (module docstring).

        Raises:
            RuntimeError: a value is not a positive whole number.
        """
        return cls(_int_env("FER_LOGIN_PER_CLIENT", 20), _int_env("FER_LOGIN_FAILURES", 5),
                   _int_env("FER_LOGIN_WINDOW_S", 900), _int_env("FER_LOGIN_LOCKOUT_S", 60))

    def check(self, account: str, client: str) -> None:
        """Count one attempt of ``client`` on ``account``.

        Raises:
            TooManyAttemptsError: the client is over its rate, or the account is locked.
        """
        if not self.limiter.hit(self.client_item, "client", client):
            reset, _ = self.limiter.get_window_stats(self.client_item, "client", client)
            raise TooManyAttemptsError(reset - time.time())
        with self._lock:
            until, _ = self._locks.get(account, (0.0, 0))
        if until > self.clock():
            raise TooManyAttemptsError(until - self.clock())

    def failed(self, account: str) -> None:
        """Record a failed attempt; the one that reaches the limit locks the account."""
        self.limiter.hit(self.account_item, "account", account)
        if self.limiter.test(self.account_item, "account", account):
            return
        self.limiter.clear(self.account_item, "account", account)
        now = self.clock()
        with self._lock:
            _, lockouts = self._locks.get(account, (0.0, 0))
            self._locks[account] = (now + min(self.lockout_s * 2 ** lockouts, MAX_LOCKOUT_S), lockouts + 1)
            if len(self._locks) > 10_000:  # forget lockouts a day past their end
                self._locks = {k: v for k, v in self._locks.items() if v[0] > now - MAX_LOCKOUT_S}

    def succeeded(self, account: str) -> None:
        """A successful login clears the account's failures and lockout history."""
        self.limiter.clear(self.account_item, "account", account)
        with self._lock:
            self._locks.pop(account, None)

"""One ASGI guard in front of every route (REST, monitoring and all of Gradio's ``/gradio_api/*``):
request bodies are bounded while they stream, not only by what the headers promise.

For every HTTP request, before the app sees a byte of its body:

- ``Transfer-Encoding`` together with ``Content-Length`` is refused with **400** (RFC 9112 §6.1:
  the two framings disagree, a request-smuggling vector);
- a ``Content-Length`` over the route's limit (or not a number) is refused with **413**;
- the bytes that actually arrive are counted, whatever the headers said: past the route's limit
  the client gets **413** and the app sees a disconnect;
- a body that stalls (no byte for :data:`BODY_IDLE_S`) or arrives slower than
  :data:`BODY_MIN_RATE` bytes/s on average once :data:`BODY_GRACE_S` have passed gets **408** (a
  rate, not a fixed deadline: an honest 100 MB upload over a slow line still gets through);
- bytes of upload routes (the ``budgeted`` patterns) held by all requests at once are budgeted
  (:data:`MAX_INFLIGHT_BYTES`), counted as they *arrive*, never on a promise: a body that would take
  the total over it gets **503** with ``Retry-After``. Every other body (JSON, forms, Gradio events,
  webcam frames) is outside that budget, so uploads can never starve logins or UI events.

Limits per route come from a table of ``(regex, bytes)`` pairs (first match wins) with a small
default for everything else (:data:`DEFAULT_BODY_BYTES`, JSON and form routes).

=============================  ========================  =============================================
Variable                        Default                   Meaning
=============================  ========================  =============================================
``FER_MAX_JSON_KB``             1024                      body limit of routes not in the table, KB
``FER_BODY_IDLE_S``             10                        longest pause between body bytes, seconds
``FER_BODY_GRACE_S``            30                        seconds a body may take before the rate rule
``FER_BODY_MIN_KBPS``           32                        slowest average body rate after the grace, KB/s
``FER_MAX_INFLIGHT_MB``         3 x ``FER_MAX_REQUEST_MB``  request bytes held by all requests at once
=============================  ========================  =============================================
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import anyio

from .limits import MAX_REQUEST_BYTES, MB, RETRY_AFTER_S, env_number
from .memory import trim

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Body limit of every route without an entry in the table, bytes.
DEFAULT_BODY_BYTES: int = int(env_number("FER_MAX_JSON_KB", 1024) * 1024)
#: Longest pause between two pieces of one body, seconds (a stalled body gets 408).
BODY_IDLE_S: float = env_number("FER_BODY_IDLE_S", 10)
#: Seconds any body may take; after them it must have averaged :data:`BODY_MIN_RATE` (408 if not).
BODY_GRACE_S: float = env_number("FER_BODY_GRACE_S", 30)
#: Slowest average rate of a body after :data:`BODY_GRACE_S`, bytes per second.
BODY_MIN_RATE: float = env_number("FER_BODY_MIN_KBPS", 32) * 1024
#: A body at least this large is followed by :func:`fer_app.memory.trim` (RSS back after large uploads).
TRIM_AFTER_BYTES = 4 * MB
#: Request body bytes held by all requests at once (503 with ``Retry-After`` past it).
MAX_INFLIGHT_BYTES: int = int(env_number("FER_MAX_INFLIGHT_MB", 3 * MAX_REQUEST_BYTES / MB) * MB)


class ByteBudget:
    """Bytes held at once by all requests, at most ``capacity``. Thread-safe.

    Args:
        capacity: the budget, bytes (> 0).
    """

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity = int(capacity)
        self.held = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> bool:
        """Reserve ``n`` bytes; ``False`` (nothing reserved) when that would pass the capacity."""
        with self._lock:
            if self.held + n > self.capacity:
                return False
            self.held += n
            return True

    def give(self, n: int) -> None:
        """Return ``n`` reserved bytes."""
        with self._lock:
            self.held = max(0, self.held - n)


class RequestGuard:
    """ASGI middleware bounding every request body (see the module docstring for the rules).

    Args:
        app: the ASGI app to wrap.
        limits: ``(regex, bytes)`` pairs matched against the path (``re.match``, first match wins);
            paths with no match get ``default_limit``.
        default_limit: bytes for the other routes.
        idle_s: longest pause between body pieces, seconds.
        grace_s: seconds any body may take before ``min_rate`` applies.
        min_rate: slowest average body rate after ``grace_s``, bytes per second.
        budget: bytes all requests may hold at once (default: :data:`MAX_INFLIGHT_BYTES`).
        budgeted: path regexes (``re.match``) of the routes whose bodies count against ``budget``:
            the upload routes. Default: none.
    """

    def __init__(self, app: ASGIApp, limits: Iterable[tuple[str, int]] = (), default_limit: int = DEFAULT_BODY_BYTES,
                 idle_s: float = BODY_IDLE_S, grace_s: float = BODY_GRACE_S, min_rate: float = BODY_MIN_RATE,
                 budget: ByteBudget | None = None, budgeted: Iterable[str] = ()) -> None:
        self.app = app
        self.limits = [(re.compile(pattern), int(n)) for pattern, n in limits]
        self.default_limit = int(default_limit)
        self.idle_s, self.grace_s, self.min_rate = float(idle_s), float(grace_s), float(min_rate)
        self.budget = budget or ByteBudget(MAX_INFLIGHT_BYTES)
        self.budgeted = [re.compile(pattern) for pattern in budgeted]

    def limit_for(self, path: str) -> int:
        """The body limit of ``path``, bytes."""
        return next((n for pattern, n in self.limits if pattern.match(path)), self.default_limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            if name in headers and name in (b"content-length", b"transfer-encoding"):
                return await refuse(send, 400, f"more than one {name.decode()} header")
            headers[name] = value
        length_header, chunked = headers.get(b"content-length"), b"transfer-encoding" in headers
        if length_header is not None and chunked:
            return await refuse(send, 400, "Content-Length and Transfer-Encoding together (RFC 9112 6.1)")
        limit = self.limit_for(scope["path"])
        if length_header is not None:
            if not length_header.isdigit():
                return await refuse(send, 400, "Content-Length is not a number")
            if int(length_header) > limit:
                return await refuse(send, 413, f"request body larger than {_size(limit)}")
        expected = int(length_header) if length_header is not None else None
        # no Content-Length and no Transfer-Encoding: no body (RFC 9112 6.3), as a GET usually is
        state = _BodyState(self, limit, complete=expected == 0 or (expected is None and not chunked),
                           budgeted=any(pattern.match(scope["path"]) for pattern in self.budgeted))
        try:
            await self.app(scope, state.wrap_receive(receive, send), state.wrap_send(send))
        except Exception:
            if not state.refused:  # after a refusal the app only sees a disconnect it may not expect
                raise
        finally:
            self.budget.give(state.held)
            if state.seen >= TRIM_AFTER_BYTES:  # hand a large body's freed memory back to the OS
                await anyio.to_thread.run_sync(trim)


class _BodyState:
    """One request's body as it streams in: bytes seen, bytes reserved, whether it was refused."""

    def __init__(self, guard: RequestGuard, limit: int, complete: bool, budgeted: bool) -> None:
        self.guard, self.limit, self.budgeted = guard, limit, budgeted
        self.seen = self.held = 0
        self.complete = complete
        self.refused = False
        self.started = False  # the app has started its response
        self.first: float | None = None

    def wrap_send(self, send: Send) -> Send:
        async def guarded(message: Message) -> None:
            if self.refused:
                return  # the guard has answered; the app's late answer goes nowhere
            if message["type"] == "http.response.start":
                self.started = True
                if not self.complete:  # answered before reading its body: close, do not read the rest
                    message["headers"] = [*message.get("headers", []), (b"connection", b"close")]
            await send(message)
        return guarded

    def wrap_receive(self, receive: Receive, send: Send) -> Receive:
        async def guarded() -> Message:
            if self.refused:
                return {"type": "http.disconnect"}
            if self.complete:
                return await receive()  # after the body: only disconnects (no deadline)
            now = time.monotonic()
            self.first = self.first or now
            # the next piece is due before the idle limit and before the average rate falls too low
            due = self.first + self.guard.grace_s + self.seen / self.guard.min_rate
            timeout = min(self.guard.idle_s, due - now)
            try:
                message = await asyncio.wait_for(receive(), timeout=max(timeout, 0.001))
            except TimeoutError:
                return await self._refuse(send, 408, "the request body arrived too slowly")
            if message["type"] != "http.request":
                return message
            self.seen += len(message.get("body", b""))
            if self.seen > self.limit:
                return await self._refuse(send, 413, f"request body larger than {_size(self.limit)}")
            if self.budgeted and self.seen > self.held:
                if not self.guard.budget.take(self.seen - self.held):
                    return await self._refuse(send, 503, "the server holds too many request bytes; try again in "
                                                         f"{RETRY_AFTER_S} s", retry_after=True)
                self.held = self.seen
            if not message.get("more_body", False):
                self.complete = True
            return message
        return guarded

    async def _refuse(self, send: Send, status: int, detail: str, retry_after: bool = False) -> Message:
        self.refused = True
        if not self.started:
            await refuse(send, status, detail, retry_after=retry_after)
        return {"type": "http.disconnect"}


def _size(n: int) -> str:
    return f"{n / MB:.0f} MB" if n >= MB else f"{n / 1024:.0f} KB"


async def refuse(send: Send, status: int, detail: str, retry_after: bool = False) -> None:
    """Send a complete JSON error answer ``{"detail": ...}`` that closes the connection.

    Args:
        send: the ASGI ``send`` callable.
        status: HTTP status code.
        detail: the message.
        retry_after: add ``Retry-After`` (:data:`~fer_app.limits.RETRY_AFTER_S` seconds).
    """
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close"), (b"cache-control", b"no-store")]
    if retry_after:
        headers.append((b"retry-after", str(RETRY_AFTER_S).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def validation_error(_request: Any, exc: Any) -> Any:
    """FastAPI's handler for ``RequestValidationError``: 422 with each error's ``loc``, ``msg`` and
    ``type``, never the ``input`` (it may be a password, or text such as an unpaired surrogate that
    cannot be encoded: FastAPI's default handler answers 500 on it), as ASCII-escaped JSON."""
    from starlette.responses import Response

    errors = [{"loc": [str(part) for part in e.get("loc", ())], "msg": str(e.get("msg", "")),
               "type": str(e.get("type", ""))} for e in exc.errors()]
    body = json.dumps({"detail": errors}, ensure_ascii=True)
    return Response(body, status_code=422, media_type="application/json")

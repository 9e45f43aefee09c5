"""How much work one request may ask of the server, and how many may run at once.

Every limit is an environment variable read once at start-up; the defaults suit a 2-core CPU.

=============================  ========================  =============================================
Variable                        Default                   Meaning
=============================  ========================  =============================================
``FER_MAX_UPLOAD_MB``           20                        largest file (image or video), MB
``FER_MAX_REQUEST_MB``          100                       largest request body, MB (checked from
                                                          ``Content-Length`` before it is read)
``FER_MAX_FILES``               32                        files per batch request
``FER_MAX_REQUEST_MEGAPIXELS``  100                       pixels of all images of one request, from
                                                          their headers, before any is decoded
``FER_MAX_VIDEO_SECONDS``       120                       seconds of video analysed per request
``FER_INFERENCE_SLOTS``         2                         requests running inference at once, UI and
                                                          REST together
``FER_MAX_QUEUE``               16                        requests waiting for a slot; one more gets
                                                          503 with ``Retry-After``
``FER_QUEUE_TIMEOUT_S``         30                        longest wait for a slot before 503
=============================  ========================  =============================================
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager


def _env(name: str, default: float, allow_zero: bool = False) -> float:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        number = float(value)
    except ValueError as exc:
        raise RuntimeError(f"{name}={value!r} is not a number") from exc
    if number < 0 or (number == 0 and not allow_zero):
        raise RuntimeError(f"{name}={value!r} must be {'>= 0' if allow_zero else 'positive'}")
    return number


MB = 1024 * 1024
#: Largest accepted file, bytes.
MAX_UPLOAD_BYTES: int = int(_env("FER_MAX_UPLOAD_MB", 20) * MB)
#: Largest accepted request body, bytes.
MAX_REQUEST_BYTES: int = int(_env("FER_MAX_REQUEST_MB", 100) * MB)
#: Most files in one batch request.
MAX_FILES: int = int(_env("FER_MAX_FILES", 32))
#: Most pixels (width x height summed over the images) in one request.
MAX_REQUEST_PIXELS: int = int(_env("FER_MAX_REQUEST_MEGAPIXELS", 100) * 1_000_000)
#: Longest video analysed per request, seconds.
MAX_VIDEO_SECONDS: float = _env("FER_MAX_VIDEO_SECONDS", 120)
#: Requests running inference at once.
INFERENCE_SLOTS: int = int(_env("FER_INFERENCE_SLOTS", 2))
#: Requests allowed to wait for a slot.
MAX_QUEUE: int = int(_env("FER_MAX_QUEUE", 16, allow_zero=True))
#: Seconds a request waits for a slot before it is refused.
QUEUE_TIMEOUT_S: float = _env("FER_QUEUE_TIMEOUT_S", 30)
#: ``Retry-After`` seconds sent with a 503.
RETRY_AFTER_S: int = 5


class RequestTooLargeError(ValueError):
    """A request asks for more than a limit allows (files, pixels, bytes); HTTP 413."""


class ServerBusyError(RuntimeError):
    """Every inference slot is taken and the waiting line is full (or the wait timed out); HTTP 503.

    Attributes:
        retry_after_s: seconds a client should wait before trying again.
    """

    def __init__(self, message: str, retry_after_s: int = RETRY_AFTER_S) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class InferenceLimiter:
    """At most ``slots`` holders at once, at most ``max_queue`` waiting, each for at most
    ``timeout_s`` seconds; everyone else is refused at once with :class:`ServerBusyError`.

    One instance is shared by the UI and the REST routes, so together they never run more
    inference than the machine has room for. Thread-safe.

    Args:
        slots: concurrent holders (>= 1).
        max_queue: waiting callers (>= 0).
        timeout_s: longest wait, seconds (> 0).
    """

    def __init__(self, slots: int = INFERENCE_SLOTS, max_queue: int = MAX_QUEUE,
                 timeout_s: float = QUEUE_TIMEOUT_S) -> None:
        if slots < 1 or max_queue < 0 or not timeout_s > 0:
            raise ValueError(f"need slots >= 1, max_queue >= 0, timeout_s > 0; got {slots}, {max_queue}, {timeout_s}")
        self.slots, self.max_queue, self.timeout_s = int(slots), int(max_queue), float(timeout_s)
        self._semaphore = threading.BoundedSemaphore(self.slots)
        self._lock = threading.Lock()
        self.waiting = 0
        self.running = 0

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one slot for the body of a ``with`` block.

        Raises:
            ServerBusyError: no slot came free and the line is full, or none came free within
                ``timeout_s``.
        """
        if not self._semaphore.acquire(blocking=False):
            with self._lock:
                if self.waiting >= self.max_queue:
                    raise ServerBusyError(f"the server is busy ({self.running} requests running, {self.waiting} "
                                          f"waiting); try again in {RETRY_AFTER_S} s")
                self.waiting += 1
            try:
                acquired = self._semaphore.acquire(timeout=self.timeout_s)
            finally:
                with self._lock:
                    self.waiting -= 1
            if not acquired:
                raise ServerBusyError(f"the server is busy (no free slot within {self.timeout_s:.0f} s); "
                                      f"try again in {RETRY_AFTER_S} s")
        with self._lock:
            self.running += 1
        try:
            yield
        finally:
            with self._lock:
                self.running -= 1
            self._semaphore.release()


class BodySizeLimitMiddleware:
    """ASGI middleware that refuses an oversized POST/PUT body from its ``Content-Length`` header,
    before a byte of it is read or parsed: 413 above the limit, 411 when an upload route gets a
    body without ``Content-Length`` (chunked), so no parser ever sees an unbounded body.

    Args:
        app: the ASGI app to wrap.
        limits: path prefix -> largest body in bytes; the longest matching prefix applies, paths
            with no match are passed through unchanged.
    """

    def __init__(self, app, limits: dict[str, int]) -> None:  # noqa: ANN001 (any ASGI app)
        self.app = app
        self.limits = sorted(limits.items(), key=lambda kv: -len(kv[0]))

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001 (ASGI signature)
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH"):
            limit = next((n for prefix, n in self.limits if scope["path"].startswith(prefix)), None)
            if limit is not None:
                length = dict(scope["headers"]).get(b"content-length")
                if length is None:
                    return await _refuse(send, 411, "send the body with a Content-Length header")
                if not length.isdigit() or int(length) > limit:
                    return await _refuse(send, 413, f"request body larger than {limit / MB:.0f} MB")
        await self.app(scope, receive, send)


async def _refuse(send, status: int, detail: str) -> None:  # noqa: ANN001 (ASGI send)
    import json

    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})

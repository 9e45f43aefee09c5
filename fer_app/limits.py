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
``FER_MAX_VIDEO_FRAMES``        7200 (120 s x 60/s)       frames *decoded* per video request (sampled
                                                          out or not; default ``FER_MAX_VIDEO_SECONDS``
                                                          x 60, the highest ``sample_fps``): bounds
                                                          the work of a file of many frames whatever
                                                          its timestamps say; past it the analysis
                                                          stops, keeps what it has and says so
                                                          (``truncated``)
``FER_MAX_FACES``               64                        faces classified per image (or video
                                                          frame), the highest detection scores first;
                                                          the rest are counted in ``faces_dropped``
``FER_MAX_REQUEST_FACES``       256                       faces classified per request (all images
                                                          of a batch); the rest as above
``FER_REQUEST_BUDGET_S``        120                       seconds of inference per batch request;
                                                          files not started by then get the error
                                                          "not processed: time budget spent"
``FER_INFERENCE_SLOTS``         2                         requests running inference at once, UI and
                                                          REST together
``FER_MAX_QUEUE``               16                        requests waiting for a slot; one more gets
                                                          503 with ``Retry-After``
``FER_QUEUE_TIMEOUT_S``         30                        longest wait for a slot before 503
``FER_CACHE_MAX_AGE_S``         3600                      age in seconds after which Gradio's cached
                                                          uploads and outputs and the app's download
                                                          folders are deleted (checked every
                                                          ``min(age, 600)`` s, and on each new batch)
``FER_DOWNLOADS_MAX_MB``        500                       total size of the app's download folders
                                                          (CSV/JSON/PNG/annotated MP4); the oldest
                                                          are deleted first when over it
=============================  ========================  =============================================
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from fer_core.options import MAX_SAMPLE_FPS


def env_number(name: str, default: float, allow_zero: bool = False) -> float:
    """The environment variable ``name`` as a number, ``default`` when unset or empty.

    Raises:
        RuntimeError: not a number, negative, or zero when ``allow_zero`` is false.
    """
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
MAX_UPLOAD_BYTES: int = int(env_number("FER_MAX_UPLOAD_MB", 20) * MB)
#: Largest accepted request body, bytes.
MAX_REQUEST_BYTES: int = int(env_number("FER_MAX_REQUEST_MB", 100) * MB)
#: Most files in one batch request.
MAX_FILES: int = int(env_number("FER_MAX_FILES", 32))
#: Most pixels (width x height summed over the images) in one request.
MAX_REQUEST_PIXELS: int = int(env_number("FER_MAX_REQUEST_MEGAPIXELS", 100) * 1_000_000)
#: Longest video analysed per request, seconds.
MAX_VIDEO_SECONDS: float = env_number("FER_MAX_VIDEO_SECONDS", 120)
#: Most video frames decoded per request (analysed or skipped by ``sample_fps``).
MAX_VIDEO_FRAMES: int = max(1, int(env_number("FER_MAX_VIDEO_FRAMES", MAX_VIDEO_SECONDS * MAX_SAMPLE_FPS)))
#: Most faces classified per image or video frame.
MAX_FACES: int = max(1, int(env_number("FER_MAX_FACES", 64)))
#: Most faces classified per request (a batch's images together).
MAX_REQUEST_FACES: int = max(1, int(env_number("FER_MAX_REQUEST_FACES", 256)))
#: Seconds of inference a batch request may use; files not started by then are not processed.
REQUEST_BUDGET_S: float = env_number("FER_REQUEST_BUDGET_S", 120)
#: Age, seconds, after which cached uploads, outputs and download folders are deleted.
CACHE_MAX_AGE_S: int = max(1, int(env_number("FER_CACHE_MAX_AGE_S", 3600)))
#: Seconds between two sweeps of Gradio's cache for files older than :data:`CACHE_MAX_AGE_S`.
CACHE_SWEEP_EVERY_S: int = min(CACHE_MAX_AGE_S, 600)
#: Largest total size of the app's download folders, bytes.
DOWNLOADS_MAX_BYTES: int = int(env_number("FER_DOWNLOADS_MAX_MB", 500) * MB)
#: Requests running inference at once.
INFERENCE_SLOTS: int = int(env_number("FER_INFERENCE_SLOTS", 2))
#: Requests allowed to wait for a slot.
MAX_QUEUE: int = int(env_number("FER_MAX_QUEUE", 16, allow_zero=True))
#: Seconds a request waits for a slot before it is refused.
QUEUE_TIMEOUT_S: float = env_number("FER_QUEUE_TIMEOUT_S", 30)
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

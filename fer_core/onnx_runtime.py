"""ONNX Runtime sessions for the whole library, made in one place and without torch.

Every ONNX model of ``fer_core`` (the MTCNN networks of :mod:`fer_core.mtcnn`, ...) gets its
``onnxruntime.InferenceSession`` from :func:`session`: CPU execution provider, a fixed intra-op thread
count, one inter-op thread, and worker threads that sleep instead of spinning while idle. On a
2-core CPU ORT's default spinning pools made 2-thread runs about 2x slower than torch (the spinning
workers compete with the Python glue between the many small network calls of MTCNN).

Environment:
    FER_THREADS: intra-op threads of sessions made without an explicit ``threads`` (a whole number
        >= 1). Unset: ``min(os.cpu_count(), DEFAULT_MAX_THREADS)``.
"""

from __future__ import annotations

import math
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InvalidArgumentError

if TYPE_CHECKING:  # pragma: no cover - typing only
    import onnxruntime

#: Environment variable giving the intra-op thread count of new sessions.
THREADS_ENV: str = "FER_THREADS"
#: Cap of the default thread count: MTCNN's networks are small and run between numpy steps, so more
#: threads mostly add synchronisation. On the 2-core CI machine the default is 2; under load 1 and 2
#: threads took about the same time (``benchmarks/bench_mtcnn_onnx.py``); above 2 cores not measured.
DEFAULT_MAX_THREADS: int = 4

_sessions: dict[tuple[str, int, int, int], onnxruntime.InferenceSession] = {}
_lock = threading.Lock()


def onnx_available() -> bool:
    """Whether ``onnxruntime`` can be imported (without importing it, nor torch)."""
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


def default_threads() -> int:
    """Intra-op thread count of sessions made without ``threads``: ``$FER_THREADS`` if set, otherwise
    ``min(os.cpu_count(), DEFAULT_MAX_THREADS)`` (at least 1).

    Raises:
        InvalidArgumentError (a ``ValueError``): ``FER_THREADS`` is set but not a whole number >= 1.
    """
    raw = os.environ.get(THREADS_ENV, "").strip()
    if raw:
        return resolve_threads(raw, THREADS_ENV)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, DEFAULT_MAX_THREADS))


def resolve_threads(threads: Any = None, name: str = "threads") -> int:
    """``threads`` as an intra-op thread count, or :func:`default_threads` for ``None``: the one check of a
    thread setting for every network of the library (MTCNN, FaceMesh, the classifier).

    Raises:
        InvalidArgumentError (a ``ValueError``): not a whole number >= 1 (``2.5``, ``"two"``, ``0``).
    """
    if threads is None:
        return default_threads()
    try:
        number = float(threads)
    except (TypeError, ValueError):
        number = 0.0
    if isinstance(threads, bool) or not math.isfinite(number) or number != int(number) or number < 1:
        raise InvalidArgumentError(f"{name} must be a whole number >= 1, got {threads!r}")
    return int(number)


def session(path: str | os.PathLike, threads: int | None = None) -> onnxruntime.InferenceSession:
    """A cached ONNX Runtime CPU session for the model file at ``path``.

    One session is made per ``(resolved path, file mtime and size, threads)`` and shared afterwards (ORT sessions are
    safe to ``run`` from several threads at once).

    Args:
        path: ``.onnx`` file.
        threads: intra-op threads (>= 1); ``None`` = :func:`default_threads`.

    Returns:
        ``onnxruntime.InferenceSession`` with ``CPUExecutionProvider``, ``intra_op_num_threads=threads``,
        ``inter_op_num_threads=1``, ``session.intra_op.allow_spinning=0``, no CPU memory arena (memory
        goes back after a large image) and all graph optimisations.

    Raises:
        InvalidArgumentError (a ``ValueError``): ``threads`` or ``FER_THREADS`` is not a whole number >= 1.
        FileNotFoundError: ``path`` does not exist.
        ImportError: onnxruntime is not installed.
    """
    threads = resolve_threads(threads)
    resolved = Path(path).resolve()
    if not resolved.is_file():
        raise FileNotFoundError(f"ONNX model not found: {resolved}")
    stat = resolved.stat()
    key = (str(resolved), stat.st_mtime_ns, stat.st_size, threads)  # a rewritten file gets a new session
    with _lock:
        cached = _sessions.get(key)
        if cached is not None:
            return cached
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        # No memory arena: MTCNN's P-Net sees a new input shape per image size and pyramid level, and ORT's
        # arena keeps every high-water mark for good (one process: 143 -> 477 MB after six photo sizes; 138 ->
        # 339 MB without it, at the same speed, 20 ms per 640x480 frame either way)
        options.enable_cpu_mem_arena = False
        made = onnxruntime.InferenceSession(str(resolved), sess_options=options, providers=["CPUExecutionProvider"])
        _sessions[key] = made
        return made

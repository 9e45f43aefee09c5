"""Run the app (``python -m fer_app``) in a child process: for the tests and the benchmarks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """Terminate ``proc``, killing it if it has not exited after ``timeout`` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class ServerURL(str):
    """The server's base URL (a ``str``) that also carries its child ``process`` (to kill it, as a
    crash would)."""

    process: subprocess.Popen


@contextmanager
def app_server(log_path: Path, timeout: float = 180.0, stop_timeout: float = 3.0, args: tuple[str, ...] = (),
               command: Sequence[str] = (sys.executable, "-m", "fer_app"), cwd: Path = ROOT,
               **env: str) -> Iterator[ServerURL]:
    """Run ``python -m fer_app`` in a child process on a free loopback port, with extra environment ``env``
    (e.g. ``FER_MODEL``, the limits of :mod:`fer_app.limits`).

    Args:
        log_path: file that receives the server's stdout and stderr.
        args: extra command-line arguments of ``fer-app`` (e.g. ``("--dev",)``).
        command: the server's command line before ``args`` (e.g. an installed ``fer-app``).
        cwd: the server's working folder (the repository by default).
        timeout: seconds to wait for ``/health`` to answer.
        stop_timeout: seconds the server gets to exit on SIGTERM before it is killed.

    Yields:
        The base URL, e.g. ``"http://127.0.0.1:54321"``, as a :class:`ServerURL`.

    Raises:
        RuntimeError: the server exited during start-up (the log's tail is in the message).
        TimeoutError: ``/health`` did not answer within ``timeout``.
    """
    port = free_port()
    full_env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
                "GRADIO_ANALYTICS_ENABLED": "False", **env}
    with log_path.open("w") as log:
        proc = subprocess.Popen([*command, *args], cwd=cwd, env=full_env, stdout=log,
                                stderr=subprocess.STDOUT)
        url = ServerURL(f"http://127.0.0.1:{port}")
        url.process = proc
        try:
            deadline = time.time() + timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"app exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
                try:
                    if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.time() > deadline:
                    raise TimeoutError(f"app not up after {timeout}s:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.5)
            yield url
        finally:
            stop_process(proc, timeout=stop_timeout)

"""Start the real app (python app.py) in a subprocess on a free loopback port."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.hub_server import free_port, stop_process

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def app_server(log_path: Path, timeout: float = 180.0, **env: str) -> Iterator[str]:
    """Run ``python app.py`` with extra environment ``env``; yields the base URL once /health answers."""
    port = free_port()
    full_env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
                "GRADIO_ANALYTICS_ENABLED": "False", **env}
    with log_path.open("w") as log:
        proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=full_env, stdout=log,
                                stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
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
            stop_process(proc)

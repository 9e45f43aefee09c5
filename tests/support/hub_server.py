"""A real Hub-API server for tests: olah serving local git repos (offline mirror mode)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.launch import free_port, stop_process  # noqa: F401 (used here and by tests)

ROOT = Path(__file__).resolve().parents[2]
GIT = ["git", "-c", "user.name=fer-tests", "-c", "user.email=tests@localhost", "-c", "init.defaultBranch=main"]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"nothing listening on port {port} after {timeout}s")


def make_git_repo(mirrors: Path, repo_id: str, files: list[Path]) -> str:
    """Commit ``files`` into ``mirrors/models/<repo_id>`` as a git repo; returns the commit hash."""
    repo = mirrors / "models" / repo_id
    repo.mkdir(parents=True)
    for f in files:
        shutil.copyfile(f, repo / f.name)
    subprocess.run([*GIT, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*GIT, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*GIT, "commit", "-qm", "model"], cwd=repo, check=True)
    return subprocess.run([*GIT, "rev-parse", "HEAD"], cwd=repo, check=True, capture_output=True,
                          text=True).stdout.strip()


@contextmanager
def olah_server(workdir: Path, mirrors: Path) -> Iterator[str]:
    """Run ``olah-cli`` on a free loopback port serving ``mirrors``; yields its base URL."""
    port = free_port()
    config = workdir / "olah.toml"
    config.write_text(
        "[basic]\n"
        f'host = "127.0.0.1"\nport = {port}\n'
        f'repos-path = "{workdir / "repos"}"\n'
        f'mirrors-path = ["{mirrors}"]\n'
        "[accessibility]\noffline = true\n"
    )
    olah = Path(sys.executable).with_name("olah-cli")
    log = (workdir / "olah.log").open("w")
    proc = subprocess.Popen([str(olah), "-c", str(config)], cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc)
        log.close()


def hub_env(url: str, workdir: Path) -> dict[str, str]:
    """This process's environment pointed at the Hub server ``url`` with a fresh cache in ``workdir``."""
    return {**os.environ, "HF_ENDPOINT": url, "HF_HOME": str(workdir / "hf_home"), "HF_HUB_DISABLE_XET": "1"}


def pull_in_subprocess(repo_id: str, workdir: Path, env: dict[str, str],
                       imports: str = "") -> tuple[subprocess.CompletedProcess, dict]:
    """``EmotionRecognizer.from_pretrained(repo_id)`` in a fresh Python with ``env``, as a user would,
    after ``imports`` (e.g. ``"import research.dlib_resnet"`` to register a backbone).

    Returns:
        The finished process (its last stdout line is the resolved revision) and the loaded model's
        state dict (tensors; empty if the process failed).
    """
    from safetensors.torch import load_file

    pulled = workdir / "pulled.safetensors"
    code = (f"{imports}; " if imports else "") + (
        "import sys; from safetensors.torch import save_file; from fer_core import EmotionRecognizer; "
        f"r = EmotionRecognizer.from_pretrained({repo_id!r}); print(r.revision); "
        "save_file({k: v.contiguous() for k, v in r.model.state_dict().items()}, sys.argv[1])")
    pulled.unlink(missing_ok=True)
    proc = subprocess.run([sys.executable, "-c", code, str(pulled)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=180)
    return proc, (load_file(str(pulled)) if proc.returncode == 0 else {})

"""Monitoring load: ``python benchmarks/bench_monitoring.py [--sessions 8] [--seconds 120] [--engine both]``.

For each engine (a SQLite file, and a throw-away PostgreSQL server from Debian's binaries), starts
``python -m fer_app`` with monitoring on, creates an admin and N subjects, and runs N concurrent
sessions that each post one frame every 200 ms (two tracked faces' per-frame results as JSON, one
probability per label the session recorded: the storage path, not inference, which a 2-core CPU
could not do 40 times a second) for the given
time, then end their sessions. Prints frames/s accepted, p50/p95 latency, the aggregate rows
expected and counted (lost = expected - counted) and the database size per session-hour.

Then (``--guessers 16 --guess-seconds 20``, SQLite) a password-guessing attack: 16 threads post
wrong passwords to ``/api/auth/token`` as fast as they are answered, while a probe asks ``/health``
every 50 ms; once with the default login limits and once with them lifted (argon2's bounded
concurrency alone). Prints attempts/s verified (401), refused (429), ``/health`` p50/p95/max, and the
median 401 answer time for known and unknown names side by side (they must not tell which exist).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.launch import ROOT, app_server  # noqa: E402
from tests.support.pgserver import fresh_database, postgres_server  # noqa: E402

SECRET = "bench-secret-Kq7Vw2Lp9Zx4Rt8Nm3Bc6Hd1Fg5Js0"
PASSWORD = "benchmark password"
FRAME_PERIOD_S = 0.2


def database_bytes(url: str) -> int:
    """Size of the database behind ``url`` in bytes: the SQLite file after a write-ahead-log
    checkpoint, or ``pg_database_size``."""
    if url.startswith("sqlite:///"):
        import sqlite3

        path = Path(url.removeprefix("sqlite:///"))
        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return path.stat().st_size
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        return int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])


def run(engine: str, url: str, sessions: int, seconds: float, tmp: Path) -> None:
    env = {"FER_JWT_SECRET": SECRET, "FER_DATABASE_URL": url, "FER_ADMIN_PASSWORD": PASSWORD}
    subprocess.run([sys.executable, "-m", "fer_app.monitoring", "create-admin", "--username", "bench"], cwd=ROOT,
                   env={**os.environ, **env}, check=True, capture_output=True, timeout=120)
    with app_server(tmp / f"{engine}.log", **env) as server, httpx.Client(base_url=server, timeout=30) as http:
        token = http.post("/api/auth/token", data={"username": "bench", "password": PASSWORD}).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        ids, labels = [], []
        for i in range(sessions):
            subject = http.post("/api/subjects", json={"label": f"subject {i}"}, headers=headers).json()
            started = http.post("/api/sessions", json={"subject_id": subject["id"]}, headers=headers).json()
            ids.append(started["id"])
            labels = started["labels"]  # the server's model's labels, as each session records them
        size_before = database_bytes(url)
        latencies: list[float] = []
        accepted, failed = [0], [0]
        lock = threading.Lock()
        rng = np.random.default_rng(0)
        probs = rng.dirichlet(np.ones(len(labels)), size=64)

        def client(sid: int) -> None:
            with httpx.Client(base_url=server, timeout=30, headers=headers) as own:
                start = time.perf_counter()
                for k in range(int(seconds / FRAME_PERIOD_S)):
                    due = start + k * FRAME_PERIOD_S
                    time.sleep(max(0.0, due - time.perf_counter()))
                    frame = {"time_s": k * FRAME_PERIOD_S, "faces": [
                        {"face_id": face, "probs": dict(zip(labels, probs[(k + face) % 64].tolist()))}
                        for face in (1, 2)]}
                    t = time.perf_counter()
                    r = own.post(f"/api/sessions/{sid}/frames", json={"frames": [frame]})
                    with lock:
                        latencies.append((time.perf_counter() - t) * 1000)
                        accepted[0] += r.status_code == 200
                        failed[0] += r.status_code != 200
                own.post(f"/api/sessions/{sid}/end")

        threads = [threading.Thread(target=client, args=(sid,)) for sid in ids]
        wall = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wall = time.perf_counter() - wall
        size_after = database_bytes(url)
        counted = 0
        for sid in ids:
            counted += len(http.get(f"/api/sessions/{sid}/timeline", headers=headers).json()["rows"])
    expected = sessions * 2 * int(np.ceil(int(seconds / FRAME_PERIOD_S) * FRAME_PERIOD_S))
    per_session_hour = (size_after - size_before) / sessions * (3600 / seconds)
    print(f"{engine}: {sessions} sessions x {seconds:.0f} s at {1 / FRAME_PERIOD_S:.0f} frames/s (2 faces each): "
          f"{accepted[0]} frames accepted, {failed[0]} refused, {accepted[0] / wall:.1f} frames/s; latency p50 "
          f"{statistics.median(latencies):.0f} ms, p95 {np.percentile(latencies, 95):.0f} ms; aggregate rows "
          f"expected {expected}, counted {counted}, lost {expected - counted}; database +{size_after - size_before:,} "
          f"bytes = {per_session_hour / 1e6:.2f} MB per session-hour")


def guess(label: str, url: str, guessers: int, seconds: float, tmp: Path, **limits: str) -> None:
    """``guessers`` threads guessing passwords for ``seconds`` while ``/health`` is probed; prints the figures."""
    env = {"FER_JWT_SECRET": SECRET, "FER_DATABASE_URL": url, "FER_ADMIN_PASSWORD": PASSWORD, **limits}
    subprocess.run([sys.executable, "-m", "fer_app.monitoring", "create-admin", "--username", f"victim-{label}"],
                   cwd=ROOT, env={**os.environ, **env}, check=True, capture_output=True, timeout=120)
    with app_server(tmp / f"guess-{label}.log", **env) as server:
        stop = time.perf_counter() + seconds
        codes: dict[int, int] = {}
        health: list[float] = []
        answer_ms: dict[str, list[float]] = {"known": [], "unknown": []}  # 401s, the two kinds side by side
        lock = threading.Lock()

        def guesser(i: int) -> None:
            with httpx.Client(base_url=server, timeout=60) as own:
                k = 0
                while time.perf_counter() < stop:
                    user = f"victim-{label}" if k % 2 else f"nobody-{i}-{k}"
                    t = time.perf_counter()
                    r = own.post("/api/auth/token", data={"username": user, "password": f"guess {i} {k}"})
                    ms = (time.perf_counter() - t) * 1000
                    with lock:
                        codes[r.status_code] = codes.get(r.status_code, 0) + 1
                        if r.status_code == 401:
                            answer_ms["known" if k % 2 else "unknown"].append(ms)
                    k += 1

        def probe() -> None:
            with httpx.Client(base_url=server, timeout=30) as own:
                while time.perf_counter() < stop:
                    t = time.perf_counter()
                    own.get("/health")
                    health.append((time.perf_counter() - t) * 1000)
                    time.sleep(0.05)

        threads = [threading.Thread(target=guesser, args=(i,)) for i in range(guessers)] + [threading.Thread(
            target=probe)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    other = {k: v for k, v in codes.items() if k not in (401, 429)}
    print(f"login guessing ({label}): {guessers} guessers x {seconds:.0f} s: {codes.get(401, 0) / seconds:.1f} "
          f"attempts/s verified (401), {codes.get(429, 0) / seconds:.1f}/s refused (429), other {other}; "
          f"/health p50 {statistics.median(health):.0f} ms, "
          f"p95 {np.percentile(health, 95):.0f} ms, max {max(health):.0f} ms ({len(health)} probes)")
    if answer_ms["known"] and answer_ms["unknown"]:  # same work either way: one Argon2 check
        print(f"  401 answer p50: known name {statistics.median(answer_ms['known']):.0f} ms, unknown name "
              f"{statistics.median(answer_ms['unknown']):.0f} ms ({len(answer_ms['known'])} / "
              f"{len(answer_ms['unknown'])} answers)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sessions", type=int, default=8)
    p.add_argument("--seconds", type=float, default=120)
    p.add_argument("--engine", choices=("sqlite", "postgresql", "both", "none"), default="both",
                   help="engines of the session load (none: only the guessing attack)")
    p.add_argument("--guessers", type=int, default=16)
    p.add_argument("--guess-seconds", type=float, default=20, help="0 skips the guessing attack")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        tmp_path = Path(tmp)
        if args.engine in ("sqlite", "both"):
            run("sqlite", f"sqlite:///{tmp_path / 'fer.db'}", args.sessions, args.seconds, tmp_path)
        if args.engine in ("postgresql", "both"):
            server = stack.enter_context(postgres_server())
            run("postgresql", fresh_database(server), args.sessions, args.seconds, tmp_path)
        if args.guess_seconds > 0:
            guess("default limits", f"sqlite:///{tmp_path / 'guess1.db'}", args.guessers, args.guess_seconds, tmp_path)
            guess("limits lifted", f"sqlite:///{tmp_path / 'guess2.db'}", args.guessers, args.guess_seconds, tmp_path,
                  FER_LOGIN_PER_CLIENT="1000000", FER_LOGIN_FAILURES="1000000")


if __name__ == "__main__":
    main()

"""A bounded attack on a local server: ``python benchmarks/bench_abuse.py [--seconds 60] [--clients 16]``.

Starts ``python app.py`` (bundled model, the default limits of :mod:`app_ui.limits`) on a free
loopback port and, all at once:

- 100 oversize uploads (25 MB bodies to ``/api/predict``, over the 20 MB limit),
- 50 batch requests of 200 small JPEGs each to ``/api/predict/batch`` (over the 32-file limit),
- 200 malformed images (truncated JPEGs and PNGs, random bytes behind image magic numbers),
- 16 clients sending valid 640x480 one-face photos to ``/api/predict`` for 60 s,

while a probe sends one normal request every 0.5 s. Prints the answers per kind of request, the
5xx count, whether the server survived, its RSS before/after, and the probe's p50/p95 latency
before and during the attack.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app_ui.launch import app_server  # noqa: E402
from benchmarks.common import ASTRONAUT, frame_640x480, server_rss_mb  # noqa: E402


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def malformed(n: int) -> list[bytes]:
    """``n`` broken images: truncated JPEG/PNG at many offsets and random bytes behind magic numbers."""
    rng = np.random.default_rng(0)
    face = Image.open(ASTRONAUT).convert("RGB").resize((128, 128))
    png = io.BytesIO()
    face.save(png, "PNG")
    sources = [jpeg(face), png.getvalue()]
    magics = [b"\xff\xd8\xff\xe0", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"II*\x00", b"RIFF\x00\x10\x00\x00WEBPVP8 "]
    out = []
    for i in range(n):
        if i % 2:
            data = sources[i % 4 // 2]
            out.append(data[: int(rng.integers(1, len(data) * 0.9))])
        else:
            out.append(magics[i % len(magics)] + rng.integers(0, 256, 2000, dtype=np.uint8).tobytes())
    return out


class Tally:
    """Thread-safe counts of answers (status code or exception name) per kind of request."""

    def __init__(self) -> None:
        self.counts: dict[str, Counter] = {}
        self.lock = threading.Lock()

    def add(self, kind: str, answer: int | str) -> None:
        with self.lock:
            self.counts.setdefault(kind, Counter())[answer] += 1

    def server_errors(self) -> int:
        return sum(n for c in self.counts.values() for k, n in c.items() if isinstance(k, int) and k >= 500)


def send(tally: Tally, kind: str, url: str, **kwargs) -> int | str:
    try:
        answer: int | str = httpx.post(url, timeout=120, **kwargs).status_code
    except httpx.HTTPError as exc:  # e.g. the server closed the connection on an oversize body
        answer = type(exc).__name__
    tally.add(kind, answer)
    return answer


def probe(url: str, photo: bytes, stop: threading.Event, latencies: list[float], tally: Tally) -> None:
    while not stop.is_set():
        start = time.perf_counter()
        if send(tally, "probe (normal request)", f"{url}/api/predict", files={"file": ("p.jpg", photo)}) == 200:
            latencies.append((time.perf_counter() - start) * 1000)
        stop.wait(0.5)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=60, help="how long the valid-request clients run")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--oversize", type=int, default=100)
    p.add_argument("--batches", type=int, default=50)
    p.add_argument("--malformed", type=int, default=200)
    args = p.parse_args()
    photo = jpeg(frame_640x480())
    oversize = np.random.default_rng(1).integers(0, 256, 25 * 1024 * 1024, dtype=np.uint8).tobytes()
    small = jpeg(Image.open(ASTRONAUT).convert("RGB").resize((64, 64)))
    broken = malformed(args.malformed)
    tally = Tally()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "app.log"
        with app_server(log) as url:
            baseline: list[float] = []
            for _ in range(20):
                start = time.perf_counter()
                assert httpx.post(f"{url}/api/predict", files={"file": ("p.jpg", photo)}, timeout=60).status_code == 200
                baseline.append((time.perf_counter() - start) * 1000)
            rss_before = server_rss_mb(url)
            stop, during = threading.Event(), []
            prober = threading.Thread(target=probe, args=(url, photo, stop, during, tally))
            prober.start()
            deadline = time.time() + args.seconds

            def client(_: int) -> None:
                while time.time() < deadline:
                    send(tally, f"valid photo, {args.clients} clients", f"{url}/api/predict",
                         files={"file": ("v.jpg", photo)})

            attacks = [
                ("oversize upload (25 MB)", args.oversize, "", lambda i: {"file": ("big.jpg", oversize)}),
                ("batch of 200 files", args.batches, "/batch",
                 lambda i: [("files", (f"{k}.jpg", small)) for k in range(200)]),
                ("malformed image", args.malformed, "", lambda i: {"file": (f"bad{i}.jpg", broken[i])}),
            ]
            start = time.time()
            with ThreadPoolExecutor(args.clients + len(attacks)) as pool:
                jobs = [pool.submit(client, i) for i in range(args.clients)]
                for kind, n, suffix, files in attacks:
                    jobs.append(pool.submit(lambda k=kind, n=n, s=suffix, f=files: [
                        send(tally, k, f"{url}/api/predict{s}", files=f(i)) for i in range(n)]))
                for job in jobs:
                    job.result()
            attack_s = time.time() - start
            stop.set()
            prober.join()
            health = httpx.get(f"{url}/health", timeout=10)
            rss_after = server_rss_mb(url)
            after = httpx.post(f"{url}/api/predict", files={"file": ("p.jpg", photo)}, timeout=60)
        tracebacks = log.read_text().count("Traceback")
    print(f"attack: {attack_s:.0f} s; answers per kind of request (HTTP status or client-side exception):")
    for kind, counts in tally.counts.items():
        print(f"  {kind:28s} " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items(), key=str)))
    print(f"5xx answers: {tally.server_errors()}; server alive after: /health {health.status_code}, "
          f"a normal request {after.status_code}; tracebacks in the server log: {tracebacks}")
    print(f"server RSS {rss_before:.0f} MB before the attack, {rss_after:.0f} MB after")
    print(f"normal request latency: before p50 {np.percentile(baseline, 50):.0f} ms, p95 "
          f"{np.percentile(baseline, 95):.0f} ms; during the attack p50 {np.percentile(during, 50):.0f} ms, p95 "
          f"{np.percentile(during, 95):.0f} ms ({len(during)} probes)")


if __name__ == "__main__":
    main()

"""Bounded attacks on a local server: ``python benchmarks/bench_abuse.py [--pass 1|2|both] [--seconds 60]``.

Pass 1 (the honest oversize flood) starts ``python -m fer_app`` (bundled model, the default limits of
:mod:`fer_app.limits`) on a free loopback port and, all at once:

- 100 oversize uploads (25 MB bodies to ``/api/predict``, over the 20 MB limit),
- 50 batch requests of 200 small JPEGs each to ``/api/predict/batch`` (over the 32-file limit),
- 200 malformed images (truncated JPEGs and PNGs, random bytes behind image magic numbers),
- 16 clients sending valid 640x480 one-face photos to ``/api/predict`` for 60 s,

while a probe sends one normal request every 0.5 s. Prints the answers per kind of request, the
5xx count, whether the server survived, its RSS before/after, and the probe's p50/p95 latency
before and during the attack.

Pass 2 (issue 27's attacks, one after the other, each on its own) starts the app with its temp
folder (Gradio's cache included) in a fresh directory and a 30-second cache age, then runs: tiny
images (16x16, 200x15), ``Content-Length`` + chunked smuggling of 300 MB, 300 MB of chunked junk
JSON to Gradio's own routes, a 3,600-frame video 1/90000 s apart, 60 distinct 19 MB uploads,
a batch of four 1760x1760 images of 256 faces each, twelve concurrent 87 MB batch requests, and a
body promised at 15 MB that stalls after 1 KB. For each it prints the answers and the time to
answer, ``/health``'s worst latency meanwhile, server RSS and temp-folder size before and after;
then how long the temp folder takes to return to its start (the cache sweep).

The figures go to ``benchmarks/results/abuse_flood.json`` (pass 1) and ``abuse_attacks.json`` (pass 2)
(``--results``) for ``benchmarks/render_readme.py``.
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

from benchmarks.common import (  # noqa: E402
    ASTRONAUT,
    add_results_option,
    frame_640x480,
    run_info,
    save_results,
    server_rss_mb,
)
from tests.support.launch import app_server  # noqa: E402


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


def folder_mb(folder: Path) -> float:
    """Total size of the files under ``folder``, MB."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1024**2


def raw_post(url: str, head: str, parts, timeout: float = 60) -> tuple[str, float]:  # noqa: ANN001 (iterable)
    """Send a hand-made request (``head`` without the blank line) and the body ``parts`` on a raw
    socket; returns the status code (or what went wrong) and the seconds to the answer."""
    import socket

    host, port = url.removeprefix("http://").split(":")
    start = time.perf_counter()
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n")
        try:
            for part in parts:
                sock.sendall(part)
        except OSError:
            pass  # answered and closed while we were sending
        try:
            answer = sock.recv(200)
        except OSError as exc:
            return type(exc).__name__, time.perf_counter() - start
    code = answer.split(b" ")[1].decode() if answer.startswith(b"HTTP/1.1") else repr(answer[:20])
    return code, time.perf_counter() - start


def chunked(data: bytes, times: int = 1) -> object:
    """``data`` ``times`` over as HTTP chunks, then the last chunk (a generator: nothing is held)."""
    for _ in range(times):
        yield f"{len(data):x}\r\n".encode() + data + b"\r\n"
    yield b"0\r\n\r\n"


class HealthWatch:
    """``/health`` asked every 100 ms in a thread; ``worst_ms`` since the last :meth:`reset`."""

    def __init__(self, url: str) -> None:
        self.url, self.worst_ms, self.failures = url, 0.0, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                start = time.perf_counter()
                try:
                    ok = client.get(f"{self.url}/health").status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.failures += not ok
                self.worst_ms = max(self.worst_ms, (time.perf_counter() - start) * 1000)
                self.stop.wait(0.1)

    def reset(self) -> None:
        self.worst_ms, self.failures = 0.0, 0


def counts(answers: Counter | str) -> dict[str, int] | str:
    """An attack's answers for the results file: ``{"413": 3}`` from a Counter, a text as it is."""
    return {str(k): v for k, v in sorted(answers.items(), key=str)} if isinstance(answers, Counter) else answers


def second_pass() -> dict:
    """Issue 27's attacks, one at a time (module docstring)."""
    from benchmarks.common import many_faces_image
    from tests.support.video_clips import dense_clip

    face = Image.open(ASTRONAUT).convert("RGB")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        server_tmp = tmp_path / "server"
        server_tmp.mkdir()
        clip = dense_clip(tmp_path / "dense.mp4", frames=3600, size=(320, 240)).read_bytes()
        crowd = jpeg(many_faces_image(face.crop((140, 30, 310, 200)), 16, 110), quality=85)  # the face, tiled
        with app_server(tmp_path / "app.log", TMPDIR=str(server_tmp), GRADIO_TEMP_DIR=str(server_tmp / "gradio"),
                        FER_CACHE_MAX_AGE_S="30") as url:
            watch = HealthWatch(url)
            disk_start, rss_start = folder_mb(server_tmp), server_rss_mb(url)
            rows: list[dict] = []

            def attack(name: str, fn) -> None:  # noqa: ANN001 (a callable)
                rss, disk = server_rss_mb(url), folder_mb(server_tmp)
                watch.reset()
                start = time.perf_counter()
                answers = fn()
                seconds = time.perf_counter() - start
                rss_after, disk_after = server_rss_mb(url), folder_mb(server_tmp)
                print(f"  {name:44s} {answers}; {seconds:.1f} s; /health worst {watch.worst_ms:.0f} ms "
                      f"({watch.failures} failed); RSS {rss:.0f} -> {rss_after:.0f} MB; temp "
                      f"{disk:.0f} -> {disk_after:.0f} MB", flush=True)
                rows.append({"attack": name, "answers": counts(answers), "seconds": seconds,
                             "health_worst_ms": watch.worst_ms, "health_failures": watch.failures,
                             "rss_mb": [rss, rss_after], "temp_mb": [disk, disk_after]})

            def tiny() -> Counter:
                out = Counter()
                for size in ((16, 16), (200, 15), (15, 200), (1, 1)):
                    buf = io.BytesIO()
                    face.resize(size).save(buf, "PNG")
                    out[httpx.post(f"{url}/api/predict", files={"file": ("t.png", buf.getvalue())}).status_code] += 1
                return out

            junk = b"0," * (4 * 1024 * 1024)

            def smuggle() -> Counter:
                return Counter(raw_post(url, f"POST {path} HTTP/1.1\nHost: x\nContent-Length: 100\n"
                                             "Transfer-Encoding: chunked\nContent-Type: multipart/form-data; "
                                             "boundary=x\n", chunked(junk, 36))[0]
                               for path in ("/api/predict/batch", "/gradio_api/upload"))

            def gradio_routes() -> Counter:
                return Counter(raw_post(url, f"POST {path} HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n"
                                             "Content-Type: application/json\n", chunked(junk, 36))[0]
                               for path in ("/gradio_api/queue/join", "/gradio_api/call/predict",
                                            "/gradio_api/component_server"))

            def video() -> str:
                r = httpx.post(f"{url}/api/predict/video", params={"sample_fps": 0},
                               files={"file": ("dense.mp4", clip)}, timeout=600)
                doc = r.json() if r.status_code == 200 else {}
                return (f"{r.status_code}, {len(doc.get('frames', doc.get('rows', [])))} rows, "
                        f"error {doc.get('error')!r}, truncated {doc.get('video', {}).get('truncated')}")

            def uploads() -> Counter:
                rng = np.random.default_rng(2)
                out = Counter()
                for i in range(60):
                    data = rng.integers(0, 256, 19 * 1024 * 1024, dtype=np.uint8).tobytes()
                    out[httpx.post(f"{url}/gradio_api/upload", files={"files": (f"u{i}.jpg", data)},
                                   timeout=120).status_code] += 1
                return out

            def faces() -> str:
                r = httpx.post(f"{url}/api/predict/batch", files=[("files", (f"{i}.jpg", crowd)) for i in range(4)],
                               params={"min_face_size": 40}, timeout=600)
                results = r.json().get("results", []) if r.status_code == 200 else []
                kept = sum(len(x.get("faces", [])) for x in results)
                dropped = sum(x.get("faces_dropped", 0) for x in results)
                return f"{r.status_code}, {kept} faces classified, {dropped} reported dropped"

            def queued() -> Counter:
                big = [("files", (f"{i}.jpg", np.random.default_rng(i).integers(0, 256, 2_900_000, dtype=np.uint8)
                                  .tobytes())) for i in range(30)]  # ~87 MB
                with ThreadPoolExecutor(12) as pool:
                    codes = list(pool.map(lambda _: send(Tally(), "q", f"{url}/api/predict/batch", files=big),
                                          range(12)))
                return Counter(codes)

            def stall() -> Counter:
                part = b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n'
                return Counter([raw_post(url, "POST /api/predict HTTP/1.1\nHost: x\nContent-Length: 15000000\n"
                                              "Content-Type: multipart/form-data; boundary=x\n",
                                         [part + b"x" * 1024])[0]])

            print("pass 2: issue 27's attacks, one at a time")
            attack("tiny images (16x16, 200x15, 15x200, 1x1)", tiny)
            attack("CL + chunked, 300 MB (batch, gradio upload)", smuggle)
            attack("300 MB chunked junk to 3 Gradio routes", gradio_routes)
            attack("3,600 320x240 frames 1/90000 s apart", video)
            attack("60 distinct 19 MB uploads", uploads)
            attack("4 images x 256 faces in one batch", faces)
            attack("12 concurrent 87 MB batch requests", queued)
            attack("15 MB promised, 1 KB sent, then nothing", stall)
            normal = httpx.post(f"{url}/api/predict", files={"file": ("p.jpg", jpeg(frame_640x480()))}, timeout=60)
            print(f"  a normal request afterwards: {normal.status_code}")
            start = time.perf_counter()
            while folder_mb(server_tmp) > disk_start + 1 and time.perf_counter() - start < 180:
                time.sleep(5)
            swept_s, temp_end, rss_end = time.perf_counter() - start, folder_mb(server_tmp), server_rss_mb(url)
            print(f"  temp folder {temp_end:.0f} MB (start {disk_start:.0f} MB) "
                  f"{swept_s:.0f} s after the attacks (cache age 30 s); server RSS "
                  f"{rss_end:.0f} MB (start {rss_start:.0f} MB)")
            watch.stop.set()
    return {"cache_max_age_s": 30, "attacks": rows, "normal_request_after": normal.status_code,
            "temp_mb_start": disk_start, "temp_mb_end": temp_end, "temp_wait_s": swept_s,
            "rss_mb_start": rss_start, "rss_mb_end": rss_end}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pass", dest="which", choices=("1", "2", "both"), default="both")
    p.add_argument("--seconds", type=float, default=60, help="how long the valid-request clients run")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--oversize", type=int, default=100)
    p.add_argument("--batches", type=int, default=50)
    p.add_argument("--malformed", type=int, default=200)
    add_results_option(p)
    args = p.parse_args()
    if args.which in ("1", "both"):
        info = run_info()
        save_results(args.results, "abuse_flood", info, first_pass(args))
    if args.which in ("2", "both"):
        info = run_info()
        save_results(args.results, "abuse_attacks", info, second_pass())


def first_pass(args: argparse.Namespace) -> dict:
    """The honest oversize flood (module docstring)."""
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
    return {"seconds": args.seconds, "clients": args.clients, "attack_s": attack_s,
            "answers": {kind: counts(c) for kind, c in tally.counts.items()}, "server_errors": tally.server_errors(),
            "health_after": health.status_code, "normal_request_after": after.status_code,
            "tracebacks": tracebacks, "rss_mb_before": rss_before, "rss_mb_after": rss_after,
            "latency_before_ms": {"p50": float(np.percentile(baseline, 50)), "p95": float(np.percentile(baseline, 95))},
            "latency_during_ms": {"p50": float(np.percentile(during, 50)), "p95": float(np.percentile(during, 95)),
                                  "probes": len(during)}}


if __name__ == "__main__":
    main()

"""App load test: ``python benchmarks/bench_app.py [--model DIR] [--callers 8] [--requests 25]``.

Starts ``python -m fer_app`` on a free loopback port, then N concurrent ``gradio_client`` callers each
send M ``/predict`` requests with a 640x480 one-face photo. Prints errors, p50/p95 latency,
requests/s and the server's RSS before and after. Then measures the live tab's per-frame work
(detect + classify + track + annotate + bars) on a 640x480 one-face stream, in frames/s.
The figures go to ``benchmarks/results/app.json`` (``--results``) for ``benchmarks/render_readme.py``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import add_results_option, frame_640x480, run_info, save_results, server_rss_mb  # noqa: E402
from tests.support.launch import app_server  # noqa: E402


def load_test(url: str, image: Path, callers: int, requests: int) -> dict:
    from gradio_client import Client, handle_file

    clients = [Client(url, verbose=False) for _ in range(callers)]
    clients[0].predict(handle_file(str(image)), api_name="/predict")  # warm-up
    rss_before = server_rss_mb(url)
    latencies, errors = [], 0

    def worker(client) -> None:
        nonlocal errors
        for _ in range(requests):
            t = time.perf_counter()
            try:
                faces = client.predict(handle_file(str(image)), api_name="/predict")
                assert len(faces) == 1
                latencies.append((time.perf_counter() - t) * 1000)
            except Exception as exc:  # counted, reported
                errors += 1
                print(f"error: {exc}", file=sys.stderr)

    start = time.perf_counter()
    with ThreadPoolExecutor(callers) as pool:
        list(pool.map(worker, clients))
    wall = time.perf_counter() - start
    rss_after = server_rss_mb(url)
    lat = np.array(latencies)
    print(f"{callers} callers x {requests} /predict requests (640x480, 1 face): {errors} errors")
    print(f"latency p50 {np.percentile(lat, 50):.0f} ms, p95 {np.percentile(lat, 95):.0f} ms; "
          f"{len(lat) / wall:.1f} requests/s")
    print(f"server RSS {rss_before:.0f} MB before, {rss_after:.0f} MB after")
    return {"callers": callers, "requests_per_caller": requests, "errors": errors,
            "p50_ms": float(np.percentile(lat, 50)), "p95_ms": float(np.percentile(lat, 95)),
            "requests_per_s": len(lat) / wall, "server_rss_mb_before": rss_before, "server_rss_mb_after": rss_after}


def live_fps(model: str | None, frames: int = 60) -> dict:
    import torch
    from PIL import Image

    from fer_app.blocks import bars_html
    from fer_core import EmotionRecognizer
    from fer_core.draw import annotate
    from fer_core.track import FaceTracker

    torch.set_num_threads(2)
    rec = EmotionRecognizer.from_pretrained(model)
    tracker = FaceTracker(rec.labels)
    base = np.asarray(frame_640x480())
    times = []
    for i in range(frames):
        frame = np.roll(base, shift=(i % 10) - 5, axis=1)  # a slightly moving face
        t = time.perf_counter()
        pil = Image.fromarray(frame)
        faces = tracker.update(rec.predict(pil), i / 10)
        annotate(pil, faces)
        bars_html(faces, rec.labels)
        times.append(time.perf_counter() - t)
    med = statistics.median(times[5:])
    print(f"live tab per-frame work (640x480, 1 face): median {med * 1000:.1f} ms = {1 / med:.1f} frames/s")
    return {"frames": frames, "median_ms": med * 1000, "frames_per_s": 1 / med}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default=None, help="FER_MODEL for the server (default: bundled)")
    p.add_argument("--callers", type=int, default=8)
    p.add_argument("--requests", type=int, default=25)
    add_results_option(p)
    args = p.parse_args()
    info = run_info()
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "frame.jpg"
        frame_640x480().save(image, quality=90)
        env = {"FER_MODEL": args.model} if args.model else {}
        with app_server(Path(tmp) / "app.log", **env) as url:
            load = load_test(url, image, args.callers, args.requests)
    os.environ.pop("FER_MODEL", None)
    live = live_fps(args.model)
    save_results(args.results, "app", info, {"model": args.model or "bundled default", "load_test": load,
                                             "live_tab": live})


if __name__ == "__main__":
    main()

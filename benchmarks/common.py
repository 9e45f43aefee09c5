"""Test images for the benchmarks (a 640x480 one-face frame, a 1200x630 six-face photo) and the
results files they write (``benchmarks/results/<name>.json``, rendered into the README by
``benchmarks/render_readme.py``)."""

from __future__ import annotations

import json
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FER_SHARED", ROOT.parent / "shared"))
#: Where the benchmarks write their figures (``--results DIR``; ``--results ''`` writes nothing).
RESULTS_DIR = ROOT / "benchmarks" / "results"
ASTRONAUT = ROOT / "fer_app" / "examples" / "astronaut.jpg"
SIX_FACES = ["fer0028642.png", "fer0028652.png", "fer0028643.png", "fer0028671.png", "fer0028657.png",
             "fer0028672.png"]


def frame_640x480() -> Image.Image:
    """The astronaut photo scaled to 480x480 and centred on a 640x480 grey frame (one ~85 px face)."""
    frame = Image.new("RGB", (640, 480), (120, 120, 120))
    frame.paste(Image.open(ASTRONAUT).convert("RGB").resize((480, 480)), (80, 0))
    return frame


def photo_1200x630() -> Image.Image:
    """Six FER+ Valid faces (upscaled to 200 px) in a 3x2 grid on a 1200x630 grey canvas."""
    folder = SHARED / "data" / "ferplus" / "FER2013Valid"
    canvas = Image.new("RGB", (1200, 630), (128, 128, 128))
    for i, name in enumerate(SIX_FACES):
        face = Image.open(folder / name).convert("RGB").resize((200, 200), Image.Resampling.BICUBIC)
        canvas.paste(face, (100 + (i % 3) * 370, 60 + (i // 3) * 310))
    return canvas


def interleaved_times(runs: dict[str, Callable[[], object]], repeats: int, warmup: int = 2) -> dict[str, list[float]]:
    """Wall times (ms) of each ``runs[name]()``, one call of each per round, the runs alternating within each
    round (torch, ONNX, torch, ...), so a change of the machine's load hits every run alike: the way to time a
    ratio here. ``warmup`` untimed rounds first."""
    for _ in range(warmup):
        for fn in runs.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            t = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t) * 1000)
    return times


def interleaved_ms(runs: dict[str, Callable[[], object]], repeats: int, warmup: int = 2) -> dict[str, float]:
    """Median milliseconds of each run of :func:`interleaved_times`."""
    return {name: statistics.median(v) for name, v in interleaved_times(runs, repeats, warmup).items()}


def median_ms(fn: Callable[[], object], repeats: int = 30, warmup: int = 3) -> float:
    """Median wall time of ``fn()`` in milliseconds over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def server_rss_mb(url: str) -> float:
    """Resident memory (MB) of the app process (``python -m fer_app``) listening on ``url``'s port; NaN if not found."""
    import psutil

    port = int(url.rsplit(":", 1)[1])
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if proc.info["cmdline"] and "fer_app" in " ".join(proc.info["cmdline"]):
                connections = getattr(proc, "net_connections", None) or proc.connections
                if any(c.laddr.port == port for c in connections(kind="tcp")):
                    return proc.memory_info().rss / 1024**2
        except (psutil.AccessDenied, psutil.NoSuchProcess):
            continue
    return float("nan")


def many_faces_image(face: Image.Image, per_side: int = 16, cell: int = 110) -> Image.Image:
    """A ``per_side`` x ``per_side`` grid of copies of ``face`` (each ``cell`` px): a crowd photo of
    ``per_side ** 2`` faces (16 x 110 px: 1760x1760, 256 faces)."""
    tile = face.resize((cell, cell))
    canvas = Image.new("RGB", (per_side * cell, per_side * cell), (128, 128, 128))
    for i in range(per_side * per_side):
        canvas.paste(tile, ((i % per_side) * cell, (i // per_side) * cell))
    return canvas


def run_info() -> dict[str, Any]:
    """When and where a benchmark starts: UTC time, the 1-minute load average (other work on the
    machine slows every figure), CPU, cores, Python and torch versions. Call it first thing."""
    import torch

    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in (cpuinfo.read_text().splitlines() if cpuinfo.exists() else [])
             if line.startswith("model name")]
    cpu = names[0] if names else platform.processor()
    return {"started_utc": datetime.now(UTC).isoformat(timespec="seconds"), "load_1min_at_start": os.getloadavg()[0],
            "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "_t0": time.perf_counter()}


def save_results(folder: str | os.PathLike | None, name: str, info: dict[str, Any], results: dict[str, Any]) -> None:
    """Write ``results`` with the command line and :func:`run_info`'s ``info`` (plus the wall time and the
    load average at the end) to ``folder/<name>.json``; nothing when ``folder`` is empty."""
    if not folder:
        return
    info = dict(info)
    info["wall_s"] = round(time.perf_counter() - info.pop("_t0"), 1)
    info["load_1min_at_end"] = os.getloadavg()[0]
    script = Path(sys.argv[0]).resolve()
    script_name = script.relative_to(ROOT).as_posix() if script.is_relative_to(ROOT) else script.name
    args = [a for i, a in enumerate(sys.argv[1:]) if a != "--results" and sys.argv[i] != "--results"]
    args = [a for a in args if not a.startswith("--results=")]  # where the file goes is not how it was measured
    doc = {"benchmark": name, "command": shlex.join(["python", script_name, *args]), "run": info,
           "results": results}
    path = Path(folder) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"results written to {path}")


def add_results_option(parser: Any) -> None:
    """``--results DIR`` on an ``argparse`` parser (default :data:`RESULTS_DIR`; ``''``: write nothing)."""
    parser.add_argument("--results", default=str(RESULTS_DIR), metavar="DIR",
                        help="write the figures to DIR/<name>.json for benchmarks/render_readme.py "
                             "(default benchmarks/results; '' writes nothing)")

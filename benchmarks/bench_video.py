"""Video analysis speed and memory on this CPU: ``python benchmarks/bench_video.py [--model DIR]``.

Builds 640x480, 30 frames/s H.264 clips from the astronaut photo (faces drifting a few pixels per
frame), then times :meth:`EmotionRecognizer.analyze_video` end to end (decode + detect + classify +
track) on the default backend (ONNX Runtime) with 2 threads:

- 30 s, one ~85 px face, every frame analysed (target >= 20 frames/s), also with the detector on
  every 2nd and 3rd frame only (``detect_every``; expressions still classified on every frame);
- 30 s, two faces, every frame analysed, and at ``sample_fps=5``;
- peak RSS of a fresh process analysing a 1-minute and a 10-minute clip at ``sample_fps=5``
  (must not grow with the video's length: frames are streamed, only numbers are kept);
- per backend (``--backends``, default ``onnx,torch``; 2 threads each), the one-face clip at every frame
  and with ``detect_every=2``, the backends interleaved run by run (target: ONNX at every frame >= 1.6x
  torch's frames/s); ``results.backends`` holds each rate and the ratio ONNX / torch.

Each timing is the median of ``--repeats`` runs (frames/s = analysed frames / wall seconds). The
figures go to ``benchmarks/results/video.json`` (``--results``) for ``benchmarks/render_readme.py``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_backends import peak_rss_mb  # noqa: E402
from benchmarks.common import ASTRONAUT, add_results_option, frame_640x480, run_info, save_results  # noqa: E402
from fer_core import EmotionRecognizer  # noqa: E402
from fer_core.video import VideoWriter  # noqa: E402

FPS = 30


def make_clip(path: Path, seconds: float, faces: int) -> Path:
    """A 640x480 clip at 30 frames/s: one face (the astronaut frame, ~85 px face) or two (her head,
    ~90 px face, twice), drifting +-8 px horizontally."""
    if faces == 1:
        base = np.asarray(frame_640x480())
    else:
        head = Image.open(ASTRONAUT).convert("RGB").crop((120, 10, 330, 260))  # face near (180, 63, 268, 173)
        canvas = Image.new("RGB", (640, 480), (120, 120, 120))
        canvas.paste(head, (60, 110))
        canvas.paste(head, (370, 110))
        base = np.asarray(canvas)
    with VideoWriter(path, FPS, 640, 480) as writer:
        for i in range(round(seconds * FPS)):
            writer.write(np.roll(base, round(8 * np.sin(i / 15)), axis=1))
    return path


def timed(rec: EmotionRecognizer, clip: Path, repeats: int, **options) -> tuple[float, int, int]:
    """Median wall seconds of analyze_video, frames analysed, faces per frame (max)."""
    walls = []
    for _ in range(repeats):
        t = time.perf_counter()
        analysis = rec.analyze_video(clip, progress=False, **options)
        walls.append(time.perf_counter() - t)
    faces = max((n for _, _, n in analysis.faces_per_frame()), default=0)
    return statistics.median(walls), len(analysis.frames), faces


def rss_child(model: str | None, clip: str, sample_fps: float) -> None:
    """Analyse ``clip`` in this process (default backend) and print peak RSS (MB), rows, the backend and
    whether torch was imported, as JSON."""
    torch.set_num_threads(2)
    rec = EmotionRecognizer.from_pretrained(model, threads=2)
    analysis = rec.analyze_video(clip, sample_fps=sample_fps, progress=False)
    peak = peak_rss_mb()
    print(json.dumps({"peak_rss_mb": peak, "rows": len(analysis.rows), "frames": len(analysis.frames),
                      "backend": rec.backend}))


#: The runs compared across backends, and the target ratio of ONNX's frames/s to torch's at every frame.
BACKEND_RUNS = (("1 face, every frame", {}), ("1 face, detect_every=2", {"detect_every": 2}))
BACKEND_TARGET = 1.6


def compare_backends(recs: dict[str, EmotionRecognizer], clip: Path, repeats: int) -> dict:
    """Frames/s of each backend on :data:`BACKEND_RUNS`, the backends alternating run by run; medians."""
    out = {}
    for name, options in BACKEND_RUNS:
        walls: dict[str, list[float]] = {b: [] for b in recs}
        frames = {}
        for _ in range(repeats):
            for backend, rec in recs.items():
                wall, frames[backend], _ = timed(rec, clip, 1, **options)
                walls[backend].append(wall)
        rates = {b: frames[b] / statistics.median(w) for b, w in walls.items()}
        row = {"options": options, **{f"{b}_frames_per_s": round(r, 2) for b, r in rates.items()}}
        if {"onnx", "torch"} <= set(rates):
            row["ratio_onnx_to_torch"] = round(rates["onnx"] / rates["torch"], 3)
        out[name] = row
        print(f"  {name:24s} " + "   ".join(f"{b} {r:5.1f} frames/s" for b, r in rates.items())
              + (f"   ONNX/torch {row['ratio_onnx_to_torch']:.2f}x" if "ratio_onnx_to_torch" in row else ""))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default=None, help="model folder or Hub id (default: bundled)")
    p.add_argument("--seconds", type=float, default=30, help="length of the timed clips")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--long-minutes", type=float, default=10, help="length of the long clip for peak RSS (0: skip)")
    p.add_argument("--backends", default="onnx,torch", help="backends compared on the one-face clip ('' : none)")
    p.add_argument("--rss-child", nargs=2, metavar=("CLIP", "SAMPLE_FPS"), help=argparse.SUPPRESS)
    add_results_option(p)
    args = p.parse_args()
    if args.rss_child:
        rss_child(args.model, args.rss_child[0], float(args.rss_child[1]))
        return
    info = run_info()
    results = {"model": args.model or "bundled default", "clip_seconds": args.seconds, "fps": FPS,
               "size": [640, 480], "repeats": args.repeats, "threads": 2, "runs": [], "peak_rss": []}
    torch.set_num_threads(2)
    rec = EmotionRecognizer.from_pretrained(args.model, threads=2)
    results["backend"] = rec.backend
    with tempfile.TemporaryDirectory() as tmp:
        one = make_clip(Path(tmp) / "one.mp4", args.seconds, 1)
        two = make_clip(Path(tmp) / "two.mp4", args.seconds, 2)
        rec.analyze_video(one, max_seconds=1, progress=False)  # warm-up
        print(f"640x480 clips, {args.seconds:.0f} s at {FPS} frames/s; median of {args.repeats} runs, 2 threads, "
              f"backend {rec.backend}")
        for name, clip, options in (("1 face, every frame", one, {}),
                                    ("1 face, detect_every=2", one, {"detect_every": 2}),
                                    ("1 face, detect_every=3", one, {"detect_every": 3}),
                                    ("2 faces, every frame", two, {}),
                                    ("2 faces, detect_every=2", two, {"detect_every": 2}),
                                    ("2 faces, sample_fps=5", two, {"sample_fps": 5})):
            wall, frames, faces = timed(rec, clip, args.repeats, **options)
            print(f"  {name:24s} {frames:5d} frames ({faces} faces found) in {wall:6.1f} s: "
                  f"{frames / wall:5.1f} frames/s analysed, {args.seconds / wall:5.2f} s of video per second")
            results["runs"].append({"name": name, "faces": faces, "options": options, "frames": frames,
                                    "wall_s": wall, "frames_per_s": frames / wall,
                                    "video_s_per_s": args.seconds / wall})
        if args.backends:
            recs = {b: rec if b == rec.backend else EmotionRecognizer.from_pretrained(args.model, backend=b, threads=2)
                    for b in args.backends.split(",")}
            for other in recs.values():
                other.analyze_video(one, max_seconds=1, progress=False)  # warm-up
            print(f"backends, one-face clip, interleaved, median of {args.repeats} runs "
                  f"(target: ONNX every frame >= {BACKEND_TARGET}x torch)")
            results["backends"] = compare_backends(recs, one, args.repeats)
            results["backend_target_every_frame"] = BACKEND_TARGET
        if args.long_minutes > 0:
            for minutes in (1.0, args.long_minutes):
                clip = make_clip(Path(tmp) / f"long{minutes:g}.mp4", minutes * 60, 2)
                cmd = [sys.executable, __file__, "--rss-child", str(clip), "5"]
                if args.model:
                    cmd += ["--model", args.model]
                out = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
                print(f"  peak RSS, {minutes:g}-minute 2-face clip at sample_fps=5: {out['peak_rss_mb']:.0f} MB "
                      f"({out['frames']} frames, {out['rows']} rows kept)")
                results["peak_rss"].append({"minutes": minutes, "sample_fps": 5, **out})
    save_results(args.results, "video", info, results)


if __name__ == "__main__":
    main()

"""MTCNN end to end, facenet-pytorch (torch) against fer_core.mtcnn.OnnxMTCNN (ONNX Runtime + numpy):
``python benchmarks/bench_mtcnn_onnx.py [--rounds N] [--repeats N]``.

Images: the 640x480 one-face frame (astronaut on a grey frame, min face 40 px, FaceDetector's adaptive
value there) and the 1200x630 six-face FER+ canvas (min face 52 px, likewise). At 1 and 2 threads
(``torch.set_num_threads`` / ORT ``intra_op_num_threads``) the two detectors are timed alternately
in one process (``--rounds`` rounds of ``--repeats`` calls each, medians over all calls), so that
other load on the machine hits both alike. Prints milliseconds per ``detect`` call and the ratio
ONNX / torch (the goal: <= 0.6-0.7 at 2 threads). Writes nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from facenet_pytorch import MTCNN  # noqa: E402

from benchmarks.common import frame_640x480, photo_1200x630  # noqa: E402
from fer_core.mtcnn.pipeline import OnnxMTCNN  # noqa: E402


def _times(fn, repeats: int) -> list[float]:
    """Wall milliseconds of ``repeats`` calls of ``fn``."""
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def main(argv: list[str] | None = None) -> None:
    """Run the comparison and print one line per (image, threads)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args(argv)
    images = {"640x480 one face": (frame_640x480(), 40), "1200x630 six faces": (photo_1200x630(), 52)}
    print(f"load average at start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
    ref = MTCNN(keep_all=True).eval()
    for threads in (1, 2):
        torch.set_num_threads(threads)
        onnx = OnnxMTCNN(threads=threads)
        for name, (image, min_face) in images.items():
            ref.min_face_size = onnx.min_face_size = min_face

            def run_torch(image=image):
                with torch.inference_mode():
                    ref.detect([image], landmarks=True)

            def run_onnx(image=image, onnx=onnx):
                onnx.detect([image], landmarks=True)

            run_torch(), run_onnx()  # warm up
            t_torch, t_onnx = [], []
            for _ in range(args.rounds):
                t_torch += _times(run_torch, args.repeats)
                t_onnx += _times(run_onnx, args.repeats)
            mt, mo = statistics.median(t_torch), statistics.median(t_onnx)
            print(f"{name:20s} threads={threads}: torch {mt:7.1f} ms  onnx {mo:7.1f} ms  ratio {mo / mt:.2f}")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

"""FaceMesh speed on this CPU: ``python benchmarks/bench_facemesh.py [--rounds N]``.

Prints the median ms per face of the network alone (:meth:`fer_core.mesh.runner.FaceMesh.infer`) on real face
crops (the astronaut photo's face and the six FER+ Valid faces, found by MTCNN), for torch and ONNX Runtime, at
batch 1 and 8, with 1 and 2 intra-op threads; the configurations are interleaved round by round so that load
from other processes spreads over all of them. Then the ROI crop (numpy + Pillow) per face.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ASTRONAUT, photo_1200x630  # noqa: E402
from fer_core.detect import FaceDetector  # noqa: E402
from fer_core.mesh import crop  # noqa: E402
from fer_core.mesh.runner import FaceMesh  # noqa: E402


def face_crops() -> tuple[np.ndarray, list[tuple[Image.Image, list]]]:
    """FaceMesh crops of the real faces of the two test images, and the images with their detections."""
    detector = FaceDetector()
    images = [Image.open(ASTRONAUT).convert("RGB"), photo_1200x630()]
    found = [(image, detector.detect(image)) for image in images]
    crops = np.concatenate([crop.crop_rois(image, crop.face_rois(dets))[0] for image, dets in found])
    return crops, found


def ms_per_face(mesh: FaceMesh, crops: np.ndarray, batch: int, faces: int = 16) -> float:
    """Wall time of ``infer`` over ``faces`` faces in batches of ``batch``, ms per face."""
    picks = np.resize(np.arange(len(crops)), faces)
    start = time.perf_counter()
    for i in range(0, faces, batch):
        mesh.infer(crops[picks[i:i + batch]])
    return (time.perf_counter() - start) * 1000 / faces


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median reported)")
    args = parser.parse_args(argv)
    crops, found = face_crops()
    print(f"{len(crops)} real face crops")
    configs = [(backend, threads, batch) for backend in ("torch", "onnx") for threads in (1, 2) for batch in (1, 8)]
    meshes = {(b, t): FaceMesh(b, threads=t) for b in ("torch", "onnx") for t in (1, 2)}
    for (backend, threads, batch) in configs:  # warm-up
        ms_per_face(meshes[backend, threads], crops, batch, faces=8)
    times: dict[tuple, list[float]] = {c: [] for c in configs}
    for _ in range(args.rounds):
        for backend, threads, batch in configs:
            times[backend, threads, batch].append(ms_per_face(meshes[backend, threads], crops, batch))
    print(f"{'backend':8} {'threads':>7} {'batch':>5} {'ms/face':>8}")
    for (backend, threads, batch), values in times.items():
        print(f"{backend:8} {threads:>7} {batch:>5} {statistics.median(values):8.2f}")
    crop_times = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        for image, dets in found:
            crop.crop_rois(image, crop.face_rois(dets))
        crop_times.append((time.perf_counter() - start) * 1000 / len(crops))
    print(f"ROI crop (numpy + Pillow): {statistics.median(crop_times):.2f} ms/face")


if __name__ == "__main__":
    main()

"""Inference speed and memory on this CPU: ``python benchmarks/bench_inference.py [--model DIR]``.

Prints medians over repeated runs with 2 torch threads: MTCNN on a 640x480 one-face frame,
classification per face at batch 1 and 8 (and the network's forward pass alone, batch 8, with
and without the BatchNorm folding that the recognizer does), end-to-end ``predict`` on the
640x480 frame and on a 1200x630 six-face photo, and peak RSS. Targets: 640x480 end to end
<= 40 ms, classification <= 3 ms/face at batch 8, peak RSS <= 1.5 GB.

Then the backbones side by side (``--backbones``, default MobileNetV2 at 96 px and dlib's
face-recognition ResNet at 112 px): the BatchNorm-folded forward pass, channels-last, at batch 1
and 8, on the same real face crops, with each network built from its config (the time does not
depend on the weights' values).

Then FaceMesh verification (issue 29), each set timed interleaved (round-robin over its configurations, so load
from other processes spreads over all of them): the FaceMesh network on ONNX Runtime in ms/face at batch 1 and
8 with 1 and 2 threads (real face crops, ``benchmarks/bench_facemesh.py``'s), and ``predict`` end to end on the
640x480 frame, the six-face photo and a 640x480 group canvas of 24 faces of 20-40 px (``tests/support/group_canvas.py``,
the canvas of ``tests/test_group_recall.py``): the adaptive smallest face without and with verification
(video/live frames, ``photo=False``), and the still-photo default (20 px, verified); ratios are medians of the
per-round ratios.

The figures go to ``benchmarks/results/inference.json`` (``--results``), which
``benchmarks/render_readme.py`` renders into the README.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import research.dlib_resnet  # noqa: E402,F401  (registers the dlib_resnet backbone compared below)
from benchmarks.common import (  # noqa: E402
    add_results_option,
    frame_640x480,
    interleaved_times,
    median_ms,
    photo_1200x630,
    run_info,
    save_results,
)
from fer_core import EmotionRecognizer  # noqa: E402
from fer_core.align import crop_face  # noqa: E402
from fer_core.backbones import backbone_normalization  # noqa: E402
from fer_core.config import ModelConfig  # noqa: E402
from fer_core.model import EmotionNet, fuse_batchnorm  # noqa: E402
from fer_core.preprocess import crops_to_batch  # noqa: E402


def median_ratio(times: dict[str, list[float]], num: str, den: str) -> float:
    """Median over rounds of ``times[num][i] / times[den][i]``."""
    return statistics.median(a / b for a, b in zip(times[num], times[den]))


def verification_figures(rec: EmotionRecognizer, frame, photo, rounds: int) -> tuple[list[tuple], dict]:  # noqa: ANN001
    """FaceMesh ms/face (ONNX Runtime) and end-to-end ``predict`` with/without verification and at the photo
    default vs adaptive, interleaved; returns printable rows and the JSON keys."""
    from benchmarks.bench_facemesh import face_crops, ms_per_face
    from fer_core.mesh.runner import FaceMesh
    from tests.support.group_canvas import face_sources, group_canvas

    crops, _ = face_crops()
    meshes = {t: FaceMesh("onnx", threads=t) for t in (1, 2)}
    mesh_configs = [(b, t) for t in (1, 2) for b in (1, 8)]
    for b, t in mesh_configs:  # warm-up
        ms_per_face(meshes[t], crops, b, faces=8)
    mesh_values: dict[str, list[float]] = {f"facemesh_batch{b}_threads{t}_ms_per_face": [] for b, t in mesh_configs}
    for _ in range(rounds):  # interleaved: one measurement (16 faces) of each configuration per round
        for b, t in mesh_configs:
            mesh_values[f"facemesh_batch{b}_threads{t}_ms_per_face"].append(ms_per_face(meshes[t], crops, b))
    mesh = {key: statistics.median(values) for key, values in mesh_values.items()}
    crowd = group_canvas((640, 480), 24, (20, 40), "gravel.jpg", seed=0, sources=face_sources(ferplus=0)).image
    images = {"640x480_1face": frame, "1200x630_6faces": photo, "crowd_640x480_24faces": crowd}
    configs = {}
    for name, image in images.items():
        configs[f"{name}_adaptive"] = lambda image=image: rec.predict(image, photo=False, verify_faces=False)
        configs[f"{name}_adaptive_verified"] = lambda image=image: rec.predict(image, photo=False, verify_faces=True)
        configs[f"{name}_photo20_verified"] = lambda image=image: rec.predict(image, photo=True, verify_faces=True)
    faces = {key: len(fn()) for key, fn in configs.items()}
    times = interleaved_times(configs, rounds, warmup=1)
    out: dict = dict(mesh)
    rows = [(key, f"FaceMesh ORT, batch {key.split('batch')[1][0]}, {key.split('threads')[1][0]} thread(s)",
             value, "ms/face") for key, value in mesh.items()]
    for key, values in times.items():
        out[f"predict_{key}_ms"] = statistics.median(values)
        out[f"predict_{key}_faces"] = faces[key]
        rows.append((f"predict_{key}_ms", f"predict {key} ({faces[key]} faces)", statistics.median(values), "ms"))
    for name in images:
        for label, num, den in (("verify_cost_ratio", "adaptive_verified", "adaptive"),
                                ("photo20_vs_adaptive_ratio", "photo20_verified", "adaptive_verified")):
            value = median_ratio(times, f"{name}_{num}", f"{name}_{den}")
            out[f"{label}_{name}"] = value
            rows.append((f"{label}_{name}", f"  ratio {num} / {den}, {name}", value, "x"))
    return rows, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default=None, help="model folder or Hub id (default: bundled)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--rounds", type=int, default=15, help="interleaved rounds of the verification figures")
    p.add_argument("--backbones", default="mobilenet_v2:96,dlib_resnet:112",
                   help="BACKBONE:SIZE,... compared side by side (folded forward pass)")
    add_results_option(p)
    args = p.parse_args()
    info = run_info()
    torch.set_num_threads(args.threads)
    # the figures above the verification ones are of the torch classifier (folded BatchNorm, backbones), as before
    rec = EmotionRecognizer.from_pretrained(args.model, backend="torch")
    frame, photo = frame_640x480(), photo_1200x630()
    n = args.repeats

    faces = rec.predict(photo)
    assert len(rec.predict(frame)) == 1 and len(faces) == 6, "benchmark images must give 1 and 6 faces"
    crops = [crop_face(photo, f.box, f.landmarks, rec.config.crop_margin) for f in faces]
    crops8 = (crops * 2)[:8]
    batch8 = crops_to_batch(crops8, rec.config).contiguous(memory_format=torch.channels_last)
    folded = fuse_batchnorm(rec.model).to(memory_format=torch.channels_last)

    def forward(net: torch.nn.Module) -> float:
        with torch.inference_mode():
            return median_ms(lambda: net(batch8), n) / 8

    rows = [
        ("mtcnn_640x480_ms", "MTCNN detection, 640x480 frame, 1 face",
         median_ms(lambda: rec.detector.detect(frame), n), "ms"),
        ("classify_batch1_ms_per_face", "classification, batch 1",
         median_ms(lambda: rec.classify_crops(crops8[:1]), n), "ms/face"),
        ("classify_batch8_ms_per_face", "classification, batch 8",
         median_ms(lambda: rec.classify_crops(crops8), n) / 8, "ms/face"),
        ("forward_batch8_bn_ms_per_face", "  network forward only, BatchNorm kept", forward(rec.model), "ms/face"),
        ("forward_batch8_folded_ms_per_face", "  network forward only, BatchNorm folded", forward(folded), "ms/face"),
        ("predict_640x480_1face_ms", "predict end to end, 640x480, 1 face", median_ms(lambda: rec.predict(frame), n),
         "ms"),
        ("predict_1200x630_6faces_ms", "predict end to end, 1200x630, 6 faces",
         median_ms(lambda: rec.predict(photo), n), "ms"),
    ]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"model: {rec.source} ({rec.config.backbone}, {rec.config.input_size}px); torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; median of {n} runs")
    for _, name, value, unit in rows:
        print(f"{name:45s} {value:8.1f} {unit}")
    print(f"{'peak RSS':45s} {peak_mb:8.0f} MB")
    results = {"model": rec.source, "backbone": rec.config.backbone, "input_size": rec.config.input_size,
               "threads": torch.get_num_threads(), "repeats": n, **{key: value for key, _, value, _ in rows},
               "peak_rss_mb": peak_mb, "backbones": []}

    print(f"\nFaceMesh verification and the photo default (interleaved, median of {args.rounds} rounds)")
    default = EmotionRecognizer.from_pretrained(args.model)  # the default backend (ONNX Runtime when installed)
    print(f"backend: {default.backend}")
    verify_rows, verify_results = verification_figures(default, frame, photo, args.rounds)
    for _, name, value, unit in verify_rows:
        print(f"{name:60s} {value:8.2f} {unit}")
    results.update(verify_results, verification_rounds=args.rounds, verification_backend=default.backend)

    print("\nbackbones side by side: folded forward pass, ms/face (same crops, channels-last)")
    print(f"{'backbone':16s} {'input':>6s} {'params':>8s} {'batch 1':>8s} {'batch 8':>8s}")
    for item in args.backbones.split(","):
        backbone, size = item.split(":")
        mean, std = backbone_normalization(backbone)
        config = ModelConfig(backbone=backbone, input_size=int(size), mean=mean, std=std)
        net = fuse_batchnorm(EmotionNet(config).eval()).to(memory_format=torch.channels_last)
        batch = crops_to_batch(crops8, config).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            one = median_ms(lambda net=net, batch=batch: net(batch[:1]), n)
            eight = median_ms(lambda net=net, batch=batch: net(batch), n) / 8
        params = sum(p.numel() for p in net.parameters()) / 1e6
        print(f"{backbone:16s} {size + ' px':>6s} {params:7.2f}M {one:8.2f} {eight:8.2f}")
        results["backbones"].append({"backbone": backbone, "input_size": int(size), "params_m": params,
                                     "batch1_ms_per_face": one, "batch8_ms_per_face": eight})
    save_results(args.results, "inference", info, results)


if __name__ == "__main__":
    main()

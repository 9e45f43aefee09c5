"""Emotion classifier speed, torch vs ONNX Runtime: ``python benchmarks/bench_classifier_onnx.py [--model DIR]``.

Milliseconds per face of :meth:`fer_core.classifier.TorchClassifier.probabilities` (BatchNorm-folded,
channels-last, float32) and :meth:`fer_core.classifier.OnnxClassifier.probabilities` (``model.onnx``,
float32; no quantisation: int8 changed 3-6 % of the labels for no speed on this CPU), preprocessing
and probability math included, on 8 real face crops (the astronaut check face and six FER+ Valid faces
upscaled to 160 px, the eighth the astronaut mirrored), at batch 1 and 8, with 1 and 2 threads.
Both run interleaved (torch, ONNX, torch, ...) so a change of load on the machine hits both alike;
medians over ``--repeats`` rounds. Also the largest probability difference between the two.

The figures go to ``benchmarks/results/classifier_onnx.json`` (``--results``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (  # noqa: E402
    SHARED,
    SIX_FACES,
    add_results_option,
    interleaved_ms,
    run_info,
    save_results,
)
from fer_core.classifier import OnnxClassifier, TorchClassifier  # noqa: E402
from fer_core.export_onnx import CHECK_FACES  # noqa: E402
from fer_core.hub import DEFAULT_MODEL_DIR  # noqa: E402
from fer_core.model import load_model  # noqa: E402


def faces() -> list[Image.Image]:
    """8 real face crops: the astronaut, six FER+ Valid faces (160 px RGB), the astronaut mirrored."""
    astronaut = Image.open(CHECK_FACES / "astronaut.png").convert("RGB")
    folder = SHARED / "data" / "ferplus" / "FER2013Valid"
    fer = [Image.open(folder / n).convert("RGB").resize((160, 160), Image.Resampling.BICUBIC) for n in SIX_FACES]
    return [astronaut, *fer, ImageOps.mirror(astronaut)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(DEFAULT_MODEL_DIR), help="model folder with model.onnx (default: bundled)")
    p.add_argument("--threads", default="1,2", help="thread counts to measure, comma-separated")
    p.add_argument("--repeats", type=int, default=40)
    add_results_option(p)
    args = p.parse_args()
    info = run_info()
    crops = faces()
    torch_clf = TorchClassifier(load_model(args.model))
    results: dict[str, object] = {"faces": len(crops), "repeats": args.repeats}
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        onnx_clf = OnnxClassifier(args.model, threads=threads)
        for batch in (1, 8):
            n = 1 if batch == 1 else 8
            ms = interleaved_ms({"torch": lambda n=n: torch_clf.probabilities(crops[:n], None, batch_size=n),
                                 "onnx": lambda n=n, c=onnx_clf: c.probabilities(crops[:n], None, batch_size=n)},
                                args.repeats, warmup=3)
            per_face = {k: round(v / n, 3) for k, v in ms.items()}
            results[f"threads{threads}_batch{batch}_ms_per_face"] = per_face
            print(f"{threads} thread(s), batch {batch}: torch folded {per_face['torch']:.2f} ms/face, "
                  f"ONNX Runtime {per_face['onnx']:.2f} ms/face ({per_face['torch'] / per_face['onnx']:.2f}x)")
    diff = max(float(np.abs(onnx_clf.probabilities(crops, b) - torch_clf.probabilities(crops, b)).max())
               for b in ([False, True] if torch_clf.config.prior is not None else [False]))
    results["max_abs_probability_difference"] = diff
    print(f"largest |p_onnx - p_torch| on these faces: {diff:.2g}")
    save_results(args.results, "classifier_onnx", info, results)


if __name__ == "__main__":
    main()

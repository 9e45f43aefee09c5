"""Saliency map speed: ``python benchmarks/bench_saliency.py [--repeats N] [--threads N]``.

Milliseconds per face of :func:`fer_core.saliency.explain` (Grad-CAM, grad-cam package, on the unfused
bundled MobileNetV2 at ``net.features.18``) with the faces already found (``faces=``: cropping,
preprocessing, one forward and one backward pass to the CAM layer, the CAM, and the map resampled into the
image), at batch 1 (one face, the astronaut) and batch 8 (eight faces on one image: the six-face canvas
of the benchmarks plus two FER+ Valid faces, one call with ``batch_size=8``). Also per method at batch 8.
For comparison: the torch classifier alone is about 3-8 ms per face (``bench_classifier_onnx.py``).
Medians over ``--repeats`` calls, torch with ``--threads`` threads (default 1: on a shared 2-core machine two
threads at batch 1 measured 10x slower, 220 ms a face, from oversubscription).

The figures go to ``benchmarks/results/saliency.json`` (``--results``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (  # noqa: E402
    ASTRONAUT,
    SHARED,
    SIX_FACES,
    add_results_option,
    median_ms,
    run_info,
    save_results,
)
from fer_core.recognizer import EmotionRecognizer  # noqa: E402
from fer_core.saliency import METHODS, explain  # noqa: E402

#: Two more FER+ Valid faces MTCNN finds, for an eight-face image.
TWO_MORE = ["fer0028653.png", "fer0028668.png"]


def eight_faces() -> Image.Image:
    """Eight FER+ Valid faces (upscaled to 160 px) in a 4x2 grid on a 840x440 grey canvas."""
    folder = SHARED / "data" / "ferplus" / "FER2013Valid"
    canvas = Image.new("RGB", (840, 440), (128, 128, 128))
    for i, name in enumerate(SIX_FACES + TWO_MORE):
        face = Image.open(folder / name).convert("RGB").resize((160, 160), Image.Resampling.BICUBIC)
        canvas.paste(face, (40 + (i % 4) * 200, 40 + (i // 4) * 200))
    return canvas


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    add_results_option(p)
    args = p.parse_args()
    info = run_info()
    torch.set_num_threads(args.threads)
    recognizer = EmotionRecognizer.from_pretrained(backend="torch")
    one = Image.open(ASTRONAUT).convert("RGB")
    eight = eight_faces()
    one_faces, eight_faces_found = recognizer.predict(one), recognizer.predict(eight)
    if len(one_faces) != 1 or len(eight_faces_found) != 8:
        raise SystemExit(f"expected 1 and 8 faces, found {len(one_faces)} and {len(eight_faces_found)}")
    results: dict[str, object] = {"threads": args.threads, "repeats": args.repeats, "model": "bundled default",
                                  "layer": explain(recognizer, one, faces=one_faces)[0].layer}
    batch1 = median_ms(lambda: explain(recognizer, one, faces=one_faces, batch_size=1), args.repeats)
    batch8 = median_ms(lambda: explain(recognizer, eight, faces=eight_faces_found, batch_size=8), args.repeats) / 8
    classify8 = median_ms(lambda: recognizer.classify_detections([eight], [eight_faces_found]), args.repeats) / 8
    results["gradcam_batch1_ms_per_face"] = round(batch1, 2)
    results["gradcam_batch8_ms_per_face"] = round(batch8, 2)
    results["classify_batch8_ms_per_face"] = round(classify8, 2)
    print(f"Grad-CAM, {args.threads} thread(s): batch 1 {batch1:.1f} ms/face, batch 8 {batch8:.1f} ms/face "
          f"(classification alone, batch 8: {classify8:.1f} ms/face)")
    per_method = {}
    for method in METHODS:
        ms = median_ms(lambda m=method: explain(recognizer, eight, faces=eight_faces_found, method=m),
                       max(5, args.repeats // 2)) / 8
        per_method[method] = round(ms, 2)
        print(f"  {method:10s} batch 8: {ms:.1f} ms/face")
    results["batch8_ms_per_face_by_method"] = per_method
    save_results(args.results, "saliency", info, results)


if __name__ == "__main__":
    main()

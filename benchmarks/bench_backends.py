"""ONNX Runtime vs torch backend, end to end: ``python benchmarks/bench_backends.py [--threads N] [--repeats N]``.

Both :meth:`EmotionRecognizer.from_pretrained` backends (``"onnx"``: OnnxMTCNN, FaceMesh and the classifier's
model.onnx on ONNX Runtime; ``"torch"``: facenet-pytorch's MTCNN, EmotionNet, FaceMesh in torch) on the bundled
model, with the same thread count, run interleaved (torch, ONNX, torch, ...) so a change of load on the
machine hits both alike; medians over ``--repeats`` rounds:

- ``predict`` end to end (detect + verify + crop + classify) on the 640x480 one-face frame as a video or
  live frame (``photo=False``; target: ONNX <= 0.6x torch's time) and as a still photo (20 px smallest face),
  and on the 1200x630 six-face photo;
- the classifier alone, ms per face at batch 1 and 8 (8 real face crops, preprocessing included);
- peak RSS of a fresh process per backend that loads the recognizer and predicts both images (target:
  <= 250 MB for ONNX), and whether torch was imported there (never, for ONNX).

Each ratio printed is ONNX / torch (below 1: ONNX is faster or smaller). The figures go to
``benchmarks/results/backends.json`` (``--results``).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (  # noqa: E402
    add_results_option,
    frame_640x480,
    interleaved_ms,
    photo_1200x630,
    run_info,
    save_results,
)

BACKENDS = ("torch", "onnx")
RSS_TARGET_MB = 250
TIME_TARGET = 0.6


def peak_rss_mb() -> float:
    """This process's peak resident memory, MB: ``VmHWM`` (``getrusage``'s ``ru_maxrss`` is no use in a child:
    Linux carries the parent's peak over ``fork`` and ``exec``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_child(backend: str, threads: int) -> None:
    """In a fresh process: load ``backend``, predict the frame and the photo; print peak RSS (MB), the faces
    found and whether torch was imported, as JSON."""
    frame, photo = frame_640x480(), photo_1200x630()
    if backend == "torch":
        import torch

        torch.set_num_threads(threads)
    from fer_core import EmotionRecognizer

    rec = EmotionRecognizer.from_pretrained(backend=backend, threads=threads)
    faces = [len(rec.predict(frame)), len(rec.predict(photo))]
    peak = peak_rss_mb()
    print(json.dumps({"peak_rss_mb": round(peak, 1), "faces": faces, "torch_imported": "torch" in sys.modules}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2, help="torch and ONNX Runtime intra-op threads")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--rss-child", choices=BACKENDS, help=argparse.SUPPRESS)
    add_results_option(p)
    args = p.parse_args()
    if args.rss_child:
        rss_child(args.rss_child, args.threads)
        return
    info = run_info()
    import torch

    from benchmarks.bench_classifier_onnx import faces
    from fer_core import EmotionRecognizer

    torch.set_num_threads(args.threads)
    recs = {b: EmotionRecognizer.from_pretrained(backend=b, threads=args.threads) for b in BACKENDS}
    results: dict[str, object] = {"threads": args.threads, "repeats": args.repeats, "targets": {
        "frame_640x480_ratio_max": TIME_TARGET, "onnx_peak_rss_mb_max": RSS_TARGET_MB}}

    def report(key: str, what: str, ms: dict[str, float], unit: str = "ms") -> None:
        ratio = ms["onnx"] / ms["torch"]
        results[key] = {"torch_ms": round(ms["torch"], 3), "onnx_ms": round(ms["onnx"], 3), "ratio": round(ratio, 3)}
        print(f"{what:38s} torch {ms['torch']:8.2f} {unit}   ONNX {ms['onnx']:8.2f} {unit}   "
              f"ratio {ratio:.2f}x ({1 / ratio:.2f}x faster)", flush=True)

    print(f"{args.threads} thread(s), medians of {args.repeats} interleaved rounds; ratio = ONNX / torch")
    # a frame of a video or the live tab is predicted with photo=False (the adaptive, speed-first smallest
    # face, as analyze_video and the app's live tab do); a still photo with the defaults (20 px smallest face)
    for key, what, image, n, photo in (
            ("frame_640x480", "640x480 frame, 1 face, video/live", frame_640x480(), 1, False),
            ("frame_640x480_photo", "640x480 image, 1 face, photo defaults", frame_640x480(), 1, True),
            ("photo_1200x630", "1200x630 photo, 6 faces, photo defaults", photo_1200x630(), 6, True)):
        for b, rec in recs.items():
            assert len(rec.predict(image, photo=photo)) == n, f"{b}: not {n} faces in {key}"
        report(key, what, interleaved_ms({b: lambda r=rec, i=image, p=photo: r.predict(i, photo=p)
                                          for b, rec in recs.items()}, args.repeats))
    crops = faces()
    for batch in (1, 8):
        ms = interleaved_ms({b: lambda r=rec, n=batch: r.classifier.probabilities(crops[:n], None, batch_size=n)
                             for b, rec in recs.items()}, args.repeats * 2)
        report(f"classifier_batch{batch}_per_face", f"classifier, batch {batch}, per face",
               {b: v / batch for b, v in ms.items()})
    rss = {}
    for b in BACKENDS:
        out = subprocess.run([sys.executable, __file__, "--rss-child", b, "--threads", str(args.threads)],
                             capture_output=True, text=True, check=True).stdout
        rss[b] = json.loads(out.strip().splitlines()[-1])
        assert rss[b]["faces"] == [1, 6], rss[b]
    assert not rss["onnx"]["torch_imported"], "the ONNX backend imported torch"
    ratio = rss["onnx"]["peak_rss_mb"] / rss["torch"]["peak_rss_mb"]
    results["peak_rss"] = {"torch_mb": rss["torch"]["peak_rss_mb"], "onnx_mb": rss["onnx"]["peak_rss_mb"],
                           "ratio": round(ratio, 3), "onnx_torch_imported": rss["onnx"]["torch_imported"]}
    print(f"{'peak RSS, fresh process':38s} torch {rss['torch']['peak_rss_mb']:8.0f} MB   "
          f"ONNX {rss['onnx']['peak_rss_mb']:8.0f} MB   ratio {ratio:.2f}x (torch imported by ONNX: "
          f"{rss['onnx']['torch_imported']})")
    frame = results["frame_640x480"]
    results["targets_met"] = {"frame_640x480": frame["ratio"] <= TIME_TARGET,
                              "onnx_peak_rss": rss["onnx"]["peak_rss_mb"] <= RSS_TARGET_MB}
    print(f"targets: 640x480 ONNX <= {TIME_TARGET}x torch: {results['targets_met']['frame_640x480']}; "
          f"ONNX peak RSS <= {RSS_TARGET_MB} MB: {results['targets_met']['onnx_peak_rss']}")
    save_results(args.results, "backends", info, results)


if __name__ == "__main__":
    main()

"""Face-detection recall and false boxes on real photos with hand-drawn face boxes.

``python benchmarks/recall.py [--sizes adaptive,40,30,20,16,12] [--threshold 0.9] [--photos NAME ...]``

Photos and boxes: ``tests/data/photos/faces.json`` (provenance in ``tests/data/photos/SOURCES.md``).
Entries marked ``"dir": "shared"`` are read from ``$FER_SHARED/data/photos`` and skipped when absent.
Each photo runs through :class:`fer_core.detect.FaceDetector` at every minimum face size, once at
its stored resolution (no internal downscaling) and once resized to a longer side of 640 px (the
hand boxes scaled with it; ``min_face_size`` is then in pixels of the 640 px image). Printed per
photo and in total: recall (matched faces / faces), false boxes, and milliseconds per photo.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image  # noqa: E402

from benchmarks.common import ROOT, SHARED  # noqa: E402
from fer_core.detect import FaceDetector  # noqa: E402

PHOTOS = ROOT / "tests" / "data" / "photos"
SHARED_PHOTOS = SHARED / "data" / "photos"
Box = Sequence[float]

#: A detection matches a hand box when their IoU reaches this, or when its centre lies inside the box.
MATCH_IOU: float = 0.4
#: An unmatched detection overlapping an "ambiguous" box by at least this IoU (or centred in it) is ignored.
AMBIGUOUS_IOU: float = 0.1


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _centre_inside(det: Box, box: Box) -> bool:
    cx, cy = (det[0] + det[2]) / 2, (det[1] + det[3]) / 2
    return box[0] <= cx <= box[2] and box[1] <= cy <= box[3]


def match(detections_xyxy: Sequence[Box], faces: Sequence[Box], ambiguous: Sequence[Box] = (),
          scores: Sequence[float] | None = None) -> tuple[int, int, int]:
    """Match detections to hand-drawn faces one-to-one, greedily by score.

    Detections are taken in descending ``scores`` order (given order when ``scores`` is None); each
    takes the still-unmatched face it overlaps most (IoU >= :data:`MATCH_IOU`, or its centre inside
    the face box; ties and centre-only matches by IoU). A detection left unmatched is a false box
    unless it overlaps an ``ambiguous`` box (IoU >= :data:`AMBIGUOUS_IOU` or centre inside).

    Returns:
        ``(tp, fn, fp)``: matched faces, missed faces, false boxes.
    """
    order = range(len(detections_xyxy))
    if scores is not None:
        order = sorted(order, key=lambda i: -scores[i])
    free = set(range(len(faces)))
    tp = fp = 0
    for i in order:
        det = detections_xyxy[i]
        best, best_iou = None, -1.0
        for j in free:
            overlap = iou(det, faces[j])
            if (overlap >= MATCH_IOU or _centre_inside(det, faces[j])) and overlap > best_iou:
                best, best_iou = j, overlap
        if best is not None:
            free.discard(best)
            tp += 1
        elif not any(iou(det, a) >= AMBIGUOUS_IOU or _centre_inside(det, a) for a in ambiguous):
            fp += 1
    return tp, len(free), fp


def load_photos(names: Sequence[str] | None = None) -> list[tuple[str, Image.Image, dict]]:
    """``(name, image, annotation)`` for every annotated photo present (``names`` restricts them)."""
    table = json.loads((PHOTOS / "faces.json").read_text())
    out = []
    for name, ann in table.items():
        if name.startswith("_") or (names and name not in names):
            continue
        path = (SHARED_PHOTOS if ann.get("dir") == "shared" else PHOTOS) / name
        if not path.exists():
            print(f"skipped {name}: {path} not found", file=sys.stderr)
            continue
        out.append((name, Image.open(path).convert("RGB"), ann))
    return out


def _scaled(boxes: Sequence[Box], factor: float) -> list[list[float]]:
    return [[v * factor for v in box] for box in boxes]


def run(photos: list[tuple[str, Image.Image, dict]], sizes: Sequence[int | None], threshold: float,
        long_sides: Sequence[int | None], repeat: int = 1) -> list[dict]:
    """One row per (resolution, min face size, photo): faces, tp, fn, fp, ms, and the false boxes."""
    rows = []
    for long_side in long_sides:
        for name, full, ann in photos:
            factor = 1.0 if long_side is None else long_side / max(full.size)
            image = full if long_side is None else full.resize(
                (round(full.width * factor), round(full.height * factor)), Image.Resampling.BILINEAR)
            faces, ambiguous = _scaled(ann["faces"], factor), _scaled(ann["ambiguous"], factor)
            detector = FaceDetector(threshold=threshold, max_side=max(image.size))
            for size in sizes:
                detector.detect(image, min_face_size=size)  # warm-up
                start = time.perf_counter()
                for _ in range(repeat):
                    found = detector.detect(image, min_face_size=size)
                ms = (time.perf_counter() - start) * 1000 / repeat
                boxes = [d.box for d in found]
                tp, fn, fp = match(boxes, faces, ambiguous, [d.score for d in found])
                false = [(tuple(round(v / factor) for v in d.box), round(d.score, 3)) for d in found
                         if match([d.box], faces, ambiguous)[2]]
                rows.append({"res": "full" if long_side is None else str(long_side), "size": size,
                             "photo": name, "faces": len(faces), "tp": tp, "fn": fn, "fp": fp,
                             "ms": ms, "false_boxes": false, "wh": image.size})
    return rows


def _size_label(size: int | None) -> str:
    return "adaptive" if size is None else str(size)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="adaptive,40,30,20,16,12",
                        help="comma-separated min_face_size values in pixels ('adaptive' for the default)")
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--photos", nargs="*", help="only these file names from faces.json")
    parser.add_argument("--no-640", action="store_true", help="only the stored resolution")
    parser.add_argument("--repeat", type=int, default=1, help="timed detections per photo and setting")
    args = parser.parse_args(argv)
    sizes = [None if s == "adaptive" else int(s) for s in args.sizes.split(",")]
    photos = load_photos(args.photos)
    rows = run(photos, sizes, args.threshold, [None] if args.no_640 else [None, 640], args.repeat)

    print(f"threshold {args.threshold}; recall = matched / hand-counted faces; fp = unmatched boxes "
          "not on an ambiguous face\n")
    print(f"{'res':>4} {'min_face':>8} {'photo':<28} {'WxH':>10} {'faces':>5} {'tp':>3} {'fp':>3} {'ms':>7}  "
          "false boxes")
    for r in rows:
        wh = f"{r['wh'][0]}x{r['wh'][1]}"
        print(f"{r['res']:>4} {_size_label(r['size']):>8} {r['photo']:<28} {wh:>10} {r['faces']:>5} {r['tp']:>3} "
              f"{r['fp']:>3} {r['ms']:>7.0f}  {r['false_boxes'] if r['false_boxes'] else ''}")
    print(f"\n{'res':>4} {'min_face':>8} {'recall':>12} {'false':>5} {'ms/photo':>9}")
    for res in dict.fromkeys(r["res"] for r in rows):
        for size in sizes:
            group = [r for r in rows if r["res"] == res and r["size"] == size]
            faces, tp = sum(r["faces"] for r in group), sum(r["tp"] for r in group)
            fp, ms = sum(r["fp"] for r in group), sum(r["ms"] for r in group) / max(1, len(group))
            recall = f"{tp}/{faces} {tp / faces:.2f}" if faces else "-"
            print(f"{res:>4} {_size_label(size):>8} {recall:>12} {fp:>5} {ms:>9.0f}")


if __name__ == "__main__":
    main()

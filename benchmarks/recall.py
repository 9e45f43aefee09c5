"""Face-detection recall and false boxes on real photos with hand-drawn face boxes, and on group canvases.

``python benchmarks/recall.py [--sizes adaptive,20,16,12] [--verify off,on] [--threshold 0.9] [--photos NAME ...]
[--canvases mixed,photo] [--no-photos] [--json PATH]``

Photos and boxes: ``tests/data/photos/faces.json`` (provenance in ``tests/data/photos/SOURCES.md``).
Entries marked ``"dir": "shared"`` are read from ``$FER_SHARED/data/photos`` and skipped when absent.
Each photo runs through :class:`fer_core.detect.FaceDetector` at every minimum face size, once at
its stored resolution (no internal downscaling) and once resized to a longer side of 640 px (the
hand boxes scaled with it; ``min_face_size`` is then in pixels of the 640 px image).

``--canvases mixed,photo`` adds the group canvases of :mod:`tests.support.group_canvas` (real faces pasted at
16-64 px on textured no-face photos, boxes known by construction; four 640x480 with 24 faces, four 1600x1200
with 30), at their stored resolution only: ``mixed`` with FER+ Valid faces (tight 48 px crops, some of which
MTCNN misses at any size) and the two photo faces, ``photo`` with the astronaut and Grace Hopper alone.

Every setting runs MTCNN once (``verify=False``) and then FaceMesh verification on its boxes
(:meth:`FaceDetector.verify_faces`, as ``detect(verify=True)`` does), so "off" and "on" see the same MTCNN
boxes; "on" time = MTCNN + verification. Printed per image and in total: recall (matched faces / faces),
false boxes, and milliseconds per image; for the canvases also recall by face height.
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
#: Face-height bins (pixels, lower bounds) of the per-size recall of the group canvases.
SIZE_BINS: tuple[int, ...] = (16, 20, 24, 32, 48)


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


def match_faces(detections_xyxy: Sequence[Box], faces: Sequence[Box], ambiguous: Sequence[Box] = (),
                scores: Sequence[float] | None = None) -> tuple[list[int | None], list[bool]]:
    """:func:`match`, itemised: the detection index matched to each face (``None``: missed), and for each
    detection whether it is a false box."""
    order = range(len(detections_xyxy))
    if scores is not None:
        order = sorted(order, key=lambda i: -scores[i])
    free = set(range(len(faces)))
    owner: list[int | None] = [None] * len(faces)
    false = [False] * len(detections_xyxy)
    for i in order:
        det = detections_xyxy[i]
        best, best_iou = None, -1.0
        for j in free:
            overlap = iou(det, faces[j])
            if (overlap >= MATCH_IOU or _centre_inside(det, faces[j])) and overlap > best_iou:
                best, best_iou = j, overlap
        if best is not None:
            free.discard(best)
            owner[best] = i
        elif not any(iou(det, a) >= AMBIGUOUS_IOU or _centre_inside(det, a) for a in ambiguous):
            false[i] = True
    return owner, false


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
    owner, false = match_faces(detections_xyxy, faces, ambiguous, scores)
    tp = sum(o is not None for o in owner)
    return tp, len(faces) - tp, sum(false)


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


def load_canvases(ferplus: bool = True) -> list[tuple[str, Image.Image, dict]]:
    """The group canvases of :func:`tests.support.group_canvas.canvas_set` as ``(name, image, annotation)``
    (annotation: ``faces``, ``ambiguous`` (none) and ``sizes``, each face's height in pixels): with FER+ faces
    and the two photo faces (``ferplus``), or the two photo faces alone (astronaut, Grace Hopper)."""
    from tests.support.group_canvas import canvas_set, face_sources

    return [(c.name, c.image, {"faces": [list(b) for b in c.faces], "ambiguous": [], "sizes": c.sizes})
            for c in canvas_set(face_sources(ferplus=40 if ferplus else 0))]


def _scaled(boxes: Sequence[Box], factor: float) -> list[list[float]]:
    return [[v * factor for v in box] for box in boxes]


def _timed(fn, repeat: int):  # noqa: ANN001, ANN202
    start = time.perf_counter()
    for _ in range(repeat):
        out = fn()
    return out, (time.perf_counter() - start) * 1000 / repeat


def run(photos: list[tuple[str, Image.Image, dict]], sizes: Sequence[int | None], threshold: float,
        long_sides: Sequence[int | None], repeat: int = 1, verify: Sequence[bool] = (False, True),
        face_prob_threshold: float | None = None, warmup: bool = True,
        detector: FaceDetector | None = None) -> list[dict]:
    """One row per (resolution, min face size, verification, image): faces, tp, fn, fp, ms, the false boxes,
    and (when the annotation has ``sizes``) the height of each face and whether it was found."""
    if detector is None:
        detector = FaceDetector(threshold=threshold, verify=False)
    if face_prob_threshold is not None:
        detector.face_prob_threshold = face_prob_threshold
    rows = []
    for long_side in long_sides:
        for name, full, ann in photos:
            factor = 1.0 if long_side is None else long_side / max(full.size)
            image = full if long_side is None else full.resize(
                (round(full.width * factor), round(full.height * factor)), Image.Resampling.BILINEAR)
            faces, ambiguous = _scaled(ann["faces"], factor), _scaled(ann.get("ambiguous", []), factor)
            detector.max_side = max(image.size)  # no internal downscaling
            for size in sizes:
                def mtcnn(size=size, image=image):  # noqa: ANN202
                    return detector.detect(image, threshold=threshold, min_face_size=size, verify=False)

                if warmup:
                    mtcnn()
                found, ms_mtcnn = _timed(mtcnn, repeat)
                checked, ms_verify = found, 0.0
                if any(verify):
                    def verify_boxes(found=found, image=image):  # noqa: ANN202
                        return detector.verify_faces([image], [found])[0][0]

                    checked, ms_verify = _timed(verify_boxes, repeat)
                for on in verify:
                    dets = checked if on else found
                    boxes, scores = [d.box for d in dets], [d.score for d in dets]
                    owner, false = match_faces(boxes, faces, ambiguous, scores)
                    tp = sum(o is not None for o in owner)
                    row = {"res": "full" if long_side is None else str(long_side), "size": size, "verify": on,
                           "photo": name, "faces": len(faces), "tp": tp, "fn": len(faces) - tp, "fp": sum(false),
                           "ms": ms_mtcnn + (ms_verify if on else 0.0), "ms_mtcnn": ms_mtcnn,
                           "ms_verify": ms_verify if on else 0.0,
                           "false_boxes": [(tuple(round(v / factor) for v in d.box), round(d.score, 3),
                                            None if d.face_prob is None else round(d.face_prob, 3))
                                           for d, f in zip(dets, false) if f],
                           "wh": list(image.size)}
                    if "sizes" in ann:
                        row["face_sizes"] = list(ann["sizes"])
                        row["found"] = [o is not None for o in owner]
                    rows.append(row)
    return rows


def _size_label(size: int | None) -> str:
    return "adaptive" if size is None else str(size)


def summarise(rows: list[dict], sizes: Sequence[int | None], verify: Sequence[bool]) -> list[dict]:
    """Totals per (image set, resolution, min face size, verification): faces, tp, fp, recall, mean ms per image,
    and for canvases recall per face-height bin (:data:`SIZE_BINS`)."""
    out = []
    for kind in dict.fromkeys(r["set"] for r in rows):
        for res in dict.fromkeys(r["res"] for r in rows if r["set"] == kind):
            for size in sizes:
                for on in verify:
                    group = [r for r in rows if (r["set"], r["res"], r["size"], r["verify"]) == (kind, res, size, on)]
                    if not group:
                        continue
                    faces, tp = sum(r["faces"] for r in group), sum(r["tp"] for r in group)
                    item = {"set": kind, "res": res, "size": _size_label(size), "verify": on, "images": len(group),
                            "faces": faces, "tp": tp, "recall": tp / faces if faces else None,
                            "fp": sum(r["fp"] for r in group),
                            "ms": sum(r["ms"] for r in group) / len(group),
                            "ms_mtcnn": sum(r["ms_mtcnn"] for r in group) / len(group)}
                    if all("face_sizes" in r for r in group):
                        bins = {}
                        for lo, hi in zip(SIZE_BINS, [*SIZE_BINS[1:], 10**6]):
                            hits = [f for r in group for s, f in zip(r["face_sizes"], r["found"]) if lo <= s < hi]
                            bins[f"{lo}-{hi - 1}" if hi < 10**6 else f">={lo}"] = [sum(hits), len(hits)]
                        item["recall_by_height"] = bins
                    out.append(item)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="adaptive,20,16,12",
                        help="comma-separated min_face_size values in pixels ('adaptive' for the default)")
    parser.add_argument("--verify", default="off,on", help="'off', 'on' or 'off,on': FaceMesh verification")
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--face-prob", type=float, default=None, help="verification threshold (default: library's)")
    parser.add_argument("--photos", nargs="*", help="only these file names from faces.json")
    parser.add_argument("--no-photos", action="store_true", help="skip the annotated photos")
    parser.add_argument("--canvases", default="", help="add group canvases (tests/support/group_canvas): 'mixed' "
                        "(FER+ and photo faces), 'photo' (astronaut and Grace Hopper only) or 'mixed,photo'")
    parser.add_argument("--no-640", action="store_true", help="only the stored resolution")
    parser.add_argument("--repeat", type=int, default=1, help="timed detections per image and setting")
    parser.add_argument("--json", type=Path, default=None, help="write the rows and totals to this file")
    args = parser.parse_args(argv)
    sizes = [None if s == "adaptive" else int(s) for s in args.sizes.split(",")]
    verify = [{"off": False, "on": True}[v] for v in args.verify.split(",")]
    detector = FaceDetector(threshold=args.threshold, verify=False)
    rows = []
    if not args.no_photos:
        photos = load_photos(args.photos)
        for r in run(photos, sizes, args.threshold, [None] if args.no_640 else [None, 640], args.repeat, verify,
                     args.face_prob, detector=detector):
            rows.append({"set": "photos", **r})
    for kind in filter(None, args.canvases.split(",")):
        canvases = load_canvases(ferplus={"mixed": True, "photo": False}[kind])
        for r in run(canvases, sizes, args.threshold, [None], args.repeat, verify, args.face_prob, detector=detector):
            rows.append({"set": kind, **r})

    print(f"threshold {args.threshold}; recall = matched / hand-counted faces; fp = unmatched boxes "
          "not on an ambiguous face; verify: FaceMesh face_prob >= "
          f"{detector.face_prob_threshold if args.face_prob is None else args.face_prob}\n")
    print(f"{'res':>4} {'min_face':>8} {'ver':>3} {'image':<28} {'WxH':>10} {'faces':>5} {'tp':>3} {'fp':>3} "
          f"{'ms':>7}  false boxes (box, score, face_prob)")
    for r in rows:
        wh = f"{r['wh'][0]}x{r['wh'][1]}"
        print(f"{r['res']:>4} {_size_label(r['size']):>8} {'on' if r['verify'] else 'off':>3} {r['photo']:<28} "
              f"{wh:>10} {r['faces']:>5} {r['tp']:>3} {r['fp']:>3} {r['ms']:>7.0f}  "
              f"{r['false_boxes'] if r['false_boxes'] else ''}")
    totals = summarise(rows, sizes, verify)
    print(f"\n{'set':>8} {'res':>4} {'min_face':>8} {'ver':>3} {'recall':>14} {'false':>5} {'ms/image':>9}  "
          "recall by face height (canvases)")
    for t in totals:
        recall = f"{t['tp']}/{t['faces']} {t['recall']:.2f}" if t["faces"] else "-"
        bins = " ".join(f"{k}:{a}/{b}" for k, (a, b) in t.get("recall_by_height", {}).items())
        print(f"{t['set']:>8} {t['res']:>4} {t['size']:>8} {'on' if t['verify'] else 'off':>3} {recall:>14} "
              f"{t['fp']:>5} {t['ms']:>9.0f}  {bins}")
    if args.json:
        args.json.write_text(json.dumps({"command": sys.argv, "rows": rows, "totals": totals}, indent=1) + "\n")
        print(f"written to {args.json}")


if __name__ == "__main__":
    main()

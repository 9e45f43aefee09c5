"""Eye-levelling from FaceMesh's eyes vs MTCNN's eye landmarks: pipeline accuracy on FER+ Valid (issue 29, part 4).

``python research/mesh_alignment.py [--limit N] [--per-canvas 16] [--rotate DEG] [--json PATH]``
``python research/mesh_alignment.py --small-faces 12,16,20,24,32,48 [--limit N]``: classifier accuracy on faces that
small instead (below).

FER+ Valid faces (48x48, those with a majority label) are upscaled to 160 px tiles and placed in a grid on grey
canvases as ``tests/conftest.py``'s ``compose_canvas`` does (40 px gaps, ``--per-canvas`` faces each;
``--rotate DEG`` turns every tile by a random angle in [-DEG, DEG] first, a harder, secondary condition).
Each canvas goes through the shipped detector (MTCNN + FaceMesh verification, default thresholds); the
detection whose centre lies in a tile is that tile's face (tiles without one are counted as missed and left
out). Every face is then cropped with :func:`fer_core.align.crop_face` (same box, margin and size) three ways:

* ``mtcnn``: rotation from MTCNN's two eye landmarks (what the pipeline does today);
* ``mesh``: rotation from FaceMesh's eye centres: the mean of the 16 points of each eye contour of MediaPipe's
  topology (``FACEMESH_RIGHT_EYE`` = the eye on the image's left: 33, 7, 163, 144, 145, 153, 154, 155, 133,
  173, 157, 158, 159, 160, 161, 246; ``FACEMESH_LEFT_EYE``: 263, 249, 390, 373, 374, 380, 381, 382, 362, 398,
  384, 385, 386, 387, 388, 466), passed in place of ``landmarks[0:2]``;
* ``none``: no rotation (reference);

and classified by the bundled model (:meth:`EmotionRecognizer.classify_crops`, its default decisions). Accuracy is
against the FER+ majority label (:func:`fer_train.labels.majority_label`); ``mesh`` vs ``mtcnn`` is compared with
an exact McNemar test (two-sided binomial test on the discordant pairs).

``--small-faces``: how well the classifier does on faces as small as the detector's smallest: every FER+ face
(48x48) is shrunk to each height (Lanczos, as a camera would record a small face), then classified
(:meth:`EmotionRecognizer.classify_crops` scales it up to the network's input as a small crop would be); exact
McNemar of each height against the 48 px original.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fer_core import EmotionRecognizer  # noqa: E402
from fer_core.align import crop_face  # noqa: E402
from fer_train.labels import majority_label  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FER_SHARED", ROOT.parent / "shared"))
VALID = SHARED / "data" / "ferplus" / "FER2013Valid"
TILE, GAP = 160, 40

#: MediaPipe face-mesh eye contours: the subject's right eye (on the image's left) and left eye.
IMAGE_LEFT_EYE: tuple[int, ...] = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
IMAGE_RIGHT_EYE: tuple[int, ...] = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)


def mesh_eyes(mesh: np.ndarray) -> np.ndarray:
    """``(2, 2)`` eye centres ``(x, y)`` (image-left eye first, as MTCNN's landmarks) from a ``(468, 3)`` mesh."""
    return np.stack([mesh[list(IMAGE_LEFT_EYE), :2].mean(0), mesh[list(IMAGE_RIGHT_EYE), :2].mean(0)])


def load_valid(limit: int | None) -> list[tuple[str, int]]:
    """``(name, majority label)`` of FER+ Valid faces that have one, in file order (the first ``limit``)."""
    out = []
    with (VALID / "label.csv").open() as fh:
        for row in csv.reader(fh):
            label = majority_label([float(v) for v in row[2:]])
            if label is not None:
                out.append((row[0], label))
    return out[:limit] if limit else out


def compose(names: list[str], columns: int, angles: list[float]) -> tuple[Image.Image, list[tuple[int, ...]]]:
    """FER+ tiles upscaled to :data:`TILE` px (turned by ``angles`` degrees) in a grid on a grey canvas."""
    rows = math.ceil(len(names) / columns)
    canvas = Image.new("RGB", (columns * (TILE + GAP) + GAP, rows * (TILE + GAP) + GAP), (128, 128, 128))
    tiles = []
    for i, (name, angle) in enumerate(zip(names, angles)):
        face = Image.open(VALID / name).convert("RGB").resize((TILE, TILE), Image.Resampling.BICUBIC)
        if angle:
            face = face.rotate(angle, Image.Resampling.BICUBIC, fillcolor=(128, 128, 128))
        x, y = GAP + (i % columns) * (TILE + GAP), GAP + (i // columns) * (TILE + GAP)
        canvas.paste(face, (x, y))
        tiles.append((x, y, x + TILE, y + TILE))
    return canvas, tiles


def mcnemar(a_right: np.ndarray, b_right: np.ndarray) -> dict:
    """Exact McNemar test of two paired correct/incorrect vectors: discordant counts and the two-sided p."""
    from scipy.stats import binomtest

    only_a, only_b = int(np.sum(a_right & ~b_right)), int(np.sum(~a_right & b_right))
    p = binomtest(only_b, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    return {"only_first_right": only_a, "only_second_right": only_b, "p": float(p)}


def small_faces(rec: EmotionRecognizer, faces: list[tuple[str, int]], heights: list[int]) -> dict:
    """Accuracy of the bundled classifier on FER+ faces shrunk to each of ``heights`` pixels."""
    y = np.asarray([label for _, label in faces])
    tiles = [Image.open(VALID / name).convert("RGB") for name, _ in faces]
    right = {}
    for h in [48, *[h for h in heights if h != 48]]:
        crops = [t if h == 48 else t.resize((h, h), Image.Resampling.LANCZOS) for t in tiles]
        right[h] = rec.classify_crops(crops).argmax(1) == y
    return {"faces": len(faces), "accuracy": {str(h): float(v.mean()) for h, v in sorted(right.items())},
            "vs_48px": {str(h): mcnemar(right[48], v) for h, v in sorted(right.items()) if h != 48}}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="first N labelled Valid faces (default: all)")
    parser.add_argument("--per-canvas", type=int, default=16, help="faces per canvas (a square grid)")
    parser.add_argument("--rotate", type=float, default=0.0, help="turn each tile by U(-DEG, DEG) degrees")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="write the figures to this file")
    parser.add_argument("--small-faces", default="", help="comma-separated face heights: classifier accuracy instead")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rec = EmotionRecognizer.from_pretrained()
    margin = rec.config.crop_margin
    faces = load_valid(args.limit)
    if args.small_faces:
        result = small_faces(rec, faces, [int(h) for h in args.small_faces.split(",")])
        print(json.dumps(result, indent=1))
        if args.json:
            args.json.write_text(json.dumps(result, indent=1) + "\n")
        return result
    rng = np.random.default_rng(args.seed)
    angles = rng.uniform(-args.rotate, args.rotate, len(faces)) if args.rotate else np.zeros(len(faces))
    columns = math.ceil(math.sqrt(args.per_canvas))
    labels, preds, missed, tilts = [], {"mtcnn": [], "mesh": [], "none": []}, 0, []
    for at in range(0, len(faces), args.per_canvas):
        chunk = faces[at:at + args.per_canvas]
        canvas, tiles = compose([n for n, _ in chunk], columns, list(angles[at:at + args.per_canvas]))
        found = rec.detector.detect(canvas)  # MTCNN + FaceMesh verification (default thresholds)
        crops = {key: [] for key in preds}
        for (_name, label), tile in zip(chunk, tiles):
            inside = [d for d in found if tile[0] <= (d.box[0] + d.box[2]) / 2 <= tile[2]
                      and tile[1] <= (d.box[1] + d.box[3]) / 2 <= tile[3]]
            if not inside or inside[0].mesh is None:
                missed += 1
                continue
            d = max(inside, key=lambda d: d.score)
            eyes = d.landmarks.copy()
            eyes[0:2] = mesh_eyes(d.mesh)
            crops["mtcnn"].append(crop_face(canvas, d.box, d.landmarks, margin=margin, align=True))
            crops["mesh"].append(crop_face(canvas, d.box, eyes, margin=margin, align=True))
            crops["none"].append(crop_face(canvas, d.box, None, margin=margin, align=False))
            a = math.atan2(*(d.landmarks[1] - d.landmarks[0])[::-1])
            b = math.atan2(*(eyes[1] - eyes[0])[::-1])
            tilts.append(math.degrees(b - a))
            labels.append(label)
        for key in preds:
            if crops[key]:
                preds[key].append(rec.classify_crops(crops[key]).argmax(1))
        print(f"\r{min(at + args.per_canvas, len(faces))}/{len(faces)} faces, {missed} missed, "
              f"{time.perf_counter() - start:.0f} s", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    y = np.asarray(labels)
    right = {key: np.concatenate(v) == y for key, v in preds.items()}
    tilts_abs = np.abs(np.asarray(tilts))
    result = {
        "faces": len(faces), "classified": int(len(y)), "missed": missed, "rotate_deg": args.rotate,
        "per_canvas": args.per_canvas, "balanced": rec.config.balanced, "crop_margin": margin,
        "accuracy": {key: float(v.mean()) for key, v in right.items()},
        "mesh_vs_mtcnn": mcnemar(right["mtcnn"], right["mesh"]),
        "mtcnn_vs_none": mcnemar(right["none"], right["mtcnn"]),
        "eye_line_difference_deg": {"median_abs": float(np.median(tilts_abs)),
                                    "p90_abs": float(np.percentile(tilts_abs, 90)),
                                    "max_abs": float(tilts_abs.max())},
        "seconds": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()

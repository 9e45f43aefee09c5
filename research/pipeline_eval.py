"""``python -m research.pipeline_eval --model DIR --data DIR``: FER+ faces through the whole inference
pipeline (MTCNN + alignment + crop + classifier) against the classifier on the dataset's own crops.

``fer_train.evaluate`` feeds the network FER2013's 48x48 crops, as in training. A photo goes through
:class:`fer_core.recognizer.EmotionRecognizer` instead: MTCNN finds the face, its landmarks level
the eyes, :func:`fer_core.align.crop_face` cuts a square with the model's ``crop_margin``, and only
then does the classifier run. Whatever that path loses (missed faces, another framing, rotation,
resampling) is invisible to ``fer_train.evaluate`` and is the first thing that differs on real photos.

Each face with a majority label is upscaled to ``size`` pixels (bicubic) and pasted at the centre
of a mid-grey canvas twice that side, as ``benchmarks/bench_crop_margin.py`` does; the detection
overlapping the pasted square best (IoU >= :data:`MIN_IOU`) is classified with and without
alignment. Accuracies are compared on the same faces with the exact McNemar test of
:mod:`research.paired`. The face pixels are FER2013's; the grey border and the upscaling are the
protocol's own (cutting the exact pasted square back out and classifying it loses 0.4-0.7 points
of accuracy by itself, at 160 and 96 px), so read the pipeline against that, not against zero.

``--against OTHER_DIR`` runs a second model the same way and compares the two face for face on the
aligned pipeline (plain and balanced decisions, exact McNemar): how two models fare on what a photo
gives them, e.g. at a wider ``--crop-margin`` than MTCNN's typical box.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.metrics import balanced_accuracy_score, recall_score
from torchvision.ops import box_iou
from tqdm import tqdm

import research.dlib_resnet  # noqa: F401  (registers the dlib_resnet backbone)
import research.final_fit  # noqa: F401  (final fits measured on their held-out fold)
import research.pack  # noqa: F401  (--data reads packed files)
from fer_core.detect import Detection
from fer_core.errors import FERError, InvalidArgumentError
from fer_core.recognizer import EmotionRecognizer
from fer_train.data import LabelledFaces
from research.final_fit import evaluation_faces, faces_name, final_fit_fraction
from research.paired import mcnemar

#: A detection counts as the pasted face when its box overlaps the face square by at least this
#: intersection over union.
MIN_IOU: float = 0.4

#: Canvases detected per MTCNN call (all canvases have one size, so they batch).
DETECT_CHUNK: int = 32


def face_on_canvas(face: np.ndarray, size: int) -> tuple[Image.Image, tuple[float, float, float, float]]:
    """One gray FER+ face, upscaled and pasted at the centre of a mid-grey RGB canvas.

    Args:
        face: uint8 ``(H, W)`` gray face (48x48 for FER+).
        size: side of the upscaled face in pixels (>= 12, MTCNN's smallest window).

    Returns:
        The ``(2 * size, 2 * size)`` RGB canvas and the face's ``xyxy`` box on it in pixels.

    Raises:
        InvalidArgumentError: ``size`` < 12.
    """
    if size < 12:
        raise InvalidArgumentError(f"size must be >= 12 pixels, got {size}")
    upscaled = Image.fromarray(face).convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
    canvas = Image.new("RGB", (2 * size, 2 * size), (128, 128, 128))
    canvas.paste(upscaled, (size // 2, size // 2))
    x1 = float(size // 2)
    return canvas, (x1, x1, x1 + size, x1 + size)


def pasted_face(detections: Sequence[Detection], square: tuple[float, float, float, float]) -> Detection | None:
    """The detection that is the pasted face: the one overlapping ``square`` (``xyxy`` pixels) most,
    if its intersection over union (``torchvision.ops.box_iou``) is at least :data:`MIN_IOU`;
    ``None`` otherwise (no detection, or only false ones elsewhere on the canvas)."""
    if not detections:
        return None
    overlap = box_iou(torch.tensor([d.box for d in detections], dtype=torch.float64),
                      torch.tensor([square], dtype=torch.float64))[:, 0]
    best = int(overlap.argmax())
    return detections[best] if overlap[best] >= MIN_IOU else None


@dataclass
class PathScore:
    """One way of classifying the detected faces.

    Attributes:
        name: ``"dataset crop"``, ``"pipeline, aligned"`` or ``"pipeline, not aligned"``.
        accuracy, uar: plain (argmax) decisions on the detected faces, 0..1.
        balanced_accuracy, balanced_uar: balanced decisions (the model's prior and tau); ``None``
            for a model without a prior.
        recall: per-class recall of the model's default decisions (balanced when its config says
            so), in label order, 0..1 (0 for a class with no face).
        only_this, only_crop: detected faces this path gets right and the dataset crop wrong, and
            the reverse (plain decisions); 0 for the dataset crop itself.
        p_value: two-sided exact McNemar p-value against the dataset crop, 0..1.
        right: bool ``(n_detected,)``, each detected face classified right (plain decisions).
        balanced_right: the same for balanced decisions; ``None`` for a model without a prior.
    """

    name: str
    accuracy: float
    uar: float
    balanced_accuracy: float | None
    balanced_uar: float | None
    recall: list[float] = field(default_factory=list)
    only_this: int = 0
    only_crop: int = 0
    p_value: float = 1.0
    right: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    balanced_right: np.ndarray | None = None


@dataclass
class PipelineEvaluation:
    """The result of :func:`pipeline_eval`.

    Attributes:
        faces: which faces (``"valid"``, ``"test"`` or a final fit's held-out fold).
        n_images: faces with a majority label.
        n_detected: of those, faces MTCNN found (IoU >= :data:`MIN_IOU` with the pasted square).
        size: pixels per side the 48 px faces were upscaled to.
        crop_margin: the crop margin the pipeline cut the faces with.
        crop_accuracy_all: the classifier on the dataset crops of all ``n_images`` faces, 0..1.
        paths: the dataset crop and the pipeline paths, on the ``n_detected`` faces.
        labels: the model's label names, the order of :attr:`PathScore.recall`.
        default_balanced: the model's default decisions are balanced (what ``recall`` measures).
        support: detected faces per class, in label order.
        crop_side: median side of the pipeline's crop over the pasted face's side (1.0 = same
            framing as the dataset; > 1 the pipeline's crop shows more around the face).
        detected: int64 ``(n_detected,)``, which of the ``n_images`` faces MTCNN found, ascending.
        detections: MTCNN's detection of each of those faces (box and landmarks), in the same
            order; another model is measured on them without detecting again
            (``pipeline_eval(..., detections_from=this)``).
    """

    faces: str
    n_images: int
    n_detected: int
    size: int
    crop_margin: float
    crop_accuracy_all: float
    paths: list[PathScore] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    default_balanced: bool = False
    support: list[int] = field(default_factory=list)
    crop_side: float = float("nan")
    detected: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    detections: list[Detection] = field(default_factory=list)


@dataclass
class PairedPaths:
    """Two models' evaluations compared face for face on one path (:func:`paired_paths`).

    Attributes:
        path: the path compared, e.g. ``"pipeline, aligned"``.
        n_faces: faces both evaluations detected (the same for two models, MTCNN being
            deterministic, unless their sizes or limits differ).
        accuracy, other_accuracy: plain accuracies of the two on those faces, 0..1.
        only_this, only_other, p_value: faces right by the first only, by the second only, and the
            two-sided exact McNemar p-value (plain decisions).
        balanced: the same three numbers for balanced decisions with
            ``balanced_accuracy, other_balanced_accuracy`` before them; ``None`` unless both
            models have a prior.
    """

    path: str
    n_faces: int
    accuracy: float
    other_accuracy: float
    only_this: int
    only_other: int
    p_value: float
    balanced: tuple[float, float, int, int, float] | None = None


def paired_paths(this: PipelineEvaluation, other: PipelineEvaluation,
                 path: str = "pipeline, aligned") -> PairedPaths:
    """Compare two models' :func:`pipeline_eval` results on the faces both found, face for face.

    Raises:
        InvalidArgumentError: ``path`` is not one of the evaluations' paths, the two were run on
            different faces (split, fold or limit) or found no face in common.
    """
    if (this.faces, this.n_images) != (other.faces, other.n_images):
        raise InvalidArgumentError(f"the two evaluations measured different faces ({this.faces}, {this.n_images} "
                                   f"against {other.faces}, {other.n_images}); compare models on the same split")
    a = {p.name: p for p in this.paths}.get(path)
    b = {p.name: p for p in other.paths}.get(path)
    if a is None or b is None:
        raise InvalidArgumentError(f"no path {path!r}; the paths are {[p.name for p in this.paths]}")
    common, ia, ib = np.intersect1d(this.detected, other.detected, assume_unique=True, return_indices=True)
    if len(common) == 0:
        raise InvalidArgumentError("the two evaluations have no detected face in common")
    ra, rb = a.right[ia], b.right[ib]
    result = PairedPaths(path, len(common), float(ra.mean()), float(rb.mean()), *mcnemar(ra, rb))
    if a.balanced_right is not None and b.balanced_right is not None:
        ba, bb = a.balanced_right[ia], b.balanced_right[ib]
        result.balanced = (float(ba.mean()), float(bb.mean()), *mcnemar(ba, bb))
    return result


def _score(name: str, plain: np.ndarray, balanced: np.ndarray | None, labels: np.ndarray,
           crop_right: np.ndarray | None, default_balanced: bool) -> PathScore:
    pred = plain.argmax(1)
    right = pred == labels
    default = balanced if default_balanced and balanced is not None else plain
    recall = recall_score(labels, default.argmax(1), labels=range(plain.shape[1]), average=None, zero_division=0)
    score = PathScore(name, float(right.mean()), float(balanced_accuracy_score(labels, pred)),
                      None if balanced is None else float((balanced.argmax(1) == labels).mean()),
                      None if balanced is None else float(balanced_accuracy_score(labels, balanced.argmax(1))),
                      [float(v) for v in recall], right=right,
                      balanced_right=None if balanced is None else balanced.argmax(1) == labels)
    if crop_right is not None:
        score.only_this, score.only_crop, score.p_value = mcnemar(right, crop_right)
    return score


def pipeline_eval(model_dir: str | Path, data: str | Path, split: str = "valid", size: int = 160,
                  limit: int | None = None, crop_margin: float | None = None,
                  progress: bool = True, detections_from: PipelineEvaluation | None = None) -> PipelineEvaluation:
    """Measure a model on FER+ faces through the whole pipeline (module docstring).

    Args:
        model_dir: model folder (``config.json`` + ``model.safetensors``).
        data: FER+ folder (FERPlus layout or raw CSVs).
        split: ``valid`` or ``test``; on ``valid`` a final fit is measured on its held-out fold.
        size: pixels per side each face is upscaled to before detection (>= 12).
        limit: only the first N faces of the split (tests).
        crop_margin: measure with this crop margin instead of the model's ``config.json`` one
            (-0.5..2, see :class:`fer_core.config.ModelConfig`).
        progress: show a tqdm bar over the detection.
        detections_from: an earlier evaluation of the same faces (split, fold, limit, size) whose
            detections to reuse instead of running MTCNN again (MTCNN does not depend on the
            model, so the result is the same, in a fraction of the time).

    Raises:
        InvalidArgumentError: ``size`` < 12, ``crop_margin`` out of range, MTCNN found none of
            the faces, or ``detections_from`` measured other faces or another size.
        ModelLoadError: the model folder is invalid.
        DatasetError: the data is missing or malformed.
    """
    if size < 12:
        raise InvalidArgumentError(f"size must be >= 12 pixels, got {size}")
    if crop_margin is not None and not -0.5 <= crop_margin <= 2:
        raise InvalidArgumentError(f"crop_margin must be from -0.5 to 2, got {crop_margin}")
    rec = EmotionRecognizer.from_pretrained(model_dir)
    if crop_margin is not None:
        rec.config.crop_margin = float(crop_margin)
    final_fit = final_fit_fraction(rec.config) if split == "valid" else 0.0
    faces = evaluation_faces(data, split, final_fit, limit)
    kept = LabelledFaces(faces, "majority", transform=lambda face: face)  # the faces fer_train.evaluate measures
    labels = kept.dists.argmax(1)
    crops = [Image.fromarray(face) for face in kept.images]
    has_prior = rec.config.prior is not None

    def probabilities(images: list[Image.Image]) -> tuple[np.ndarray, np.ndarray | None]:
        return (rec.classify_crops(images, balanced=False),
                rec.classify_crops(images, balanced=True) if has_prior else None)

    if detections_from is not None and (detections_from.faces, detections_from.n_images, detections_from.size) != (
            faces_name(split, final_fit), len(kept), size):
        raise InvalidArgumentError(
            f"detections_from measured {detections_from.n_images} {detections_from.faces} faces at "
            f"{detections_from.size} px, not {len(kept)} {faces_name(split, final_fit)} faces at {size} px")
    reused = {} if detections_from is None else dict(zip(detections_from.detected.tolist(),
                                                          detections_from.detections))

    crop_plain, crop_balanced = probabilities(crops)
    crop_accuracy_all = float((crop_plain.argmax(1) == labels).mean())

    # Each chunk of canvases is detected (or its detections reused), then its matched faces
    # classified at once (aligned and not, plain and balanced), so only DETECT_CHUNK canvases are
    # held at a time.
    variants = [(align, bal) for align in (True, False) for bal in ((False, True) if has_prior else (False,))]
    found: list[int] = []
    found_detections: list[Detection] = []
    sides: list[float] = []
    probs: dict[tuple[bool, bool], list[np.ndarray]] = {v: [] for v in variants}
    for start in tqdm(range(0, len(kept), DETECT_CHUNK), desc="MTCNN" if detections_from is None else "classify",
                      disable=not progress):
        batch = [face_on_canvas(face, size) for face in kept.images[start:start + DETECT_CHUNK]]
        if detections_from is None:
            matched = [pasted_face(dets, square)
                       for (_, square), dets in zip(batch, rec.detector.detect_batch([c for c, _ in batch]))]
        else:
            matched = [reused.get(start + k) for k in range(len(batch))]
        chosen = []
        for k, ((canvas, _), best) in enumerate(zip(batch, matched)):
            if best is not None:
                found.append(start + k)
                found_detections.append(best)
                chosen.append((canvas, best))
                x1, y1, x2, y2 = best.box
                sides.append(max(x2 - x1, y2 - y1) * (1 + rec.config.crop_margin) / size)
        if not chosen:
            continue
        for align, bal in variants:
            results = rec.classify_detections([c for c, _ in chosen], [[d] for _, d in chosen], align=align,
                                              balanced=bal)
            probs[align, bal].append(np.array([[r[0].probs[n] for n in rec.labels] for r in results]))
    if not found:
        raise InvalidArgumentError(f"MTCNN found none of the {len(kept)} faces upscaled to {size} px; "
                                   "nothing to compare (try a larger size or more faces)")
    idx = np.array(found, dtype=np.int64)
    det_labels = labels[idx]
    crop_right = crop_plain[idx].argmax(1) == det_labels
    paths = [_score("dataset crop", crop_plain[idx], None if crop_balanced is None else crop_balanced[idx],
                    det_labels, None, rec.config.balanced)]
    for align in (True, False):
        plain = np.concatenate(probs[align, False])
        balanced = np.concatenate(probs[align, True]) if has_prior else None
        paths.append(_score(f"pipeline, {'aligned' if align else 'not aligned'}", plain, balanced, det_labels,
                            crop_right, rec.config.balanced))
    return PipelineEvaluation(faces=faces_name(split, final_fit),
                              n_images=len(kept), n_detected=len(found), size=size,
                              crop_margin=rec.config.crop_margin, crop_accuracy_all=crop_accuracy_all, paths=paths,
                              labels=rec.labels, default_balanced=rec.config.balanced,
                              support=np.bincount(det_labels, minlength=len(rec.labels)).tolist(),
                              crop_side=float(np.median(sides)) if sides else float("nan"), detected=idx,
                              detections=found_detections)


def main(argv: list[str] | None = None) -> int:
    """Print the comparison; exit status 1 with a message on a bad model, data or size."""
    p = argparse.ArgumentParser(prog="python -m research.pipeline_eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="fer_core/default_model", help="model folder")
    p.add_argument("--data", required=True, help="FER+ folder")
    p.add_argument("--split", default="valid", choices=("valid", "test"))
    p.add_argument("--size", type=int, default=160, help="pixels per side of the upscaled face")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--crop-margin", type=float, default=None, help="instead of config.json's crop_margin")
    p.add_argument("--against", metavar="MODEL_DIR", default=None,
                   help="also run this model the same way and compare the two face for face (aligned path)")
    args = p.parse_args(argv)
    try:
        r = pipeline_eval(args.model, args.data, args.split, args.size, args.limit, args.crop_margin)
        other = None
        if args.against is not None:
            other = pipeline_eval(args.against, args.data, args.split, args.size, args.limit, args.crop_margin,
                                  detections_from=r)
            pair = paired_paths(r, other)
    except FERError as exc:  # the project's errors; anything else is a bug and keeps its traceback
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{r.faces}: {r.n_images} faces with a majority label, upscaled to {r.size} px; "
          f"MTCNN found {r.n_detected} ({r.n_detected / max(r.n_images, 1):.1%})")
    print(f"dataset crops, all faces: accuracy {r.crop_accuracy_all:.4f}")
    print(f"crop_margin {r.crop_margin:+.3f}: pipeline crop side / face side, median {r.crop_side:.3f}")
    print("on the detected faces:")
    for s in r.paths:
        line = f"  {s.name:22s} accuracy {s.accuracy:.4f}  UAR {s.uar:.3f}"
        if s.balanced_accuracy is not None:
            line += f"  | balanced {s.balanced_accuracy:.4f} / UAR {s.balanced_uar:.3f}"
        if s.name != "dataset crop":
            line += f"  | right only here {s.only_this}, only on the crop {s.only_crop}, McNemar p {s.p_value:.3f}"
        print(line)
    print(f"recall per class, {'balanced' if r.default_balanced else 'plain'} (the model's default):")
    for s in r.paths:
        print(f"  {s.name:22s} " + "  ".join(f"{n} {v:.3f}" for n, v in zip(r.labels, s.recall)))
    if other is not None:
        print(f"against {args.against} (crop_margin {other.crop_margin:+.3f}), {pair.path}, "
              f"the {pair.n_faces} faces both found:")
        rows = [("plain", (pair.accuracy, pair.other_accuracy, pair.only_this, pair.only_other, pair.p_value))]
        rows += [("balanced", pair.balanced)] if pair.balanced is not None else []
        for kind, (acc, other_acc, only_this, only_other, p_value) in rows:
            print(f"  {kind:9s} accuracy {acc:.4f} against {other_acc:.4f} | right by this model only "
                  f"{only_this}, by the other only {only_other}, McNemar p {p_value:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m fer_core IMAGE_VIDEO_OR_DIR... [--json] [--model ID_OR_DIR] [--backend onnx|torch] [--crops]
[--annotate OUT_DIR] [--saliency OUT_DIR [--saliency-target LABEL] [--saliency-method METHOD]]
[--timeline OUT_DIR] [--sample-fps N] [--max-seconds S] [--smoothing S] [--balanced | --no-balanced]
[--verify | --no-verify] [--mesh]``, and ``python -m fer_core corpus INPUT... --out OUT_DIR [...]``.

Images: one line per face, plus a line saying how many MTCNN boxes face verification (MediaPipe
FaceMesh, on by default) rejected when it rejected any; ``--json`` gives each face's ``face_prob``
and each file's ``faces_rejected``, and with ``--mesh`` each face's 468 ``mesh`` points (also drawn by
``--annotate``). Videos (``.mp4 .webm .mov .avi .mkv .m4v``): faces are tracked
through the clip and one line per tracked face gives its seconds visible and share of time per
expression; ``--timeline OUT_DIR`` also writes ``<name>.csv`` (one row per face per analysed
frame), ``<name>.json`` (summary + rows) and ``<name>_timeline.png``; ``--annotate OUT_DIR`` writes
annotated images and ``<name>_annotated.mp4``. ``--json`` prints one JSON document (a list with one
entry per file). A bad file is reported on stderr with the reason and the rest are still
processed; the exit status is 1 if any file failed (or the model could not be loaded), else 0.

``--saliency OUT_DIR`` (images, not ``--crops``): after predicting, writes each image's Grad-CAM maps
(:mod:`fer_core.saliency`) as ``<name>_saliency.png`` (the image with every face's heatmap blended in)
and ``<name>_saliency.json`` (one entry per face: face, target, method, layer, crop transform, 32x32
heatmap in [0, 1]); ``--saliency-target LABEL`` explains that label for every face (default: each face's
predicted label), ``--saliency-method`` picks gradcam (default), gradcam++ or layercam. The faces are
those of the prediction; the maps need the torch backend, so with the ONNX one (the default) a torch
copy of the same model is loaded once, on the first image with a face. Without the ``torch`` extra
(torch, grad-cam) the predictions are still printed, the reason and the ``pip install`` line are
printed on stderr once, and the exit status is 1; so too when the torch copy cannot be loaded (e.g. a
model folder with ``model.onnx`` but no ``model.safetensors``): the load error is printed once, not
retried for every image, and every file is still predicted. ``--backend`` picks the recognizer's backend
(default: ONNX when the model has ``model.onnx``).

``python -m fer_core corpus ...`` runs the corpus job instead (every argument after ``corpus`` goes to
:func:`fer_core.corpus.__main__.main`: ``python -m fer_core corpus --help``); an input file actually
named ``corpus`` can be given as ``./corpus``. Without pyarrow it prints ``pip install 'fer-core[scale]'``
and exits with status 2 (:func:`fer_core.corpus.require_pyarrow`, checked before anything is imported).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import FERError, MissingDependencyError
from .io import IMAGE_SUFFIXES, load_image
from .video import VIDEO_SUFFIXES

if TYPE_CHECKING:
    from .recognizer import EmotionRecognizer



def iter_files(paths: list[str]) -> Iterator[Path]:
    """Expand arguments: files as given, folders to their image and video files (sorted, not recursive)."""
    for p in map(Path, paths):
        if p.is_dir():
            yield from sorted(f for f in p.iterdir()
                              if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)
        else:
            yield p


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    p = argparse.ArgumentParser(prog="python -m fer_core", description="Facial expression recognition "
                                "on images (one result per detected face) and videos (faces tracked over time).")
    p.add_argument("inputs", nargs="+", metavar="IMAGE_VIDEO_OR_DIR")
    p.add_argument("--json", action="store_true", help="print JSON instead of one line per face")
    p.add_argument("--model", default=None, help="Hub repo id or local folder (default: bundled model)")
    p.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit)")
    p.add_argument("--backend", choices=("onnx", "torch"), default=None,
                   help="onnx (ONNX Runtime) or torch (default: onnx when the model has model.onnx)")
    p.add_argument("--crops", action="store_true", help="treat each file as an already-cropped face")
    p.add_argument("--annotate", metavar="OUT_DIR", default=None, help="write annotated images and videos here")
    p.add_argument("--saliency", metavar="OUT_DIR", default=None,
                   help="images: write <name>_saliency.png and <name>_saliency.json (Grad-CAM map per face) "
                        "here; needs the torch extra")
    p.add_argument("--saliency-target", metavar="LABEL", default=None,
                   help="--saliency: the label to explain for every face (default: each face's predicted label)")
    p.add_argument("--saliency-method", choices=("gradcam", "gradcam++", "layercam"), default="gradcam",
                   help="--saliency: the CAM method (default gradcam)")
    p.add_argument("--timeline", metavar="OUT_DIR", default=None,
                   help="videos: write <name>.csv, <name>.json and <name>_timeline.png here")
    p.add_argument("--sample-fps", type=float, default=None,
                   help="videos: analyse at most this many frames per second (default: every frame)")
    p.add_argument("--max-seconds", type=float, default=None, help="videos: analyse only the first seconds")
    p.add_argument("--smoothing", type=float, default=None,
                   help="videos: probability smoothing half-life in seconds (default 0.25; 0 = none)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="videos: no progress bar")
    p.add_argument("--detect-every", type=int, default=1, metavar="N",
                   help="videos: run the face detector on every N-th analysed frame and reuse its boxes between "
                        "(faster; boxes lag a moving face by up to N-1 frames; default 1 = every frame)")
    p.add_argument("--threshold", type=float, default=None, help="detection probability threshold")
    p.add_argument("--min-face-size", type=int, default=None, help="smallest face, pixels")
    p.add_argument("--no-align", dest="align", action="store_const", const=False, default=None,
                   help="do not level the eyes before classifying")
    p.add_argument("--balanced", action=argparse.BooleanOptionalAction, default=None,
                   help="balanced decisions: correct the probabilities for how common each expression was in "
                        "training (default: the model's own setting, config.json 'balanced')")
    p.add_argument("--verify", action=argparse.BooleanOptionalAction, default=True,
                   help="confirm every detected face with MediaPipe FaceMesh and drop the boxes it rejects "
                        "(default: on; --no-verify keeps every MTCNN box)")
    p.add_argument("--mesh", action="store_true",
                   help="images: add the 468 FaceMesh points of each face to --json output and draw them "
                        "in --annotate images")
    return p


class _Explainer:
    """The torch recognizer of ``--saliency``: the CLI's own when it is torch-backed, else a torch copy of
    the same model (same folder or Hub repo at the same revision, sharing the CLI's detector) loaded on
    first use. When that load fails (no torch extra, or a model folder without ``model.safetensors``) or
    grad-cam is missing, :attr:`missing` holds the reason, printed once, and no later image tries again."""

    def __init__(self, rec: EmotionRecognizer) -> None:
        self.rec = rec
        self.torch_rec: EmotionRecognizer | None = rec if rec.backend == "torch" else None
        self.missing: str | None = None

    def explain(self, image, faces, args: argparse.Namespace, folder: Path, stem: str) -> list[Path] | None:
        """Write ``stem``'s saliency files into ``folder`` (:func:`fer_core.saliency.write_saliency`) and
        return their paths; ``None`` when saliency maps cannot be made in this install or for this model
        (the reason, printed once, is in :attr:`missing`).

        Raises:
            FERError: an invalid image or argument; OSError: a file cannot be written.
        """
        from .saliency import write_saliency

        if self.missing:
            return None
        if not faces:  # nothing to explain: the image itself and an empty list, without loading torch
            return write_saliency(folder, stem, image, [])
        if self.torch_rec is None:
            try:
                self.torch_rec = self.rec.torch_copy()
            except FERError as exc:  # the torch extra missing, or e.g. an ONNX-only folder: not an image's fault
                return self._unavailable(exc)
        try:
            maps = self.torch_rec.explain(image, target=args.saliency_target, method=args.saliency_method,
                                          faces=faces, align=args.align)
        except MissingDependencyError as exc:  # grad-cam missing
            return self._unavailable(exc)
        return write_saliency(folder, stem, image, maps)

    def _unavailable(self, exc: FERError) -> None:
        self.missing = str(exc)
        print(f"error: --saliency: {exc}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI (or, when the first argument is ``corpus``, the corpus job); returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["corpus"]:
        from .corpus.__main__ import main as corpus_main

        return corpus_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.saliency and args.crops:
        parser.error("--saliency needs whole images (the faces' positions), not --crops")
    from .recognizer import EmotionRecognizer

    try:
        rec = EmotionRecognizer.from_pretrained(args.model, revision=args.revision, backend=args.backend)
    except FERError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        rec.config.resolve_balanced(args.balanced)
    except FERError as exc:
        print(f"error: --balanced: {exc}", file=sys.stderr)
        return 1
    if args.saliency_target is not None and args.saliency_target not in rec.labels:
        print(f"error: --saliency-target must be one of the model's labels ({', '.join(rec.labels)}), got "
              f"{args.saliency_target!r}", file=sys.stderr)
        return 1
    out_dir = Path(args.annotate) if args.annotate else None
    timeline_dir = Path(args.timeline) if args.timeline else None
    saliency_dir = Path(args.saliency) if args.saliency else None
    explainer = _Explainer(rec) if saliency_dir else None
    for folder in (out_dir, timeline_dir, saliency_dir):
        if folder:
            folder.mkdir(parents=True, exist_ok=True)
    failed, documents = 0, []
    for path in iter_files(args.inputs):
        try:
            if path.suffix.lower() in VIDEO_SUFFIXES and not args.crops:
                doc, lines = _video(rec, path, args, out_dir, timeline_dir)
                if args.json:
                    documents.append(doc)
                else:
                    print("\n".join(lines), flush=True)
                continue
            image = load_image(path)
            if args.crops:
                row = rec.classify_crops([image], balanced=args.balanced)[0]
                probs = {k: float(v) for k, v in zip(rec.labels, row)}
                label = max(probs, key=probs.get)
                doc = {"file": str(path), "label": label, "probs": {k: round(v, 6) for k, v in probs.items()}}
                lines = [f"{path}\t{label}\t{probs[label]:.3f}"]
            else:
                rejected: list[int] = []
                faces = rec.predict(image, threshold=args.threshold, min_face_size=args.min_face_size,
                                    align=args.align, balanced=args.balanced, verify_faces=args.verify,
                                    rejected=rejected, mesh=args.mesh or None)
                doc = {"file": str(path), "faces": [f.to_dict(mesh=args.mesh) for f in faces]}
                if args.verify:
                    doc["faces_rejected"] = sum(rejected)
                lines = [
                    f"{path}\tface {i}\t{f.label}\t{f.confidence:.3f}\tbox=" + ",".join(f"{v:.0f}" for v in f.box)
                    for i, f in enumerate(faces, start=1)
                ] or [f"{path}\tno face"]
                if sum(rejected):
                    lines.append(f"{path}\trejected\t{_boxes(sum(rejected))} not confirmed as a face (FaceMesh)")
                if out_dir:
                    from .draw import annotate

                    annotate(image, faces, mesh=args.mesh).save(out_dir / f"{path.stem}_annotated.png")
                if explainer and (written := explainer.explain(image, faces, args, saliency_dir, path.stem)):
                    doc["saliency"] = [str(p) for p in written]
                    lines.append(f"{path}\tsaliency\t{written[0]}")
        except (FERError, OSError) as exc:  # OSError: an output file cannot be written
            failed += 1
            print(f"error: {path}: {exc}", file=sys.stderr)
            continue
        if args.json:
            documents.append(doc)
        else:
            print("\n".join(lines), flush=True)
    if args.json:
        print(json.dumps(documents, indent=2))
    return 1 if failed or (explainer and explainer.missing) else 0


def _video(rec, path: Path, args: argparse.Namespace, out_dir: Path | None,
           timeline_dir: Path | None) -> tuple[dict, list[str]]:
    """Analyse one video; write the requested files; return its JSON document and text lines."""
    analysis = rec.analyze_video(path, sample_fps=args.sample_fps, max_seconds=args.max_seconds,
                                 smoothing=args.smoothing, progress=args.progress, detect_every=args.detect_every,
                                 threshold=args.threshold,
                                 min_face_size=args.min_face_size, align=args.align, balanced=args.balanced,
                                 verify_faces=args.verify)
    if analysis.error:
        print(f"warning: {path}: {analysis.error}", file=sys.stderr)
    if timeline_dir:
        from .plots import timeline_figure  # matplotlib only when plots are asked for

        analysis.to_csv(timeline_dir / f"{path.stem}.csv")
        analysis.to_json(timeline_dir / f"{path.stem}.json")
        timeline_figure(analysis).savefig(timeline_dir / f"{path.stem}_timeline.png", dpi=100)
    if out_dir:
        analysis.write_annotated(out_dir / f"{path.stem}_annotated.mp4")
    summary = analysis.summary()
    doc = {"file": str(path), "video": analysis.video_dict(), "error": analysis.error,
           "faces_rejected": analysis.faces_rejected, "summary": summary}
    lines = [
        f"{path}\tface {s['face_id']}\t{s['dominant']}\t{s['seconds_visible']:.1f} s\t"
        + ", ".join(f"{k} {v:.0%}" for k, v in sorted(s["shares"].items(), key=lambda kv: -kv[1]) if v >= 0.005)
        for s in summary
    ] or [f"{path}\tno face ({analysis.duration_s:.1f} s analysed)"]
    if analysis.faces_rejected:
        lines.append(f"{path}\trejected\t{_boxes(analysis.faces_rejected)} not confirmed as a face (FaceMesh), "
                     "over all frames")
    return doc, lines


def _boxes(n: int) -> str:
    """``"1 box"``, ``"3 boxes"``."""
    return f"{n} box{'es' if n != 1 else ''}"

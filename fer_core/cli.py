"""``python -m fer_core IMAGE_VIDEO_OR_DIR... [--json] [--model ID_OR_DIR] [--crops] [--annotate OUT_DIR]
[--timeline OUT_DIR] [--sample-fps N] [--max-seconds S] [--smoothing S] [--balanced | --no-balanced]
[--verify | --no-verify] [--mesh]``.

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
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from .errors import FERError
from .io import load_image
from .video import VIDEO_SUFFIXES

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


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
    p.add_argument("--crops", action="store_true", help="treat each file as an already-cropped face")
    p.add_argument("--annotate", metavar="OUT_DIR", default=None, help="write annotated images and videos here")
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


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args = build_parser().parse_args(argv)
    from .recognizer import EmotionRecognizer

    try:
        rec = EmotionRecognizer.from_pretrained(args.model, revision=args.revision)
    except FERError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        rec.config.resolve_balanced(args.balanced)
    except FERError as exc:
        print(f"error: --balanced: {exc}", file=sys.stderr)
        return 1
    out_dir = Path(args.annotate) if args.annotate else None
    timeline_dir = Path(args.timeline) if args.timeline else None
    for folder in (out_dir, timeline_dir):
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
    return 1 if failed else 0


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

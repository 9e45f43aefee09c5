"""``python -m fer_core.corpus INPUT... --out OUT_DIR [--engine auto|local|ray] [--address ADDR] [--workers N]
[--batch-size N] [--cpus-per-worker C] [--sample-fps F] [--detect-every N] [--model ID] [--revision R]``.

Prints the manifest's counts and wall time; exit status 0 when every file was done (bad images and videos
are listed in ``OUT_DIR/errors.parquet`` and do not change it), 1 when some files could not be read or
failed unexpectedly (a rerun tries them again), 2 for bad arguments, a model that cannot be loaded, or
pyarrow missing (the message names ``pip install 'fer-core[scale]'``; checked before anything else).
"""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import FERError
from . import require_pyarrow


def build_parser() -> argparse.ArgumentParser:
    """The corpus CLI's argument parser (imports :mod:`fer_core.corpus.job`, hence pyarrow)."""
    from .job import AUTO_RAY_FILES, ENGINES
    from .ray_engine import DEFAULT_BATCH_SIZE

    p = argparse.ArgumentParser(
        prog="python -m fer_core.corpus",
        description="Run the recognizer over a corpus of images and videos into a Parquet dataset "
                    "(OUT_DIR/faces/, errors.parquet, manifest.json); a rerun skips the files already done.")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image or video files, folders (recursive), or manifests (.txt/.lst: one path per line; "
                        ".csv: a 'path' column or the first column)")
    p.add_argument("--out", required=True, metavar="OUT_DIR", help="output folder (created; reruns resume)")
    p.add_argument("--engine", choices=ENGINES, default="auto",
                   help=f"local: this process; ray: Ray Data actors; auto (default): ray from {AUTO_RAY_FILES} "
                        "files or with a cluster address, when Ray is installed, else local")
    p.add_argument("--address", default=None,
                   help="Ray cluster address (default: RAY_ADDRESS, else a local cluster started for the job)")
    p.add_argument("--workers", type=int, default=2, help="Ray: actors, each loading the model once (default 2)")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                   help=f"Ray: files per batch (default {DEFAULT_BATCH_SIZE})")
    p.add_argument("--cpus-per-worker", type=float, default=1.0,
                   help="Ray: CPUs per actor, also its ONNX Runtime threads (default 1)")
    p.add_argument("--threads", type=int, default=None, help="local: ONNX Runtime threads (default: library's)")
    p.add_argument("--sample-fps", type=float, default=None,
                   help="videos: analyse at most this many frames per second (default: every frame)")
    p.add_argument("--detect-every", type=int, default=1, metavar="N",
                   help="videos: run the face detector on every N-th analysed frame only (default 1)")
    p.add_argument("--model", default=None, help="Hub repo id or local folder (default: bundled model)")
    p.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the corpus CLI; returns the exit status (see the module docstring)."""
    try:
        require_pyarrow()
    except FERError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    from .job import run_job

    try:
        manifest = run_job(args.inputs, args.out, engine=args.engine, address=args.address, workers=args.workers,
                           batch_size=args.batch_size, cpus_per_worker=args.cpus_per_worker,
                           sample_fps=args.sample_fps, detect_every=args.detect_every, model_id=args.model,
                           revision=args.revision, threads=args.threads, progress=args.progress)
    except FERError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"out_dir": manifest["out_dir"], "engine": manifest["engine"], **manifest["counts"],
                      "wall_time_s": manifest["wall_time_s"]}))
    return 1 if manifest["counts"]["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())

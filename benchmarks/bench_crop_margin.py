"""How big is a FER2013 crop relative to MTCNN's box? ``python benchmarks/bench_crop_margin.py
[--split train|valid] [--n 1000]``.

Each of the first N FER+ faces of the split is upscaled to 160 px and pasted on a grey canvas
(:func:`research.pipeline_eval.face_on_canvas`); MTCNN's box on it (:func:`research.pipeline_eval.pasted_face`)
is compared with the crop. Prints the median and IQR of ``crop side / box longer side - 1``: the ``crop_margin`` that
makes inference crops as large as the training crops (negative: MTCNN's box is larger than the
FER2013 crop, so the crop is cut tighter than the box). The bundled model's margin comes from
the Train split, so it is not chosen on the Valid faces it is measured on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import SHARED  # noqa: E402
from fer_core.detect import FaceDetector  # noqa: E402
from fer_train.data import load_split  # noqa: E402
from research.pipeline_eval import face_on_canvas, pasted_face  # noqa: E402

SIDE = 160


def main(argv: list[str] | None = None) -> None:
    """Print the median crop margin over the first ``--n`` faces of ``--split``."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--split", default="train", choices=("train", "valid"))
    p.add_argument("--n", type=int, default=1000)
    args = p.parse_args(argv)
    faces = load_split(SHARED / "data" / "ferplus", args.split, limit=args.n)
    det, margins = FaceDetector(), []
    for start in range(0, len(faces), 32):
        batch = [face_on_canvas(img, SIDE) for img in faces.images[start:start + 32]]
        for (_, square), found in zip(batch, det.detect_batch([canvas for canvas, _ in batch])):
            best = pasted_face(found, square)
            if best is not None:
                x1, y1, x2, y2 = best.box
                margins.append(SIDE / max(x2 - x1, y2 - y1) - 1)
    q1, med, q3 = np.percentile(margins, [25, 50, 75])
    print(f"{len(margins)} of {len(faces)} FER+ {args.split} faces detected; crop_margin median {med:+.3f} "
          f"(IQR {q1:+.3f} .. {q3:+.3f})")


if __name__ == "__main__":
    main()

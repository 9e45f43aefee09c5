"""How big is a FER2013 crop relative to MTCNN's box? ``python benchmarks/bench_crop_margin.py``.

Each of the first N FER+ Valid faces is upscaled to 160 px and pasted on a grey canvas; MTCNN's box
on it is compared with the crop. Prints the median and IQR of ``crop side / box longer side - 1``:
the ``crop_margin`` that makes inference crops match the training crops.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import SHARED  # noqa: E402
from fer_core.detect import FaceDetector  # noqa: E402


def main(n: int = 300) -> None:
    folder = SHARED / "data" / "ferplus" / "FER2013Valid"
    with (folder / "label.csv").open() as fh:
        names = [row[0] for row in csv.reader(fh)][:n]
    det, margins, side = FaceDetector(), [], 160
    for name in names:
        face = Image.open(folder / name).convert("RGB").resize((side, side), Image.Resampling.BICUBIC)
        canvas = Image.new("RGB", (2 * side, 2 * side), (128, 128, 128))
        canvas.paste(face, (side // 2, side // 2))
        found = det.detect(canvas)
        if len(found) == 1:
            x1, y1, x2, y2 = found[0].box
            margins.append(side / max(x2 - x1, y2 - y1) - 1)
    q1, med, q3 = np.percentile(margins, [25, 50, 75])
    print(f"{len(margins)} of {len(names)} FER+ Valid faces detected; crop_margin median {med:+.3f} "
          f"(IQR {q1:+.3f} .. {q3:+.3f})")


if __name__ == "__main__":
    main()

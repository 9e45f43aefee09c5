"""Training throughput of the default recipe on this CPU: ``python benchmarks/bench_train.py``.

Runs one real epoch of ``python -m fer_train`` (defaults: MobileNetV2, 96 px, batch 64, AdamW,
augmentation, crossentropy labels) on the first N FER+ Train images and prints the images/s the
training loop measured (data loading and augmentation included), plus the projected epoch time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import SHARED  # noqa: E402
from fer_train.__main__ import main as train_main  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--images", type=int, default=1920)
    p.add_argument("--threads", type=int, default=2)
    args, extra = p.parse_known_args()
    os.environ.setdefault("TORCH_HOME", str(SHARED / "weights" / "torch"))
    with tempfile.TemporaryDirectory() as out:
        code = train_main(["--data", str(SHARED / "data" / "ferplus"), "--out", out, "--epochs", "1",
                           "--limit-train", str(args.images), "--limit-valid", "64",
                           "--threads", str(args.threads), *extra])
        if code:
            sys.exit(code)
        ips = json.loads((Path(out) / "metrics.json").read_text())[0]["images_per_s"]
    print(f"training throughput (default recipe, {args.images} images, {args.threads} threads): {ips:.0f} img/s; "
          f"a full FER+ Train epoch (27,947 images) ~ {27947 / ips / 60:.1f} min")


if __name__ == "__main__":
    main()

"""``python -m fer_train --data DIR --out runs/NAME [options]``: fine-tune a backbone on FER+."""

from __future__ import annotations

import argparse
import sys

from fer_core.backbones import backbone_names
from fer_core.errors import FERError

from .augment import AugmentConfig
from .engine import TrainConfig
from .labels import LABEL_MODES
from .train import train


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m fer_train`` argument parser (every :class:`TrainConfig` field is a flag)."""
    d = TrainConfig(data="", out="")
    a = AugmentConfig()
    p = argparse.ArgumentParser(prog="python -m fer_train", description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", required=True, help="FERPlus layout folder, or one with fer2013.csv + fer2013new.csv")
    p.add_argument("--out", required=True, help="run folder (checkpoints, metrics, best/)")
    p.add_argument("--backbone", default=d.backbone, choices=backbone_names())
    p.add_argument("--pretrained", default=d.pretrained,
                   help="imagenet | none | PATH to a state dict | a name registered by code that extends "
                        "fer_train (fer_train.pretrained.register_pretrained)")
    p.add_argument("--label-mode", default=d.label_mode, choices=LABEL_MODES)
    p.add_argument("--img-size", type=int, default=d.img_size, help="network input side, pixels")
    p.add_argument("--color-mode", default=d.color_mode, choices=("grayscale", "rgb"))
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--optimizer", default=d.optimizer, choices=("adamw", "sgd"))
    p.add_argument("--momentum", type=float, default=d.momentum, help="SGD momentum")
    p.add_argument("--scheduler", default=d.scheduler, choices=("cosine", "onecycle", "plateau"))
    p.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs, help="linear warm-up (cosine)")
    p.add_argument("--dropout", type=float, default=d.dropout)
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    p.add_argument("--balance", default=d.balance, choices=("none", "loss", "sampler"),
                   help="class-balanced loss weights or sampler, (1/count)**balance-power")
    p.add_argument("--balance-power", type=float, default=d.balance_power)
    p.add_argument("--aug-geometry", default=a.geometry, choices=("crop", "affine", "none"))
    p.add_argument("--aug-crop-scale", type=float, default=a.crop_scale)
    p.add_argument("--aug-rotation", type=float, default=a.rotation, help="degrees")
    p.add_argument("--aug-hflip", type=float, default=a.hflip, help="probability")
    p.add_argument("--aug-brightness", type=float, default=a.brightness)
    p.add_argument("--aug-contrast", type=float, default=a.contrast)
    p.add_argument("--aug-erasing", type=float, default=a.erasing, help="probability")
    p.add_argument("--aug-zoom-out", type=float, default=a.zoom_out,
                   help="largest zoom-out as extra side (0.3 = face down to 1/1.3 of the frame), reflect-padded")
    p.add_argument("--aug-zoom-out-p", type=float, default=a.zoom_out_p, help="probability of a zoom-out")
    p.add_argument("--tta-flip", action="store_true",
                   help="average with the mirrored face at validation (fer_core does not do this at inference)")
    p.add_argument("--ema-decay", type=float, default=d.ema_decay,
                   help="keep an exponential moving average of the weights with this decay per step "
                        "(e.g. 0.999) and validate/export it; 0 = off")
    p.add_argument("--precise-bn", type=int, default=d.precise_bn, metavar="N",
                   help="before each validation, recompute BatchNorm statistics on N un-augmented training "
                        "faces (what is validated and exported); 0 = the running averages")
    p.add_argument("--no-amp", dest="amp", action="store_false",
                   help="train in float32 on CUDA too (default: mixed precision there; CPU is always float32)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--workers", type=int, default=d.workers, help="DataLoader worker processes")
    p.add_argument("--device", default=d.device, help="auto | cpu | cuda | cuda:N")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--limit-train", type=int, default=None, help="use only the first N train images")
    p.add_argument("--limit-valid", type=int, default=None, help="use only the first N valid images")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/last.pt; refused if any option but the runtime ones (--workers, --device, "
                        "--threads, --stop-after-epoch) differs from the checkpoint's run")
    p.add_argument("--stop-after-epoch", type=int, default=None, metavar="N",
                   help="stop after epoch N of the schedule (to fit a time slot); --resume continues it")
    return p


def main(argv: list[str] | None = None, parser: argparse.ArgumentParser | None = None) -> int:
    """Parse flags, train, print the best epoch; exit status 1 with a message on bad input.

    ``parser``: :func:`build_parser`'s parser with options added by code that extends fer_train;
    those that are no :class:`TrainConfig` field go to ``TrainConfig.extra``.
    """
    args = vars((parser or build_parser()).parse_args(argv))
    aug = AugmentConfig(**{k[4:]: args.pop(k) for k in list(args) if k.startswith("aug_")})
    extra = {k: args.pop(k) for k in list(args) if k not in TrainConfig.__dataclass_fields__}
    cfg = TrainConfig(**args, augment=aug, extra=extra)
    try:
        train(cfg)
    except FERError as exc:  # the project's own errors only: a CUDA OOM or a torch bug keeps its traceback
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Probe: is MTCNN's ONet (face-pretrained, 48 px, 0.39M parameters) a useful start for FER+?

A standalone experiment behind docs/experiments.md ("MTCNN's ONet as a face-pretrained start"),
not a backbone of the package: it trains ONet's trunk (conv1..dense5, the 256-D feature MTCNN's
face / box / landmark heads read) with a new dropout + 8-way head on FER+ Train with the shipped
recipe's options and ``fer_train.engine``'s own pieces: its AdamW (weight decay 0.05 on weights, none on
biases and PReLU slopes), cosine schedule (one warm-up epoch here), training epoch (crossentropy
label mode, the shipped augmentation) and validation, with EMA 0.999; it prints the EMA weights'
FER+ Valid accuracy (majority protocol) after every epoch. ONet's weights come from the installed
facenet-pytorch wheel; its preprocessing is MTCNN's, ``(x - 127.5) / 128`` for pixels ``x`` in
0..255 (mean 0.5, std 128/255 at [0, 1]).

Usage (one thread each, so two runs share the 2-core CPU)::

    python -m research.probe_onet --data ../shared/data/ferplus --epochs 12
    python -m research.probe_onet --data ../shared/data/ferplus --epochs 12 --scratch
"""

from __future__ import annotations

import argparse
import time

import torch
from facenet_pytorch.models.mtcnn import ONet
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader

from fer_core.config import ModelConfig
from fer_core.labels import LABELS
from fer_train.augment import eval_transform, train_transform
from fer_train.data import LabelledFaces, load_split
from fer_train.engine import TrainConfig, build_optimizer, build_scheduler, train_one_epoch, validate

#: MTCNN's input normalisation, for pixels scaled to [0, 1].
ONET_MEAN, ONET_STD = [0.5] * 3, [128 / 255] * 3


class ONetClassifier(nn.Module):
    """ONet's trunk (its weights, or a random init) + dropout + a linear head.

    Input: float32 ``(N, 3, 48, 48)`` normalised with :data:`ONET_MEAN` / :data:`ONET_STD`.
    Output: logits ``(N, num_classes)``. The trunk is run exactly as ``ONet.forward`` runs it,
    including its channel-last flatten before ``dense5`` (the Caffe weights' order).
    """

    def __init__(self, pretrained: bool, num_classes: int = 8, dropout: float = 0.2) -> None:
        super().__init__()
        self.onet = ONet(pretrained=pretrained)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(256, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """ONet's 256-D feature ``(N, 256)`` float32 (after ``prelu5``) of ``(N, 3, 48, 48)`` input."""
        o = self.onet
        x = o.pool1(o.prelu1(o.conv1(x)))
        x = o.pool2(o.prelu2(o.conv2(x)))
        x = o.pool3(o.prelu3(o.conv3(x)))
        x = o.prelu4(o.conv4(x)).permute(0, 3, 2, 1).contiguous()
        return o.prelu5(o.dense5(x.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.fc(self.drop(self.features(x)))


def main() -> None:
    """Train and print one line per epoch: the EMA weights' Valid accuracy and the epoch's time."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="FER+ folder or a research.pack file")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--scratch", action="store_true", help="random init instead of ONet's weights")
    parser.add_argument("--limit", type=int, default=None, help="first N faces of each split (a smoke run)")
    args = parser.parse_args()
    # the shipped recipe's options, through fer_train.engine's own optimizer, schedule, epoch and validation
    cfg = TrainConfig(data=args.data, out="", img_size=48, epochs=args.epochs, lr=args.lr, warmup_epochs=1.0,
                      ema_decay=0.999, seed=args.seed, device="cpu", threads=args.threads)
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    model_config = ModelConfig(backbone="mobilenet_v2", input_size=cfg.img_size, mean=ONET_MEAN, std=ONET_STD)
    train = LabelledFaces(load_split(cfg.data, "train", args.limit), cfg.label_mode,
                          train_transform(model_config, cfg.augment), seed=cfg.seed)
    valid = LabelledFaces(load_split(cfg.data, "valid", args.limit), "majority", eval_transform(model_config))
    train_loader = DataLoader(train, batch_size=cfg.batch_size, shuffle=True, drop_last=True)
    valid_loader = DataLoader(valid, batch_size=256)
    net = ONetClassifier(pretrained=not args.scratch, dropout=cfg.dropout).to(memory_format=torch.channels_last)
    ema = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
    optimizer = build_optimizer(net, cfg)
    scheduler = build_scheduler(optimizer, cfg, len(train_loader))
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    name = "scratch" if args.scratch else "onet"
    for epoch in range(cfg.epochs):
        start = time.time()
        train_one_epoch(net, train_loader, optimizer, scheduler, scaler, ema, cfg, device, None, epoch)
        scores = validate(ema.module, valid_loader, device, cfg.tta_flip, len(LABELS))
        print(f"{name} seed {cfg.seed} epoch {epoch + 1}: Valid accuracy {scores['valid_acc']:.4f} "
              f"UAR {scores['valid_uar']:.3f} ({time.time() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()

"""Probe: is MTCNN's ONet (face-pretrained, 48 px, 0.39M parameters) a useful start for FER+?

A standalone experiment behind docs/experiments.md ("MTCNN's ONet as a face-pretrained start"),
not a backbone of the package: it trains ONet's trunk (conv1..dense5, the 256-D feature MTCNN's
face / box / landmark heads read) with a new dropout + 8-way head on FER+ Train, the shipped
recipe's loss (crossentropy label mode), augmentation, AdamW, cosine schedule with one warm-up
epoch and EMA 0.999, and prints the EMA weights' FER+ Valid accuracy (majority protocol) after
every epoch. ONet's weights come from the installed facenet-pytorch wheel; its preprocessing is
MTCNN's, ``(x - 127.5) / 128`` for pixels ``x`` in 0..255 (mean 0.5, std 128/255 at [0, 1]).

Usage (one thread each, so two runs share the 2-core CPU)::

    PYTHONPATH=. python scripts/probe_onet.py --data ../shared/data/ferplus --epochs 12
    PYTHONPATH=. python scripts/probe_onet.py --data ../shared/data/ferplus --epochs 12 --scratch
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from facenet_pytorch.models.mtcnn import ONet
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader

from fer_core.config import ModelConfig
from train.augment import AugmentConfig, eval_transform, train_transform
from train.data import LabelledFaces, load_split
from train.loop import soft_cross_entropy

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
    parser.add_argument("--data", required=True, help="FER+ folder or a train.pack file")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--scratch", action="store_true", help="random init instead of ONet's weights")
    parser.add_argument("--limit", type=int, default=None, help="first N faces of each split (a smoke run)")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    cfg = ModelConfig(backbone="mobilenet_v2", input_size=48, mean=ONET_MEAN, std=ONET_STD)  # preprocessing only
    augment = train_transform(cfg, AugmentConfig())
    train = LabelledFaces(load_split(args.data, "train", args.limit), "crossentropy", augment, seed=args.seed)
    valid = LabelledFaces(load_split(args.data, "valid", args.limit), "majority", eval_transform(cfg))
    train_loader = DataLoader(train, batch_size=64, shuffle=True, drop_last=True)
    valid_loader = DataLoader(valid, batch_size=256)
    net = ONetClassifier(pretrained=not args.scratch)
    ema = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(0.999))
    optimizer = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.05)
    warm, total = len(train_loader), args.epochs * len(train_loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: (s + 1) / warm if s < warm else
                                                  0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm))))
    name = "scratch" if args.scratch else "onet"
    for epoch in range(1, args.epochs + 1):
        start = time.time()
        net.train()
        for images, targets, _ in train_loader:
            loss = soft_cross_entropy(net(images), targets, None, 0.0)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            ema.update_parameters(net)
        ema.eval()
        correct = 0
        with torch.no_grad():
            for images, _, labels in valid_loader:
                correct += int((ema(images).argmax(1) == labels).sum())
        print(f"{name} seed {args.seed} epoch {epoch}: Valid accuracy {correct / len(valid):.4f} "
              f"({time.time() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()

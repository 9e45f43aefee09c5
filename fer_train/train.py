"""A training run: data, model, then epochs of :mod:`fer_train.engine` with a checkpoint and an
exported model after each.

Layout of a run folder (``--out``)::

    args.json        every option of the run
    metrics.csv/json one row per epoch (train/valid loss and accuracy, valid UAR, lr, img/s, time)
    last.pt          full training state after the latest epoch (for --resume)
    best/            config.json + model.safetensors of the epoch with the best valid accuracy
                     (of the EMA weights when ``--ema-decay`` > 0)
    last/            the same for the latest epoch: the model of a schedule fixed in advance,
                     with no selection on Valid (``python -m fer_train.export --epoch last``)

Code that extends fer_train (``research/``) plugs in through :data:`SPLIT_HOOKS`,
:data:`DATA_HOOKS`, :data:`INIT_HOOKS` and options added to
:func:`fer_train.__main__.build_parser` (``TrainConfig.extra``).
"""

from __future__ import annotations

import csv
import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, Subset, WeightedRandomSampler

from fer_core.backbones import backbone_normalization
from fer_core.config import ModelConfig
from fer_core.errors import InvalidArgumentError
from fer_core.model import EmotionNet

from . import engine
from .augment import eval_transform, train_transform
from .data import LabelledFaces, VoteSplit, load_split
from .engine import TrainConfig
from .pretrained import load_pretrained

#: Steps run on the splits before the datasets are built: ``hook(train_split, valid_split, cfg)``
#: returns the ``(train, valid)`` splits to use (``python -m research.train --final-fit`` trains on most of Valid).
SPLIT_HOOKS: list[Callable[[VoteSplit, VoteSplit, TrainConfig], tuple[VoteSplit, VoteSplit]]] = []
#: Steps run on a new run's model after its pretrained weights are loaded and before training
#: (not on ``--resume``): ``hook(model, train_set, cfg)`` may change the model in place and
#: returns a line to print, or ``None``. Research code adds its own (``research/dlib_train.py``
#: calibrates dlib's affine layers this way).
INIT_HOOKS: list[Callable[[EmotionNet, LabelledFaces, TrainConfig], str | None]] = []
#: Steps run on the training faces before every start, ``--resume`` too: ``hook(train_set, cfg)``
#: may change the faces' targets (``LabelledFaces.mix``) and returns a line to print, or ``None``
#: (``python -m research.train --teacher`` mixes in teachers' probabilities this way).
DATA_HOOKS: list[Callable[[LabelledFaces, TrainConfig], str | None]] = []


def check_config(cfg: TrainConfig) -> None:
    """Validate the options that are not checked where they are used.

    Raises:
        InvalidArgumentError: naming the option, what is allowed and the value given.
    """
    if not 0.0 <= cfg.ema_decay < 1.0:
        raise InvalidArgumentError(f"ema_decay must be in [0, 1), got {cfg.ema_decay}")
    if cfg.balance not in ("none", "loss", "sampler"):
        raise InvalidArgumentError(f"balance must be none, loss or sampler, got {cfg.balance!r}")
    if cfg.optimizer not in ("adamw", "sgd"):
        raise InvalidArgumentError(f"optimizer must be adamw or sgd, got {cfg.optimizer!r}")
    if cfg.scheduler not in ("cosine", "onecycle", "plateau"):
        raise InvalidArgumentError(f"scheduler must be cosine, onecycle or plateau, got {cfg.scheduler!r}")
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise InvalidArgumentError(f"epochs and batch_size must be >= 1, got {cfg.epochs} and {cfg.batch_size}")


@dataclass
class RunData:
    """The datasets and loaders of one run.

    Attributes:
        train_set, valid_set: the labelled faces (valid always in majority mode).
        train_loader, valid_loader: their loaders; ``bn_loader`` un-augmented training faces for
            precise BN, or ``None``.
        loader_rng: the generator that shuffles ``train_loader`` (saved in checkpoints).
        class_weight: per-class loss weights for ``balance="loss"``, else ``None``.
    """

    train_set: LabelledFaces
    valid_set: LabelledFaces
    train_loader: DataLoader
    valid_loader: DataLoader
    bn_loader: DataLoader | None
    loader_rng: torch.Generator
    class_weight: torch.Tensor | None


def build_data(cfg: TrainConfig, model_config: ModelConfig, device: torch.device) -> RunData:
    """Read both splits, build the datasets and loaders, and store the training prior in
    ``model_config.prior`` (add-one smoothed class frequencies, for balanced decisions).

    Raises:
        fer_train.data.DatasetError: the data is missing or malformed.
    """
    t0 = time.time()
    train_split = load_split(cfg.data, "train", limit=cfg.limit_train)
    valid_split = load_split(cfg.data, "valid", limit=cfg.limit_valid)
    for hook in SPLIT_HOOKS:
        train_split, valid_split = hook(train_split, valid_split, cfg)
    train_set = LabelledFaces(train_split, cfg.label_mode, train_transform(model_config, cfg.augment), cfg.seed)
    valid_set = LabelledFaces(valid_split, "majority", eval_transform(model_config))
    counts = train_set.class_counts()
    model_config.prior = [float(c) for c in (counts + 1) / (counts + 1).sum()]
    print(f"data: train {len(train_split)} images -> {len(train_set)} kept ({cfg.label_mode}); "
          f"valid {len(valid_split)} -> {len(valid_set)} kept (majority); read in {time.time() - t0:.1f}s")
    print("train class counts: " + ", ".join(f"{n}={c}" for n, c in zip(model_config.labels, counts)))
    weight = engine.class_weights(counts, cfg.balance_power).to(device) if cfg.balance == "loss" else None
    sampler = None
    if cfg.balance == "sampler":
        per_class = engine.class_weights(counts, cfg.balance_power).numpy()
        sampler = WeightedRandomSampler(per_class[train_set.dists.argmax(1)], len(train_set),
                                        generator=torch.Generator().manual_seed(cfg.seed))
    gen = torch.Generator().manual_seed(cfg.seed)
    train_loader = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=sampler is None,
                              sampler=sampler, num_workers=cfg.workers, drop_last=len(train_set) > cfg.batch_size,
                              generator=gen, persistent_workers=cfg.workers > 0)
    valid_loader = DataLoader(valid_set, batch_size=256, num_workers=cfg.workers)
    bn_loader = None
    if cfg.precise_bn > 0:  # a fixed subset of un-augmented training faces, in training-sized batches
        plain = LabelledFaces(train_split, cfg.label_mode, eval_transform(model_config), cfg.seed)
        pick = np.random.default_rng(cfg.seed).permutation(len(plain))[:cfg.precise_bn]
        bn_loader = DataLoader(Subset(plain, pick.tolist()), batch_size=cfg.batch_size, num_workers=cfg.workers)
    return RunData(train_set, valid_set, train_loader, valid_loader, bn_loader, gen, weight)


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run (or resume) a training run; returns the best epoch's metrics row.

    Raises:
        InvalidArgumentError: an option is invalid, or ``--resume`` finds no checkpoint or one
            from a run with other options.
        fer_train.data.DatasetError: the data is missing or malformed.
        fer_core.ModelLoadError: pretrained weights cannot be loaded.
    """
    check_config(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = engine.pick_device(cfg.device)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)

    # data
    mean, std = backbone_normalization(cfg.backbone)
    model_config = ModelConfig(backbone=cfg.backbone, input_size=cfg.img_size, color_mode=cfg.color_mode,
                               dropout=cfg.dropout, mean=mean, std=std)
    data = build_data(cfg, model_config, device)
    for data_hook in DATA_HOOKS:
        if note := data_hook(data.train_set, cfg):
            print(note, flush=True)

    # model, optimizer, schedule, EMA, checkpoint
    model = EmotionNet(model_config).to(device)
    init = load_pretrained(model, cfg.pretrained)
    model.to(device, memory_format=torch.channels_last)  # ~1.9x faster convolutions on CPU
    if not cfg.resume:
        for hook in INIT_HOOKS:
            if note := hook(model, data.train_set, cfg):
                print(note, flush=True)
    optimizer = engine.build_optimizer(model, cfg)
    scheduler = engine.build_scheduler(optimizer, cfg, len(data.train_loader))
    # Exponential moving average of the weights and BatchNorm statistics (Polyak & Juditsky 1992;
    # as timm's ModelEmaV2); validated and exported in place of the raw weights when enabled.
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True) \
        if cfg.ema_decay > 0 else None
    scaler = torch.amp.GradScaler("cuda", enabled=engine.mixed_precision(cfg, device))
    start_epoch, best, history, elapsed = 0, {"valid_acc": -1.0}, [], 0.0
    ckpt_path = out / "last.pt"
    if cfg.resume:
        start_epoch, best, history = engine.load_checkpoint(ckpt_path, cfg, model, ema, optimizer, scheduler,
                                                            scaler, data.loader_rng, device)
        elapsed = history[-1]["elapsed_s"] if history else 0.0
        print(f"resumed from {ckpt_path} at epoch {start_epoch}")
    (out / "args.json").write_text(json.dumps({**cfg.to_dict(), "init": init, "device": str(device),
                                               "n_train": len(data.train_set), "n_valid": len(data.valid_set)},
                                              indent=2))

    # epochs: train, validate, export best/ and last/, checkpoint
    last_epoch = min(cfg.epochs, cfg.stop_after_epoch or cfg.epochs)
    for epoch in range(start_epoch, last_epoch):
        data.train_set.rng = np.random.default_rng(cfg.seed * 1000 + epoch)
        t_epoch = time.time()
        row: dict[str, Any] = {"epoch": epoch + 1}
        row |= engine.train_one_epoch(model, data.train_loader, optimizer, scheduler, scaler, ema, cfg, device,
                                      data.class_weight, epoch)
        evaluated = engine.with_precise_bn(ema.module if ema is not None else model, data.bn_loader, device)
        row |= engine.validate(evaluated, data.valid_loader, device, cfg.tta_flip, model_config.num_classes)
        if ema is not None:  # the raw weights too, for the record
            raw = engine.validate(engine.with_precise_bn(model, data.bn_loader, device), data.valid_loader, device,
                                  cfg.tta_flip, model_config.num_classes)
        if cfg.scheduler == "plateau":
            scheduler.step(row["valid_acc"])
        elapsed += time.time() - t_epoch
        row |= {"lr": optimizer.param_groups[0]["lr"], "elapsed_s": elapsed}
        if ema is not None:
            row["valid_acc_raw"] = raw["valid_acc"]
        history.append(row)
        print(f"epoch {epoch + 1}/{cfg.epochs}: train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f} | "
              f"valid loss {row['valid_loss']:.4f} acc {row['valid_acc']:.4f} UAR {row['valid_uar']:.4f}"
              + (f" (raw weights acc {raw['valid_acc']:.4f})" if ema is not None else "") + " | "
              f"{row['images_per_s']:.0f} img/s, {time.time() - t_epoch:.0f}s", flush=True)
        recipe = summarise(cfg, init, device)
        if row["valid_acc"] > best["valid_acc"]:
            best = dict(row)
            evaluated.config.recipe = {**recipe, "best_epoch": epoch + 1}
            evaluated.save_pretrained(out / "best")
        evaluated.config.recipe = {**recipe, "last_epoch": epoch + 1,
                                   "data": "FER+ (FER2013Train; the schedule's last epoch, FER2013Valid not "
                                           "used to select it)"}
        evaluated.save_pretrained(out / "last")
        _write_metrics(out, history)
        engine.save_checkpoint(ckpt_path, cfg, model, ema, optimizer, scheduler, scaler, data.loader_rng, epoch + 1,
                               best, history)
    if last_epoch < cfg.epochs:
        print(f"stopped after epoch {last_epoch} of {cfg.epochs} (--stop-after-epoch); continue with --resume")
    print(f"best epoch {best.get('epoch')}: valid acc {best['valid_acc']:.4f}, UAR {best.get('valid_uar', 0):.4f}")
    return best


def summarise(cfg: TrainConfig, init: str, device: torch.device) -> dict[str, Any]:
    """The recipe stored in the exported ``config.json`` and shown in the model card."""
    return {
        "data": "FER+ (FER2013Train, selected on FER2013Valid)",
        "label_mode": cfg.label_mode, "init": init, "epochs": cfg.epochs,
        "batch_size": cfg.batch_size, "optimizer": cfg.optimizer, "lr": cfg.lr,
        "weight_decay": cfg.weight_decay, "scheduler": cfg.scheduler, "warmup_epochs": cfg.warmup_epochs,
        "dropout": cfg.dropout, "label_smoothing": cfg.label_smoothing, "img_size": cfg.img_size,
        "balance": cfg.balance, "augment": asdict(cfg.augment), "tta_flip": cfg.tta_flip,
        "ema_decay": cfg.ema_decay, "precise_bn": cfg.precise_bn,
        "seed": cfg.seed, "device": str(device), "mixed_precision": engine.mixed_precision(cfg, device),
        "hardware": torch.cuda.get_device_name(0) if device.type == "cuda"
        else f"CPU, {torch.get_num_threads()} thread{'s' * (torch.get_num_threads() != 1)}",
        **cfg.extra,
    }


def _write_metrics(out: Path, history: list[dict[str, Any]]) -> None:
    (out / "metrics.json").write_text(json.dumps(history, indent=2))
    with (out / "metrics.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)

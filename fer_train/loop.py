"""The training loop: epochs, validation, per-epoch checkpoints, resume, best-model export.

Layout of a run folder (``--out``)::

    args.json        every option of the run
    metrics.csv/json one row per epoch (train/valid loss and accuracy, valid UAR, lr, img/s, time)
    last.pt          full training state after the latest epoch (for --resume)
    best/            config.json + model.safetensors of the epoch with the best valid accuracy
                     (of the EMA weights when ``--ema-decay`` > 0)
    last/            the same for the latest epoch: the model of a schedule fixed in advance,
                     with no selection on Valid (``python -m fer_train.export --epoch last``)
    final/           with ``--final-fit``: the last epoch's model instead (nothing is selected)

A final fit (``--final-fit FRACTION``) trains on Train plus Valid except a held-out fold of
that fraction (:func:`fer_train.data.holdout_mask`, stratified, the same fold for every seed). The
epoch count is fixed in advance (from runs selected on Valid); the fold is validated each epoch
for the record and later fits the temperature (``python -m fer_train.evaluate`` evaluates such a
model on its fold alone).
"""

from __future__ import annotations

import copy
import csv
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import recall_score
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, update_bn
from torch.utils.data import DataLoader, Subset, WeightedRandomSampler
from tqdm import tqdm

from fer_core.backbones import backbone_normalization
from fer_core.config import ModelConfig
from fer_core.errors import InvalidArgumentError
from fer_core.model import EmotionNet

from .augment import AugmentConfig, eval_transform, train_transform
from .data import HOLDOUT_SEED, LabelledFaces, holdout_mask, load_split
from .distill import cached_teacher_probabilities
from .pretrained import calibrate_batchnorm, count_affine_batchnorm, load_pretrained


@dataclass
class TrainConfig:
    """Every option of a training run (one ``python -m fer_train`` flag each)."""

    data: str
    out: str
    backbone: str = "mobilenet_v2"
    pretrained: str = "imagenet"
    label_mode: str = "crossentropy"
    img_size: int = 96
    color_mode: str = "grayscale"
    epochs: int = 12
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    optimizer: str = "adamw"
    momentum: float = 0.9
    scheduler: str = "cosine"
    warmup_epochs: float = 0.5
    dropout: float = 0.2
    label_smoothing: float = 0.0
    balance: str = "none"
    balance_power: float = 0.5
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    tta_flip: bool = False
    ema_decay: float = 0.0
    precise_bn: int = 0
    amp: bool = True
    teacher: list[str] = field(default_factory=list)
    distill_weight: float = 0.5
    seed: int = 0
    workers: int = 0
    device: str = "auto"
    threads: int | None = None
    limit_train: int | None = None
    limit_valid: int | None = None
    resume: bool = False
    stop_after_epoch: int | None = None
    final_fit: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict of all options."""
        return asdict(self)


def pick_device(name: str) -> torch.device:
    """``auto`` -> CUDA if available, else CPU; otherwise ``torch.device(name)``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None,
                       smoothing: float) -> torch.Tensor:
    """Mean cross-entropy against probability targets ``(N, C)`` (majority / probability /
    crossentropy modes), optional per-class weights and label smoothing."""
    return F.cross_entropy(logits, target, weight=weight, label_smoothing=smoothing)


def multi_target_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """FER+ multi-label loss ``-log max_k(t_k p_k)`` (Barsoum et al. 2016, section 3.4)."""
    prob = torch.softmax(logits.float(), dim=-1)
    best = (prob * target).max(dim=-1)
    loss = -torch.log(best.values.clamp_min(1e-8))
    if weight is not None:
        loss = loss * weight[best.indices]
    return loss.mean()


def class_weights(counts: np.ndarray, power: float) -> torch.Tensor:
    """Per-class weights ``(1 / count) ** power``, normalised to mean 1 over the classes
    (power 1 = inverse frequency, 0.5 = its square root)."""
    w = (1.0 / np.maximum(counts, 1)) ** power
    return torch.tensor(w / w.mean(), dtype=torch.float32)


@torch.inference_mode()
def predict_logits(model: nn.Module, loader: DataLoader, device: torch.device, tta_flip: bool
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Logits ``(N, C)`` float32 and majority labels ``(N,)`` int64 for a loader; with
    ``tta_flip`` the logits of the image and its mirror are averaged.

    ``model`` is an :class:`EmotionNet` or its :func:`fer_core.model.fuse_batchnorm` copy; it is
    switched to eval mode.
    """
    model.eval()
    all_logits, all_labels = [], []
    for images, _, labels in loader:
        images = images.to(device, memory_format=torch.channels_last)
        logits = model(images)
        if tta_flip:
            logits = (logits + model(torch.flip(images, dims=[3]))) / 2
        all_logits.append(logits.float().cpu())
        all_labels.append(labels)
    return torch.cat(all_logits).numpy(), torch.cat(all_labels).numpy()


def with_precise_bn(model: nn.Module, loader: DataLoader | None, device: torch.device) -> nn.Module:
    """A copy of ``model`` whose BatchNorm running statistics are recomputed on ``loader``'s
    images with the current weights ("precise BN", Wu & Johnson 2021, "Rethinking 'Batch' in
    BatchNorm", section 3), via ``torch.optim.swa_utils.update_bn``; ``model`` itself is untouched.

    The running averages kept during training (momentum 0.1) lag behind weights that are still
    changing; on the dlib ResNet at its peak learning rate that cost 7 points of Valid accuracy
    (0.734 with them against 0.801 with recomputed statistics, 512 Valid faces, epoch 2).

    Args:
        model: the network to validate or export (BatchNorm layers anywhere inside).
        loader: yields ``(images, ...)`` batches of un-augmented training faces; ``None`` returns
            ``model`` unchanged.
        device: where the forward passes run.

    Returns:
        The copy in eval mode (or ``model``).
    """
    if loader is None:
        return model
    fresh = copy.deepcopy(model)
    update_bn((images.to(device, memory_format=torch.channels_last) for images, *_ in loader), fresh)
    return fresh.eval()


def _lr_lambda(cfg: TrainConfig, steps_per_epoch: int):
    total = max(1, cfg.epochs * steps_per_epoch)
    warm = int(cfg.warmup_epochs * steps_per_epoch)

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, total - warm)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return f


#: TrainConfig fields that only say *where* or *how fast* a run goes; every other field defines the
#: run, and ``--resume`` refuses a checkpoint saved with different values (:func:`load_checkpoint`).
RUNTIME_ONLY = ("resume", "workers", "device", "threads", "stop_after_epoch")


def check_config(cfg: TrainConfig) -> None:
    """Validate the options that are not checked where they are used.

    Raises:
        InvalidArgumentError: naming the option, what is allowed and the value given.
    """
    if not 0.0 <= cfg.ema_decay < 1.0:
        raise InvalidArgumentError(f"ema_decay must be in [0, 1), got {cfg.ema_decay}")
    if cfg.teacher and cfg.label_mode == "multi_target":
        raise InvalidArgumentError("knowledge distillation (--teacher) needs a probability-target label mode, "
                                   "not multi_target")
    if not 0.0 <= cfg.distill_weight <= 1.0:
        raise InvalidArgumentError(f"distill_weight must be in [0, 1], got {cfg.distill_weight}")
    if cfg.balance not in ("none", "loss", "sampler"):
        raise InvalidArgumentError(f"balance must be none, loss or sampler, got {cfg.balance!r}")
    if cfg.optimizer not in ("adamw", "sgd"):
        raise InvalidArgumentError(f"optimizer must be adamw or sgd, got {cfg.optimizer!r}")
    if cfg.scheduler not in ("cosine", "onecycle", "plateau"):
        raise InvalidArgumentError(f"scheduler must be cosine, onecycle or plateau, got {cfg.scheduler!r}")
    if not 0.0 <= cfg.final_fit < 1.0:
        raise InvalidArgumentError(f"final_fit (the held-out share of Valid) must be in [0, 1), got {cfg.final_fit}")
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
    if cfg.final_fit > 0:
        fold = holdout_mask(valid_split.votes, cfg.final_fit)
        train_split = train_split.concat(valid_split.subset(np.flatnonzero(~fold)))
        valid_split = valid_split.subset(np.flatnonzero(fold))
        print(f"final fit: training on Train + {int((~fold).sum())} Valid faces; {int(fold.sum())} Valid faces "
              f"held out (fold seed {HOLDOUT_SEED})")
    train_set = LabelledFaces(train_split, cfg.label_mode, train_transform(model_config, cfg.augment), cfg.seed)
    valid_set = LabelledFaces(valid_split, "majority", eval_transform(model_config))
    counts = train_set.class_counts()
    model_config.prior = [float(c) for c in (counts + 1) / (counts + 1).sum()]
    print(f"data: train {len(train_split)} images -> {len(train_set)} kept ({cfg.label_mode}); "
          f"valid {len(valid_split)} -> {len(valid_set)} kept (majority); read in {time.time() - t0:.1f}s")
    print("train class counts: " + ", ".join(f"{n}={c}" for n, c in zip(model_config.labels, counts)))
    weight = class_weights(counts, cfg.balance_power).to(device) if cfg.balance == "loss" else None
    sampler = None
    if cfg.balance == "sampler":
        per_class = class_weights(counts, cfg.balance_power).numpy()
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


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW or SGD (Nesterov) with weight decay on weights, none on biases and norm parameters."""
    params = [
        {"params": [p for p in model.parameters() if p.ndim > 1], "weight_decay": cfg.weight_decay},
        {"params": [p for p in model.parameters() if p.ndim <= 1], "weight_decay": 0.0},
    ]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    return torch.optim.AdamW(params, lr=cfg.lr)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    """The learning-rate schedule: per-step cosine with linear warm-up, one-cycle, or per-epoch
    reduce-on-plateau of the valid accuracy (``step(valid_acc)``)."""
    if cfg.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch)
    if cfg.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.3, patience=2)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg, steps_per_epoch))


def train_one_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer, scheduler,
                    scaler: torch.amp.GradScaler, ema: AveragedModel | None, cfg: TrainConfig, device: torch.device,
                    class_weight: torch.Tensor | None, epoch: int) -> dict[str, float]:
    """One pass over ``loader``: forward (autocast on CUDA), loss, backward, step, per-step
    schedule, EMA update.

    Returns:
        ``train_loss``, ``train_acc`` (against the majority label) and ``images_per_s``.
    """
    model.train()
    use_amp = mixed_precision(cfg, device)
    t_epoch = time.time()
    seen, loss_sum, correct = 0, 0.0, 0
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, mininterval=2)
    for images, targets, labels in bar:
        images = images.to(device, memory_format=torch.channels_last)
        targets, labels = targets.to(device), labels.to(device)
        with torch.autocast(device.type, enabled=use_amp):
            logits = model(images)
        if cfg.label_mode == "multi_target":
            loss = multi_target_loss(logits.float(), targets, class_weight)
        else:
            loss = soft_cross_entropy(logits.float(), targets, class_weight, cfg.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if cfg.scheduler != "plateau":
            scheduler.step()
        if ema is not None:
            ema.update_parameters(model)
        n = images.shape[0]
        seen += n
        loss_sum += loss.item() * n
        correct += (logits.argmax(1) == labels).sum().item()
        bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}",
                        ips=f"{seen / (time.time() - t_epoch):.0f}")
    return {"train_loss": loss_sum / max(1, seen), "train_acc": correct / max(1, seen),
            "images_per_s": seen / max(1e-9, time.time() - t_epoch)}


def validate(model: nn.Module, loader: DataLoader, device: torch.device, tta_flip: bool,
             num_classes: int) -> dict[str, float]:
    """Valid cross-entropy, accuracy and UAR (macro recall, sklearn) against the majority labels."""
    logits, labels = predict_logits(model, loader, device, tta_flip)
    pred = logits.argmax(1)
    return {
        "valid_loss": F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels)).item(),
        "valid_acc": float((pred == labels).mean()),
        "valid_uar": float(recall_score(labels, pred, labels=list(range(num_classes)), average="macro",
                                        zero_division=0)),
    }


def save_checkpoint(path: Path, cfg: TrainConfig, model: nn.Module, ema: AveragedModel | None,
                    optimizer: torch.optim.Optimizer, scheduler, scaler: torch.amp.GradScaler,
                    loader_rng: torch.Generator, epoch: int, best: dict[str, Any],
                    history: list[dict[str, Any]]) -> None:
    """Write the full training state after ``epoch`` epochs to ``path`` atomically (a temporary
    file renamed over it): weights, EMA, optimizer, schedule, AMP scaler, RNG states, the run's
    defining options and the metrics so far."""
    tmp = path.with_suffix(".tmp")
    torch.save({
        "model": model.state_dict(), "ema": ema.state_dict() if ema is not None else None,
        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
        "torch_rng": torch.get_rng_state(), "loader_rng": loader_rng.get_state(), "epoch": epoch, "best": best,
        "history": history, "config": _defining(cfg),
    }, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path, cfg: TrainConfig, model: nn.Module, ema: AveragedModel | None,
                    optimizer: torch.optim.Optimizer, scheduler, scaler: torch.amp.GradScaler,
                    loader_rng: torch.Generator, device: torch.device) -> tuple[int, dict[str, Any], list[dict]]:
    """Restore the state :func:`save_checkpoint` wrote into the given objects.

    Returns:
        ``(epochs done, best row, history)``.

    Raises:
        InvalidArgumentError: no checkpoint at ``path``; it was saved with different run-defining
            options (the epochs, schedule, data, model...: everything but :data:`RUNTIME_ONLY`),
            since resuming would silently bend the schedule; or EMA is asked for and the
            checkpoint has none.
    """
    if not path.is_file():
        raise InvalidArgumentError(f"--resume: no checkpoint at {path}")
    ckpt = torch.load(path, map_location=device, weights_only=True)
    saved, now = ckpt.get("config"), _defining(cfg)
    if saved is not None:  # options newer than the checkpoint ran at their defaults
        defaults = _defining(TrainConfig(data=cfg.data, out=cfg.out))
        saved = {**{k: v for k, v in defaults.items() if k not in saved}, **saved}
        if isinstance(saved.get("augment"), dict):
            saved["augment"] = {**defaults["augment"], **saved["augment"]}
    if saved is not None and saved != now:
        changed = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(saved) | set(now))
                            if saved.get(k) != now.get(k))
        raise InvalidArgumentError(f"--resume: {path} belongs to a run with other options ({changed}); resume with "
                                   "the same options, or start a new run in another --out folder")
    model.load_state_dict(ckpt["model"])
    if ema is not None:
        if ckpt.get("ema") is None:
            raise InvalidArgumentError(f"--resume with --ema-decay: {path} was saved without EMA weights")
        ema.load_state_dict(ckpt["ema"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    if ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    torch.set_rng_state(ckpt["torch_rng"].cpu())
    loader_rng.set_state(ckpt["loader_rng"].cpu())
    return ckpt["epoch"], ckpt["best"], ckpt["history"]


def _defining(cfg: TrainConfig) -> dict[str, Any]:
    """The options that define a run (JSON-like, comparable across a checkpoint round trip)."""
    return json.loads(json.dumps({k: v for k, v in cfg.to_dict().items() if k not in RUNTIME_ONLY}))


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run (or resume) a training run; returns the best epoch's metrics row.

    Raises:
        InvalidArgumentError: an option is invalid, or ``--resume`` finds no checkpoint or one
            from a run with other options.
        fer_train.data.DatasetError: the data is missing or malformed.
        fer_core.ModelLoadError: pretrained weights or a teacher model cannot be loaded.
    """
    check_config(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)

    mean, std = backbone_normalization(cfg.backbone)
    model_config = ModelConfig(backbone=cfg.backbone, input_size=cfg.img_size, color_mode=cfg.color_mode,
                               dropout=cfg.dropout, mean=mean, std=std)
    data = build_data(cfg, model_config, device)
    if cfg.teacher:
        t_teacher = time.time()
        data.train_set.set_teacher(cached_teacher_probabilities(out, cfg.teacher, data.train_set.images),
                                   cfg.distill_weight)
        print(f"distillation: {len(cfg.teacher)} teacher(s), weight {cfg.distill_weight}; "
              f"teacher probabilities ready in {time.time() - t_teacher:.0f}s", flush=True)

    model = EmotionNet(model_config).to(device)
    init = load_pretrained(model, cfg.pretrained)
    model.to(device, memory_format=torch.channels_last)  # ~1.9x faster convolutions on CPU
    if not cfg.resume and count_affine_batchnorm(model):  # dlib's affine layers (dlib-face or a converted file)
        t_cal = time.time()
        calib = DataLoader(data.train_set, batch_size=64, shuffle=True, num_workers=cfg.workers,
                           generator=torch.Generator().manual_seed(cfg.seed))
        n_bn = calibrate_batchnorm(model, (images for _, (images, _, _) in zip(range(16), calib)))
        print(f"{n_bn} affine layers calibrated to batch statistics of up to {16 * 64} augmented "
              f"train faces in {time.time() - t_cal:.1f}s", flush=True)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, len(data.train_loader))
    # Exponential moving average of the weights and BatchNorm statistics (Polyak & Juditsky 1992;
    # as timm's ModelEmaV2); validated and exported in place of the raw weights when enabled.
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True) \
        if cfg.ema_decay > 0 else None
    scaler = torch.amp.GradScaler("cuda", enabled=mixed_precision(cfg, device))

    start_epoch, best, history, elapsed = 0, {"valid_acc": -1.0}, [], 0.0
    ckpt_path = out / "last.pt"
    if cfg.resume:
        start_epoch, best, history = load_checkpoint(ckpt_path, cfg, model, ema, optimizer, scheduler, scaler,
                                                     data.loader_rng, device)
        elapsed = history[-1]["elapsed_s"] if history else 0.0
        print(f"resumed from {ckpt_path} at epoch {start_epoch}")
    (out / "args.json").write_text(json.dumps({**cfg.to_dict(), "init": init, "device": str(device),
                                               "n_train": len(data.train_set), "n_valid": len(data.valid_set)},
                                              indent=2))

    last_epoch = min(cfg.epochs, cfg.stop_after_epoch or cfg.epochs)
    for epoch in range(start_epoch, last_epoch):
        data.train_set.rng = np.random.default_rng(cfg.seed * 1000 + epoch)
        t_epoch = time.time()
        row: dict[str, Any] = {"epoch": epoch + 1}
        row |= train_one_epoch(model, data.train_loader, optimizer, scheduler, scaler, ema, cfg, device,
                               data.class_weight, epoch)
        if ema is not None:
            raw = validate(with_precise_bn(model, data.bn_loader, device), data.valid_loader, device, cfg.tta_flip,
                           model_config.num_classes)
        evaluated = with_precise_bn(ema.module if ema is not None else model, data.bn_loader, device)
        row |= validate(evaluated, data.valid_loader, device, cfg.tta_flip, model_config.num_classes)
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
        if cfg.final_fit > 0:  # no selection: the fixed schedule's latest epoch is the model
            best = dict(row)
            evaluated.config.recipe = {**recipe, "final_epoch": epoch + 1}
            evaluated.save_pretrained(out / "final")
        else:
            if row["valid_acc"] > best["valid_acc"]:
                best = dict(row)
                evaluated.config.recipe = {**recipe, "best_epoch": epoch + 1}
                evaluated.save_pretrained(out / "best")
            evaluated.config.recipe = {**recipe, "last_epoch": epoch + 1,
                                       "data": "FER+ (FER2013Train; the schedule's last epoch, FER2013Valid not "
                                               "used to select it)"}
            evaluated.save_pretrained(out / "last")
        _write_metrics(out, history)
        save_checkpoint(ckpt_path, cfg, model, ema, optimizer, scheduler, scaler, data.loader_rng, epoch + 1, best,
                        history)
    if last_epoch < cfg.epochs:
        print(f"stopped after epoch {last_epoch} of {cfg.epochs} (--stop-after-epoch); continue with --resume")
    kind = "final" if cfg.final_fit > 0 else "best"
    print(f"{kind} epoch {best.get('epoch')}: valid acc {best['valid_acc']:.4f}, UAR {best.get('valid_uar', 0):.4f}")
    return best


def mixed_precision(cfg: TrainConfig, device: torch.device) -> bool:
    """Whether training steps run under ``torch.autocast`` (float16 on CUDA, with gradient
    scaling): on CUDA unless ``--no-amp``; never on CPU (float32 throughout)."""
    return device.type == "cuda" and cfg.amp


def summarise(cfg: TrainConfig, init: str, device: torch.device) -> dict[str, Any]:
    """The recipe stored in the exported ``config.json`` and shown in the model card."""
    data = "FER+ (FER2013Train, selected on FER2013Valid)" if cfg.final_fit == 0 else (
        f"FER+ (FER2013Train + {1 - cfg.final_fit:.0%} of FER2013Valid, final fit with the epoch count fixed in "
        f"advance; {cfg.final_fit:.0%} of FER2013Valid held out, stratified, fold seed {HOLDOUT_SEED})")
    return {
        "data": data, "final_fit": cfg.final_fit,
        "label_mode": cfg.label_mode, "init": init, "epochs": cfg.epochs,
        "batch_size": cfg.batch_size, "optimizer": cfg.optimizer, "lr": cfg.lr,
        "weight_decay": cfg.weight_decay, "scheduler": cfg.scheduler, "warmup_epochs": cfg.warmup_epochs,
        "dropout": cfg.dropout, "label_smoothing": cfg.label_smoothing, "img_size": cfg.img_size,
        "balance": cfg.balance, "augment": asdict(cfg.augment), "tta_flip": cfg.tta_flip,
        "ema_decay": cfg.ema_decay, "precise_bn": cfg.precise_bn,
        "teachers": list(cfg.teacher), "distill_weight": cfg.distill_weight if cfg.teacher else 0.0,
        "seed": cfg.seed, "device": str(device), "mixed_precision": mixed_precision(cfg, device),
        "hardware": torch.cuda.get_device_name(0) if device.type == "cuda"
        else f"CPU, {torch.get_num_threads()} thread{'s' * (torch.get_num_threads() != 1)}",
    }


def _write_metrics(out: Path, history: list[dict[str, Any]]) -> None:
    (out / "metrics.json").write_text(json.dumps(history, indent=2))
    with (out / "metrics.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)

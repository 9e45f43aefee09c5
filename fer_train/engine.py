"""The training engine: the options of a run, its optimizer and schedule, one training epoch,
prediction and validation, and the checkpoint that ``--resume`` continues from.

:func:`fer_train.train.train` strings these together into a run; research scripts
(``research/probe_onet.py``) reuse them on networks of their own.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import recall_score
from torch import nn
from torch.optim import lr_scheduler
from torch.optim.swa_utils import AveragedModel, update_bn
from torch.utils.data import DataLoader
from tqdm import tqdm

from fer_core.errors import InvalidArgumentError
from fer_core.model import EmotionNet, fuse_batchnorm

from .augment import AugmentConfig, eval_transform
from .data import LabelledFaces, VoteSplit


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
    seed: int = 0
    workers: int = 0
    device: str = "auto"
    threads: int | None = None
    limit_train: int | None = None
    limit_valid: int | None = None
    resume: bool = False
    stop_after_epoch: int | None = None
    #: options of code that extends fer_train (e.g. ``python -m research.train --teacher``): recorded
    #: in ``args.json`` and the recipe, and checked by ``--resume`` like every other option
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict of all options."""
        return asdict(self)


#: TrainConfig fields that only say *where* or *how fast* a run goes; every other field defines the
#: run, and ``--resume`` refuses a checkpoint saved with different values (:func:`load_checkpoint`).
RUNTIME_ONLY = ("resume", "workers", "device", "threads", "stop_after_epoch")
#: Options fer_train no longer has (moved to research tools) with the values that meant "off": a
#: checkpoint saved with them off resumes as if saved without them.
RETIRED = {"teacher": [], "distill_weight": 0.5, "final_fit": 0.0}


def pick_device(name: str) -> torch.device:
    """``auto`` -> CUDA if available, else CPU; otherwise ``torch.device(name)``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def mixed_precision(cfg: TrainConfig, device: torch.device) -> bool:
    """Whether training steps run under ``torch.autocast`` (float16 on CUDA, with gradient
    scaling): on CUDA unless ``--no-amp``; never on CPU (float32 throughout)."""
    return device.type == "cuda" and cfg.amp


def multi_target_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """FER+ multi-label loss ``-log max_k(t_k p_k)`` (Barsoum et al. 2016, section 3.4), averaged
    over the batch; ``logits`` and ``target`` are ``(N, C)``, ``weight`` optional ``(C,)``."""
    prob = torch.softmax(logits.float(), dim=-1)
    best = (prob * target).max(dim=-1)
    loss = -torch.log(best.values.clamp_min(1e-8))
    if weight is not None:
        loss = loss * weight[best.indices]
    return loss.mean()


def class_weights(counts: np.ndarray, power: float) -> torch.Tensor:
    """Per-class weights ``(1 / count) ** power``, float32 ``(C,)`` normalised to mean 1 over the
    classes (power 1 = inverse frequency, 0.5 = its square root)."""
    w = (1.0 / np.maximum(counts, 1)) ** power
    return torch.tensor(w / w.mean(), dtype=torch.float32)


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW or SGD (Nesterov) with weight decay on weights, none on biases and norm parameters."""
    params = [
        {"params": [p for p in model.parameters() if p.ndim > 1], "weight_decay": cfg.weight_decay},
        {"params": [p for p in model.parameters() if p.ndim <= 1], "weight_decay": 0.0},
    ]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    return torch.optim.AdamW(params, lr=cfg.lr)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int
                    ) -> lr_scheduler.LRScheduler | lr_scheduler.ReduceLROnPlateau:
    """The learning-rate schedule, stepped once per optimizer step except ``plateau``.

    ``cosine``: a linear warm-up over ``warmup_epochs`` (step ``k`` at ``(k + 1) / W`` of the peak)
    then cosine annealing to 0 at the last step; ``onecycle``: PyTorch's one-cycle policy;
    ``plateau``: per epoch, ``step(valid_acc)``, times 0.3 after 2 epochs without a gain.
    """
    if cfg.scheduler == "onecycle":
        return lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch)
    if cfg.scheduler == "plateau":
        return lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.3, patience=2)
    total, warm = max(1, cfg.epochs * steps_per_epoch), int(cfg.warmup_epochs * steps_per_epoch)
    cosine = lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total - warm))
    if warm == 0:
        return cosine
    linear = lr_scheduler.LinearLR(optimizer, start_factor=1 / warm, total_iters=max(1, warm - 1))
    return lr_scheduler.SequentialLR(optimizer, [linear, cosine], milestones=[warm])


def train_one_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer, scheduler,
                    scaler: torch.amp.GradScaler, ema: AveragedModel | None, cfg: TrainConfig, device: torch.device,
                    class_weight: torch.Tensor | None, epoch: int) -> dict[str, float]:
    """One pass over ``loader`` (batches of images ``(N, 3, S, S)``, targets ``(N, C)``, majority
    labels ``(N,)``): forward (autocast on CUDA), loss, backward, step, per-step schedule, EMA update.

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
            loss = F.cross_entropy(logits.float(), targets, weight=class_weight, label_smoothing=cfg.label_smoothing)
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


def majority_logits(model: EmotionNet, faces: VoteSplit, tta_flip: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Logits ``(N, C)`` float64 and majority labels ``(N,)`` int64 of the faces of ``faces`` with
    a majority label, computed on CPU by the network fer_core runs: BatchNorm folded into the
    convolutions (same logits to about 1e-6, about 1.6x faster on CPU).
    """
    loader = DataLoader(LabelledFaces(faces, "majority", eval_transform(model.config)), batch_size=256)
    logits, labels = predict_logits(fuse_batchnorm(model), loader, torch.device("cpu"), tta_flip)
    return logits.astype(np.float64), labels


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
            since resuming would silently bend the schedule; EMA is asked for and the checkpoint
            has none; or its schedule state is of another kind (warm-up + cosine was a LambdaLR
            before it became a SequentialLR).
    """
    if not path.is_file():
        raise InvalidArgumentError(f"--resume: no checkpoint at {path}")
    ckpt = torch.load(path, map_location=device, weights_only=True)
    saved, now = ckpt.get("config"), _defining(cfg)
    if saved is not None:  # options newer than the checkpoint ran at their defaults
        defaults = _defining(TrainConfig(data=cfg.data, out=cfg.out))
        saved = {**{k: v for k, v in defaults.items() if k not in saved},
                 **{k: v for k, v in saved.items() if k not in RETIRED or v != RETIRED[k]}}
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
    if ("_schedulers" in ckpt["scheduler"]) != isinstance(scheduler, lr_scheduler.SequentialLR):
        raise InvalidArgumentError(f"--resume: {path} holds another kind of learning-rate schedule state (saved by "
                                   "an older fer_train?); start a new run in another --out folder")
    scheduler.load_state_dict(ckpt["scheduler"])
    if ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    torch.set_rng_state(ckpt["torch_rng"].cpu())
    loader_rng.set_state(ckpt["loader_rng"].cpu())
    return ckpt["epoch"], ckpt["best"], ckpt["history"]


def _defining(cfg: TrainConfig) -> dict[str, Any]:
    """The options that define a run (JSON-like, comparable across a checkpoint round trip)."""
    return json.loads(json.dumps({k: v for k, v in cfg.to_dict().items() if k not in RUNTIME_ONLY}))

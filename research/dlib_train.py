"""``python -m research.dlib_train [calibrate|evaluate|export] ARGS``: the fer_train steps with dlib's
face-recognition ResNet plugged in.

Importing this module registers, through fer_train's and fer_core's extension points:

* backbone ``dlib_resnet`` (:mod:`research.dlib_resnet`), so ``--backbone dlib_resnet`` trains and
  model folders of that backbone load (for evaluation, export, or as a teacher of
  ``python -m research.train``, which imports this module);
* ``--pretrained dlib-face``: dlib's weights from the installed ``face-recognition-models``
  package (:mod:`research.convert_dlib`);
* a step before training (:data:`fer_train.train.INIT_HOOKS`) that turns dlib's ``affine`` layers
  into data-normalising BatchNorm (:func:`calibrate_batchnorm`), whether the weights came from
  ``dlib-face`` or from a file ``python -m research.convert_dlib`` wrote.

With no step name it trains (every ``python -m fer_train`` flag); ``calibrate``, ``evaluate`` and
``export`` run ``python -m fer_train.<step>`` with the same arguments, e.g.::

    python -m research.dlib_train --data ../shared/data/ferplus --out runs/dlib --backbone dlib_resnet \\
        --pretrained dlib-face --img-size 112
    python -m research.dlib_train evaluate --model runs/dlib/best --data ../shared/data/ferplus
"""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Iterable

import torch
from torch.utils.data import DataLoader

from fer_core.errors import InvalidArgumentError, ModelLoadError
from fer_core.model import EmotionNet
from fer_train import pretrained, train
from fer_train.data import LabelledFaces
from fer_train.engine import TrainConfig
from research.convert_dlib import DLIB_MODEL_FILE, dlib_backbone_state_dict

#: The steps besides training, by the name given as the first argument.
STEPS = {"calibrate": "fer_train.calibrate", "evaluate": "fer_train.evaluate", "export": "fer_train.export"}


def dlib_face(model: EmotionNet) -> tuple[dict[str, torch.Tensor], str]:
    """``--pretrained dlib-face``: dlib's converted weights without its descriptor layer.

    Returns:
        ``(state dict for model.net, description)``.

    Raises:
        ModelLoadError: ``model``'s backbone is not ``dlib_resnet``, or dlib's file cannot be read.
    """
    if model.config.backbone != "dlib_resnet":
        raise ModelLoadError(f"--pretrained dlib-face needs --backbone dlib_resnet, not {model.config.backbone}")
    try:
        state = dlib_backbone_state_dict()
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read dlib's face-recognition weights: {exc}") from exc
    return state, f"dlib face recognition ResNet ({DLIB_MODEL_FILE}, CC0)"


def count_affine_batchnorm(model: torch.nn.Module) -> int:
    """Count the BatchNorm layers that stand for fixed per-channel affine maps.

    :mod:`research.convert_dlib` loads each of dlib's ``affine`` layers as a BatchNorm module with
    ``running_mean = 0`` and ``running_var = 1 - eps`` exactly; a freshly initialised or trained
    BatchNorm layer does not hold these statistics. Such layers need :func:`calibrate_batchnorm`
    before training, whether the weights came from ``--pretrained dlib-face`` or from a file that
    ``python -m research.convert_dlib`` wrote.

    Args:
        model: any network.

    Returns:
        The number of ``BatchNorm2d`` layers with those identity statistics (0 if none).
    """
    n = 0
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d) and m.running_mean is not None and m.running_var is not None:
            ident = torch.full_like(m.running_var, 1.0 - m.eps)
            n += bool(torch.equal(m.running_var, ident) and not m.running_mean.any())
    return n


@torch.no_grad()
def calibrate_batchnorm(model: torch.nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Turn BatchNorm layers that act as fixed affine maps into data-normalising ones, keeping the
    network's function on this data.

    dlib's network (and any model converted from an inference graph) holds per-channel
    ``y = gamma * x + beta`` layers, loaded as BatchNorm with ``running_mean = 0``,
    ``running_var = 1 - eps``. Training in train mode would normalise each channel by its batch
    statistics and change the function. This measures each such layer's input mean ``m`` and
    variance ``v`` per channel over ``batches`` (in eval mode, so the function is unchanged
    throughout), then sets ``running_mean = m``, ``running_var = v``,
    ``weight = gamma * sqrt(v + eps)``, ``bias = beta + gamma * m``. In eval mode the layer then
    computes exactly ``gamma * x + beta`` again; in train mode, on batches like these, nearly so
    (a data-dependent initialisation in the spirit of Kraehenbuehl et al. 2016, "Data-dependent
    Initializations of Convolutional Neural Networks").

    Args:
        model: a network whose BatchNorm layers hold identity statistics; left in eval mode.
        batches: float32 input batches ``(N, 3, S, S)`` as the model is fed in training.

    Returns:
        The number of BatchNorm layers calibrated.

    Raises:
        InvalidArgumentError: ``batches`` is empty.
    """
    layers = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    sums: dict[int, list[torch.Tensor]] = {}

    def hook(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        x = inputs[0].double()
        acc = sums.setdefault(id(module), [torch.zeros(x.shape[1], dtype=torch.float64)] * 2 + [0])
        acc[0] = acc[0] + x.sum(dim=(0, 2, 3))
        acc[1] = acc[1] + (x * x).sum(dim=(0, 2, 3))
        acc[2] += x.shape[0] * x.shape[2] * x.shape[3]

    handles = [m.register_forward_hook(hook) for m in layers]
    model.eval()
    device = next(model.parameters()).device
    try:
        for images in batches:
            model(images.to(device, memory_format=torch.channels_last))
    finally:
        for h in handles:
            h.remove()
    if not sums:
        raise InvalidArgumentError("calibrate_batchnorm: no batches")
    for bn in layers:
        total, squares, count = sums[id(bn)]
        mean = total / count
        var = (squares / count - mean * mean).clamp_min(0)
        gamma = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
        beta = bn.bias.double() - gamma * bn.running_mean.double()
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)
        bn.weight.copy_(gamma * torch.sqrt(var + bn.eps))
        bn.bias.copy_(beta + gamma * mean)
    return len(layers)


def calibrate_affine_layers(model: EmotionNet, train_set: LabelledFaces, cfg: TrainConfig) -> str | None:
    """The step before training (:data:`fer_train.train.INIT_HOOKS`): when ``model`` holds dlib's
    affine layers, calibrate them on up to 16 batches of 64 augmented training faces.

    Returns:
        A line saying how many layers were calibrated, or ``None`` when there were none.
    """
    if not count_affine_batchnorm(model):
        return None
    start = time.time()
    loader = DataLoader(train_set, batch_size=64, shuffle=True, num_workers=cfg.workers,
                        generator=torch.Generator().manual_seed(cfg.seed))
    n_bn = calibrate_batchnorm(model, (images for _, (images, _, _) in zip(range(16), loader)))
    return (f"{n_bn} affine layers calibrated to batch statistics of up to {16 * 64} augmented train faces in "
            f"{time.time() - start:.1f}s")


pretrained.register_pretrained("dlib-face", dlib_face)
if calibrate_affine_layers not in train.INIT_HOOKS:
    train.INIT_HOOKS.append(calibrate_affine_layers)


def main(argv: list[str] | None = None) -> int:
    """Run ``python -m fer_train`` (or the step named first) with the dlib parts registered."""
    argv = list(sys.argv[1:] if argv is None else argv)
    module = STEPS.get(argv[0]) if argv else None
    return importlib.import_module(module or "fer_train.__main__").main(argv[1:] if module else argv)


if __name__ == "__main__":
    sys.exit(main())

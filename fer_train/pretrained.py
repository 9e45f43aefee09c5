"""Pretrained initialisation of a backbone: ImageNet through torchvision's weights API, or faces
through dlib's face-recognition ResNet.

Offline, torchvision finds the ImageNet file in ``$TORCH_HOME/hub/checkpoints/`` (e.g.
``TORCH_HOME=../shared/weights/torch``); online it downloads it. ``dlib-face`` reads dlib's
weights from the installed ``face-recognition-models`` package (:mod:`research.convert_dlib`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
import torchvision
from safetensors.torch import load_file

from fer_core.errors import InvalidArgumentError, ModelLoadError
from fer_core.model import EmotionNet


def load_pretrained(model: EmotionNet, pretrained: str) -> str:
    """Initialise ``model`` from ImageNet weights (backbone only) or a file.

    Args:
        model: a freshly built :class:`EmotionNet`.
        pretrained: ``"dlib-face"`` (dlib's face-recognition ResNet, backbone ``dlib_resnet`` only;
            follow with :func:`calibrate_batchnorm` before training), ``"imagenet"``
            (torchvision's ``IMAGENET1K_V1`` weights of the backbone, the
            one entry every backbone has), a torchvision weights name such as ``"IMAGENET1K_V2"``,
            ``"none"`` (keep the random init), or a path to a ``.safetensors`` / torchvision
            ``.pth`` state dict of the same architecture. An EmotionNet ``model.safetensors`` also
            loads its head when the shape fits, so fine-tuning continues from that model.

    Returns:
        A short description of what was loaded (for the recipe and the model card).

    Raises:
        ModelLoadError: the weights cannot be obtained (offline and not cached) — the message names
            ``--pretrained none`` and ``TORCH_HOME`` — or do not fit the backbone.
    """
    if pretrained == "none":
        return "none (random init)"
    backbone = model.config.backbone
    enum = torchvision.models.get_model_weights(backbone) if backbone != "dlib_resnet" else None
    name = "IMAGENET1K_V1" if pretrained == "imagenet" else pretrained
    if pretrained == "dlib-face":
        if backbone != "dlib_resnet":
            raise ModelLoadError(f"--pretrained dlib-face needs --backbone dlib_resnet, not {backbone}")
        from research.convert_dlib import DLIB_MODEL_FILE, dlib_backbone_state_dict

        try:
            state = dlib_backbone_state_dict()
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot read dlib's face-recognition weights: {exc}") from exc
        source = f"dlib face recognition ResNet ({DLIB_MODEL_FILE}, CC0)"
    elif enum is not None and name in enum.__members__:
        weights = enum[name]
        try:
            state = weights.get_state_dict(progress=False)
        except Exception as exc:  # URLError, HTTPError, socket errors ...
            hub = Path(torch.hub.get_dir()) / "checkpoints"
            raise ModelLoadError(
                f"cannot get ImageNet weights {weights} for {backbone}: {exc}. Offline, put the file "
                f"{Path(weights.url).name} in {hub} (set TORCH_HOME), or train with --pretrained none."
            ) from exc
        source = f"torchvision {weights}"
    else:
        path = Path(pretrained)
        if not path.is_file():
            raise ModelLoadError(f"--pretrained {pretrained}: no such file (use imagenet, dlib-face, none or a path)")
        try:
            state = load_file(str(path)) if path.suffix == ".safetensors" else \
                torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # safetensors/pickle/zip errors on a damaged or foreign file
            raise ModelLoadError(f"--pretrained {pretrained}: cannot read it as a state dict ({exc})") from exc
        if not isinstance(state, dict):
            raise ModelLoadError(f"--pretrained {pretrained}: holds a {type(state).__name__}, not a state dict")
        if state and all(k.startswith("net.") for k in state):  # an EmotionNet export: head included
            state = {k[4:]: v for k, v in state.items()}
        source = str(path)
    own = model.net.state_dict()
    usable = {k: v for k, v in state.items() if k in own and v.shape == own[k].shape}
    head = {k for k in own if k.startswith(("fc.", "classifier."))}
    missing = [k for k in own if k not in usable and k not in head]
    if missing:
        raise ModelLoadError(f"{source} does not fit {backbone}: {len(missing)} tensors missing, e.g. {missing[0]}")
    model.net.load_state_dict(usable, strict=False)
    return source


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
        ValueError: ``batches`` is empty.
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

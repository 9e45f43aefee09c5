"""ImageNet initialisation of a backbone through torchvision's weights API.

Offline, torchvision finds the file in ``$TORCH_HOME/hub/checkpoints/`` (e.g.
``TORCH_HOME=../shared/weights/torch``); online it downloads it.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from safetensors.torch import load_file

from fer_core.model import EmotionNet


def load_pretrained(model: EmotionNet, pretrained: str) -> str:
    """Initialise ``model`` from ImageNet weights (backbone only) or a file.

    Args:
        model: a freshly built :class:`EmotionNet`.
        pretrained: ``"imagenet"`` (torchvision's ``IMAGENET1K_V1`` weights of the backbone, the
            one entry every backbone has), a torchvision weights name such as ``"IMAGENET1K_V2"``,
            ``"none"`` (keep the random init), or a path to a ``.safetensors`` / torchvision
            ``.pth`` state dict of the same architecture. An EmotionNet ``model.safetensors`` also
            loads its head when the shape fits, so fine-tuning continues from that model.

    Returns:
        A short description of what was loaded (for the recipe and the model card).

    Raises:
        RuntimeError: the weights cannot be obtained (offline and not cached) — the message names
            ``--pretrained none`` and ``TORCH_HOME`` — or do not fit the backbone.
    """
    if pretrained == "none":
        return "none (random init)"
    backbone = model.config.backbone
    enum = torchvision.models.get_model_weights(backbone)
    name = "IMAGENET1K_V1" if pretrained == "imagenet" else pretrained
    if name in enum.__members__:
        weights = enum[name]
        try:
            state = weights.get_state_dict(progress=False)
        except Exception as exc:  # URLError, HTTPError, socket errors ...
            hub = Path(torch.hub.get_dir()) / "checkpoints"
            raise RuntimeError(
                f"cannot get ImageNet weights {weights} for {backbone}: {exc}. Offline, put the file "
                f"{Path(weights.url).name} in {hub} (set TORCH_HOME), or train with --pretrained none."
            ) from None
        source = f"torchvision {weights}"
    else:
        path = Path(pretrained)
        if not path.is_file():
            raise RuntimeError(f"--pretrained {pretrained}: no such file (use imagenet, none or a path)")
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        if state and all(k.startswith("net.") for k in state):  # an EmotionNet export: head included
            state = {k[4:]: v for k, v in state.items()}
        source = str(path)
    own = model.net.state_dict()
    usable = {k: v for k, v in state.items() if k in own and v.shape == own[k].shape}
    head = {k for k in own if k.startswith(("fc.", "classifier."))}
    missing = [k for k in own if k not in usable and k not in head]
    if missing:
        raise RuntimeError(f"{source} does not fit {backbone}: {len(missing)} tensors missing, e.g. {missing[0]}")
    model.net.load_state_dict(usable, strict=False)
    return source

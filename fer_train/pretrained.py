"""Pretrained initialisation of a backbone: ImageNet through torchvision's weights API, a state
dict file, or a named source that other code registers (:func:`register_pretrained`; research
code adds dlib's face-recognition ResNet as ``dlib-face``, see ``research/dlib_train.py``).

Offline, torchvision finds the ImageNet file in ``$TORCH_HOME/hub/checkpoints/`` (e.g.
``TORCH_HOME=../shared/weights/torch``); online it downloads it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from safetensors.torch import load_file

from fer_core.backbones import TORCHVISION_BACKBONES
from fer_core.errors import InvalidArgumentError, ModelLoadError
from fer_core.model import EmotionNet

#: A named weight source: ``loader(model)`` -> ``(state dict for model.net, description)``; it
#: raises :class:`ModelLoadError` when the weights cannot be had or do not suit ``model``.
Loader = Callable[[EmotionNet], tuple[dict[str, torch.Tensor], str]]
_SOURCES: dict[str, Loader] = {}


def register_pretrained(name: str, loader: Loader) -> None:
    """Make ``--pretrained NAME`` load weights through ``loader`` (registering a name again
    replaces it).

    Raises:
        InvalidArgumentError: ``name`` is empty or one :func:`load_pretrained` already reads
            (``none``, ``imagenet``, an upper-case torchvision weights name).
    """
    if not name or name in ("none", "imagenet") or name.isupper():
        raise InvalidArgumentError(f"cannot register pretrained source {name!r}: empty or a built-in name")
    _SOURCES[name] = loader


def load_pretrained(model: EmotionNet, pretrained: str) -> str:
    """Initialise ``model`` from ImageNet weights (backbone only), a registered source or a file.

    Args:
        model: a freshly built :class:`EmotionNet`.
        pretrained: ``"imagenet"`` (torchvision's ``IMAGENET1K_V1`` weights of the backbone, the
            one entry every torchvision backbone has), a torchvision weights name such as
            ``"IMAGENET1K_V2"``, ``"none"`` (keep the random init), a name given to
            :func:`register_pretrained`, or a path to a ``.safetensors`` / torchvision ``.pth``
            state dict of the same architecture. An EmotionNet ``model.safetensors`` also loads
            its head when the shape fits, so fine-tuning continues from that model.

    Returns:
        A short description of what was loaded (for the recipe and the model card).

    Raises:
        ModelLoadError: the weights cannot be obtained (offline and not cached) — the message names
            ``--pretrained none`` and ``TORCH_HOME`` — or do not fit the backbone.
    """
    if pretrained == "none":
        return "none (random init)"
    backbone = model.config.backbone
    enum = torchvision.models.get_model_weights(backbone) if backbone in TORCHVISION_BACKBONES else None
    name = "IMAGENET1K_V1" if pretrained == "imagenet" else pretrained
    if pretrained in _SOURCES:
        state, source = _SOURCES[pretrained](model)
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
            raise ModelLoadError(f"--pretrained {pretrained}: no such file (use imagenet, none, a path "
                                 f"or a registered name: {', '.join(sorted(_SOURCES)) or 'none registered'})")
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

"""The backbones :class:`fer_core.model.EmotionNet` can build, by name: torchvision's, plus any a
caller registers (research code adds dlib's face-recognition ResNet this way, see
``research/dlib_resnet.py``).

This module does not import torch: :mod:`fer_core.config` validates ``config.json`` against it
without loading a network.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import InvalidArgumentError

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

#: torchvision model names known to work as emotion backbones (ImageNet-pretrained weights exist).
TORCHVISION_BACKBONES: tuple[str, ...] = (
    "mobilenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "resnet18",
    "resnet34",
    "resnet50",
    "efficientnet_b0",
    "efficientnet_b1",
    "convnext_tiny",
)


@dataclass(frozen=True)
class Backbone:
    """How to build one backbone and feed it.

    Attributes:
        build: returns a randomly initialised ``nn.Module`` mapping float32 ``(N, 3, H, W)`` to
            logits, whose last ``nn.Linear`` is ``fc`` or ``classifier[-1]`` (replaced by the
            emotion head).
        mean, std: per-channel normalisation of pixels scaled to [0, 1] that its pretrained
            weights expect.
        min_input_size: smallest input side in pixels the network accepts.
    """

    build: Callable[[], Any]
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    min_input_size: int = 16


def _torchvision(name: str) -> Callable[[], Any]:
    def build() -> Any:
        import torchvision

        return torchvision.models.get_model(name, weights=None)

    return build


_REGISTRY: dict[str, Backbone] = {name: Backbone(_torchvision(name)) for name in TORCHVISION_BACKBONES}


def register_backbone(name: str, backbone: Backbone) -> None:
    """Make ``name`` buildable by :class:`~fer_core.model.EmotionNet` and valid in ``config.json``.

    Registering the same name again replaces the entry (re-importing a module is harmless).

    Raises:
        InvalidArgumentError: ``name`` is empty or one of torchvision's names above.
    """
    if not name or name in TORCHVISION_BACKBONES:
        raise InvalidArgumentError(f"cannot register backbone {name!r}: empty or a torchvision name")
    _REGISTRY[name] = backbone


def backbone_names() -> tuple[str, ...]:
    """Every buildable backbone name: torchvision's first, then registered ones."""
    return tuple(_REGISTRY)


def get_backbone(name: str) -> Backbone:
    """The :class:`Backbone` called ``name``.

    Raises:
        InvalidArgumentError: no backbone of that name (the message lists the known ones).
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InvalidArgumentError(f"unknown backbone {name!r}; one of {', '.join(_REGISTRY)}") from None


def backbone_normalization(name: str) -> tuple[list[float], list[float]]:
    """The per-channel ``mean`` and ``std`` (pixels scaled to [0, 1]) that backbone ``name``'s
    pretrained weights expect.

    Raises:
        InvalidArgumentError: unknown backbone.
    """
    b = get_backbone(name)
    return list(b.mean), list(b.std)

"""EmotionNet: a torchvision backbone with an emotion head, saved as config.json + model.safetensors.

Loading never unpickles anything: weights are read from ``model.safetensors`` only, and the
architecture is rebuilt from the validated ``config.json``
(see :class:`~fer_core.config.ModelConfig`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import PyTorchModelHubMixin
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from torch.fx.experimental.optimization import fuse as fx_fuse

from . import calibration
from .backbones import get_backbone
from .config import ModelConfig
from .errors import InvalidArgumentError, ModelLoadError
from .hub import CONFIG_NAME, ONNX_NAME, WEIGHTS_NAME, resolve_model_folder

__all__ = ["CONFIG_NAME", "WEIGHTS_NAME", "EmotionNet", "build_backbone", "fuse_batchnorm", "load_model",
           "load_weights", "resolve_model_folder"]  # the last re-exported from the torch-free fer_core.hub


def build_backbone(backbone: str, num_classes: int, dropout: float) -> nn.Module:
    """Build a randomly initialised classifier with a ``num_classes`` head.

    ``backbone`` is a torchvision model name or one registered with
    :func:`fer_core.backbones.register_backbone`. The backbone's last ``nn.Linear`` is replaced
    (``fc`` for ResNets and dlib's ResNet, whose ``fc`` is its 128-D descriptor layer,
    ``classifier[-1]`` for MobileNet, EfficientNet and ConvNeXt) and its dropout set to ``dropout``.

    Args:
        backbone: a name from :func:`fer_core.backbones.backbone_names`.
        num_classes: output size of the new head.
        dropout: dropout probability before the head.

    Returns:
        ``nn.Module`` mapping float32 ``(N, 3, H, W)`` to logits ``(N, num_classes)``.
    """
    net: nn.Module = get_backbone(backbone).build()
    if hasattr(net, "fc") and isinstance(net.fc, nn.Linear):
        net.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(net.fc.in_features, num_classes))
    else:
        head = net.classifier
        last = head[-1]
        head[-1] = nn.Linear(last.in_features, num_classes)
        for module in head:
            if isinstance(module, nn.Dropout):
                module.p = dropout
    return net


class EmotionNet(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="pytorch",
    pipeline_tag="image-classification",
    tags=["facial-expression-recognition", "fer", "ferplus"],
    license="mit",
):
    """Facial-expression classifier: torchvision backbone + ``len(labels)``-way linear head.

    ``save_pretrained(dir)`` writes ``config.json`` (:meth:`ModelConfig.to_dict`) and
    ``model.safetensors``; ``from_pretrained(dir_or_repo_id)`` reads them back from a folder or the
    Hugging Face Hub (huggingface_hub's ``PyTorchModelHubMixin``), strictly and safetensors only.

    Args:
        config: the ``config.json`` contents as a dict, or a :class:`ModelConfig`; ``None`` for the
            defaults (MobileNetV2, 96x96 grayscale, 8 FER+ labels).

    Raises:
        ModelLoadError: the config is invalid.
    """

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__()
        if isinstance(config, ModelConfig):
            self.config = config
        else:
            self.config = ModelConfig.from_dict(config) if config is not None else ModelConfig()
        self.net = build_backbone(self.config.backbone, self.config.num_classes, self.config.dropout)
        self._hub_mixin_config = self.config.to_dict()
        #: the Hub commit the weights came from (:func:`load_model`); ``None`` for a folder or new model
        self.revision: str | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch.

        Args:
            x: float32 ``(N, 3, input_size, input_size)`` from :mod:`fer_core.preprocess`.

        Returns:
            float32 logits ``(N, num_classes)`` (before temperature and softmax).
        """
        return self.net(x)

    def probabilities(self, logits: torch.Tensor, balanced: bool | None = None) -> torch.Tensor:
        """Calibrated probabilities, float32 ``(N, num_classes)``, rows summing to 1, on ``logits``' device.

        Plain: ``softmax(logits / temperature)``. Balanced: ``softmax(logits / temperature - tau *
        log(prior))``, the plain probabilities divided by ``prior ** tau`` and renormalised, so
        rare classes (disgust, contempt, fear) are no longer out-voted by the training prior (post-hoc
        logit adjustment, Menon et al. 2021, ICLR). Computed by :func:`fer_core.calibration.probabilities`
        (the one implementation, NumPy), so no gradient flows through the result.

        Args:
            logits: float ``(N, num_classes)``.
            balanced: ``None`` for the model's default (``config.balanced``).

        Raises:
            InvalidArgumentError: balanced probabilities asked of a model without ``prior`` in its config.
        """
        probs = calibration.probabilities(logits.detach().float().cpu().numpy(), self.config, balanced)
        return torch.from_numpy(probs).to(logits.device)

    def save_pretrained(self, save_directory: str | Path, **kwargs: Any) -> Any:  # noqa: D102
        self._hub_mixin_config = self.config.to_dict()  # temperature etc. may have changed
        return super().save_pretrained(save_directory, **kwargs)

    def _save_pretrained(self, save_directory: Path) -> None:
        # safetensors needs contiguous tensors; channels-last conv weights are not, so copy them
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(Path(save_directory) / WEIGHTS_NAME), metadata={"format": "pt"})
        # a model.onnx left from earlier weights would make the ONNX backend (the default) run the old network:
        # remove it; fer_core.export_onnx writes a new one (fer_train.export does, after saving)
        (Path(save_directory) / ONNX_NAME).unlink(missing_ok=True)

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        map_location: str = "cpu",
        **_: Any,
    ) -> EmotionNet:
        """The mixin's entry point, routed through :func:`load_model` (the one load path)."""
        return load_model(pretrained_model_name_or_path, revision=revision, cache_dir=cache_dir,
                          local_files_only=local_files_only, token=token, device=map_location)


def fuse_batchnorm(model: nn.Module) -> nn.Module:
    """An inference-only copy of ``model`` with every BatchNorm folded into the layer before it.

    In eval mode a BatchNorm after a convolution is an affine map per channel,
    ``gamma * (conv(x) - running_mean) / sqrt(running_var + eps) + beta``, so it can be folded
    into that convolution's weight and bias (Jacob et al. 2018, "Quantization and Training of
    Neural Networks for Efficient Integer-Arithmetic-Only Inference", section 3.2). The copy
    computes the same logits (to float32 rounding, about 1e-6) with one memory pass fewer per
    BatchNorm: a MobileNetV2 forward pass of 8 faces is about 1.6x faster (1.5-1.8x measured
    back to back at 96-128 px) on a 2-core CPU (``benchmarks/bench_inference.py``). Uses
    ``torch.fx``'s conv/BN fusion, which traces the network symbolically; ``model`` itself is
    left untouched (its ``state_dict`` keeps the BatchNorm entries, so saving still writes the
    original layout).

    Args:
        model: any ``nn.Module`` mapping float32 ``(N, 3, H, W)`` to logits, e.g.
            :class:`EmotionNet`; it must be in eval mode.

    Returns:
        A ``torch.fx.GraphModule`` in eval mode with the same inputs and outputs, on the same
        device; gradients are not meant to flow through it (use ``model`` to train).

    Raises:
        InvalidArgumentError: ``model`` is in training mode (BatchNorm then uses batch statistics, which
            cannot be folded).
    """
    if model.training:
        raise InvalidArgumentError("fuse_batchnorm needs a model in eval mode; call model.eval() first")
    return fx_fuse(model).eval()


def load_weights(
    model: EmotionNet, weights_file: str | Path, source: str, map_location: str = "cpu"
) -> None:
    """Load a ``model.safetensors`` file into ``model`` strictly, then switch it to eval mode.

    Args:
        model: an :class:`EmotionNet` built from the matching config.
        weights_file: path of the safetensors file.
        source: the model's name for error messages (folder or repo id).
        map_location: torch device for the tensors.

    Raises:
        ModelLoadError: the file is missing or not safetensors, or its tensors' names or shapes do
            not match the architecture in ``config.json``.
    """
    path = Path(weights_file)
    if not path.is_file():
        raise ModelLoadError(f"{source}: {WEIGHTS_NAME} not found")
    try:
        state = load_file(str(path), device=map_location)
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelLoadError(f"{source}: {WEIGHTS_NAME} is not a valid safetensors file ({exc})") from exc
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if mismatched:
            k = mismatched[0]
            parts.append(
                f"{len(mismatched)} with the wrong shape (e.g. {k}: file {tuple(state[k].shape)}, "
                f"config {tuple(expected[k].shape)})"
            )
        raise ModelLoadError(
            f"{source}: weights in {WEIGHTS_NAME} do not match config.json "
            f"(backbone={model.config.backbone}, {model.config.num_classes} labels): "
            + "; ".join(parts)
        )
    model.load_state_dict(state, strict=True)
    model.eval()


def load_model(source: str | os.PathLike, revision: str | None = None, *, device: str | torch.device = "cpu",
               cache_dir: str | os.PathLike | None = None, local_files_only: bool = False,
               token: str | bool | None = None, name: str | None = None) -> EmotionNet:
    """The one way to load an :class:`EmotionNet` (library, app, training and tests use it): from
    a folder holding ``config.json`` + ``model.safetensors`` or from a Hub repo id
    (:func:`resolve_model_folder`), strictly and safetensors only. The model is in eval mode;
    ``model.revision`` is the Hub commit (``None`` for a folder).

    Args:
        source: folder or Hub repo id ``"user/name"``.
        revision: Hub branch, tag or commit (ignored for folders).
        device: torch device.
        cache_dir, local_files_only, token: passed to ``huggingface_hub.snapshot_download``.
        name: the model's name in error messages (default: ``source``).

    Raises:
        ModelLoadError: missing/unreachable folder or repo, missing/invalid config, missing/invalid
            weights, or weights that do not match the config.
    """
    folder, commit = resolve_model_folder(source, revision, cache_dir=cache_dir, local_files_only=local_files_only,
                                          token=token)
    name = name or str(source)
    config = ModelConfig.from_file(folder / CONFIG_NAME)
    model = EmotionNet(config)
    load_weights(model, folder / WEIGHTS_NAME, source=name)
    model.revision = commit
    return model.to(device).eval()

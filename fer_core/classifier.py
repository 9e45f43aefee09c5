"""Emotion classifiers: face crops in, calibrated probabilities out, with ONNX Runtime or torch.

Both classifiers share the preprocessing (:func:`fer_core.preprocess.crops_to_array`) and the
probability math (:func:`fer_core.calibration.probabilities`); they differ only in what runs the
network:

- :class:`OnnxClassifier`: ``model.onnx`` (:mod:`fer_core.export_onnx`) in ONNX Runtime
  (:func:`fer_core.onnx_runtime.session`). Neither this module nor that class imports torch.
- :class:`TorchClassifier`: an :class:`~fer_core.model.EmotionNet` with its BatchNorms folded
  (:func:`~fer_core.model.fuse_batchnorm`), channels-last, on any torch device.

:func:`load_classifier` makes either from a model folder or Hub repo.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np
from PIL import Image

from .calibration import probabilities as calibrated
from .config import ModelConfig
from .errors import InvalidArgumentError, ModelLoadError
from .hub import CARD_NAME, CONFIG_NAME, DEFAULT_MODEL_DIR, ONNX_NAME, resolve_model_folder
from .options import BACKENDS, require_torch
from .preprocess import crops_to_array

if TYPE_CHECKING:
    import torch

    from .model import EmotionNet

#: Faces per network run: a group photo with hundreds of faces runs in chunks of this many, so
#: memory does not grow with the number of faces.
CLASSIFY_BATCH: int = 64


class Classifier(Protocol):
    """What :class:`OnnxClassifier` and :class:`TorchClassifier` have in common."""

    config: ModelConfig
    revision: str | None

    @property
    def labels(self) -> list[str]: ...  # noqa: D102

    def probabilities(self, crops: Sequence[Image.Image], balanced: bool | None = None,
                      batch_size: int = CLASSIFY_BATCH) -> np.ndarray: ...  # noqa: D102


def _chunked_probabilities(logits: Callable[[np.ndarray], np.ndarray], config: ModelConfig,
                           crops: Sequence[Image.Image], balanced: bool | None, batch_size: int) -> np.ndarray:
    """Preprocess and run ``crops`` ``batch_size`` at a time through ``logits``, then calibrate: the
    body of both classifiers' ``probabilities``."""
    config.resolve_balanced(balanced)  # a bad request fails before any work, also for no crops
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    chunks = [logits(crops_to_array(crops[i:i + batch_size], config)) for i in range(0, len(crops), batch_size)]
    stacked = np.concatenate(chunks) if chunks else np.zeros((0, config.num_classes), dtype=np.float32)
    return calibrated(stacked, config, balanced)


class OnnxClassifier:
    """The emotion network of a model folder run by ONNX Runtime on the CPU; imports no torch.

    Args:
        folder: a folder holding ``config.json`` and ``model.onnx`` (input ``"input"`` float32
            ``(N, 3, S, S)``, output ``"logits"`` ``(N, num_classes)``, dynamic ``N``).
        threads: ONNX Runtime intra-op threads (>= 1); ``None``: ``$FER_THREADS``, else
            :func:`fer_core.onnx_runtime.default_threads`.
        revision: the Hub commit the folder is a snapshot of, if any (kept as :attr:`revision`).
        name: the model's name in error messages (default: ``folder``).

    Raises:
        ModelLoadError: ``config.json`` missing or invalid; ``model.onnx`` missing (the message says
            how to export it), unreadable or corrupt, or its input/output do not match the config.
        InvalidArgumentError: ``threads`` (or ``FER_THREADS``) is not a whole number >= 1.
    """

    def __init__(self, folder: str | os.PathLike, threads: int | None = None, *, revision: str | None = None,
                 name: str | None = None) -> None:
        from .onnx_runtime import session

        self.folder = Path(folder)
        self.revision = revision
        name = name or str(folder)
        self.config: ModelConfig = ModelConfig.from_file(self.folder / CONFIG_NAME)
        path = self.folder / ONNX_NAME
        if not path.is_file():
            raise ModelLoadError(f"{name}: {ONNX_NAME} not found; export it with `python -m fer_core.export_onnx "
                                 f"{self.folder}` (needs torch), or use backend='torch'")
        try:
            self._session = session(path, threads)
        except InvalidArgumentError:  # a bad thread count (onnx_runtime.resolve_threads), not a bad file
            raise
        except Exception as exc:  # ORT's errors (InvalidProtobuf, Fail, ...) have no common public base
            raise ModelLoadError(f"{name}: {ONNX_NAME} cannot be loaded by ONNX Runtime: "
                                 f"{type(exc).__name__}: {exc}") from exc
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        size, n_classes = self.config.input_size, self.config.num_classes
        if (len(inputs) != 1 or inputs[0].name != "input" or list(inputs[0].shape[1:]) != [3, size, size]
                or len(outputs) != 1 or outputs[0].name != "logits" or outputs[0].shape[-1] != n_classes):
            got = ([(i.name, i.shape) for i in inputs], [(o.name, o.shape) for o in outputs])
            raise ModelLoadError(f"{name}: {ONNX_NAME} does not match config.json: expected input 'input' "
                                 f"(N, 3, {size}, {size}) and output 'logits' (N, {n_classes}), got {got}")

    @property
    def labels(self) -> list[str]:
        """The model's label names in output order."""
        return list(self.config.labels)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Raw network outputs, float32 ``(N, num_classes)``, of a float32 ``(N, 3, S, S)`` batch from
        :func:`~fer_core.preprocess.crops_to_array` (run as given, in one ORT call)."""
        if len(batch) == 0:
            return np.zeros((0, self.config.num_classes), dtype=np.float32)
        return self._session.run(["logits"], {"input": np.ascontiguousarray(batch, dtype=np.float32)})[0]

    def probabilities(self, crops: Sequence[Image.Image], balanced: bool | None = None,
                      batch_size: int = CLASSIFY_BATCH) -> np.ndarray:
        """Calibrated probabilities of face crops (:func:`fer_core.calibration.probabilities`).

        Args:
            crops: N face crops (PIL images, any mode and size), already cut from their photos.
            balanced: balanced (prior-corrected) instead of plain probabilities; ``None`` for the
                model's default (``config.balanced``).
            batch_size: faces per network run (>= 1).

        Returns:
            float32 ``(N, num_classes)``, rows summing to 1, columns in :attr:`labels` order;
            ``(0, num_classes)`` for no crops.

        Raises:
            InvalidArgumentError: ``balanced=True`` for a model without a class prior, or a bad ``batch_size``.
        """
        return _chunked_probabilities(self.logits, self.config, crops, balanced, batch_size)


class TorchClassifier:
    """An :class:`~fer_core.model.EmotionNet` run by torch: a copy with its BatchNorms folded into the
    convolutions (:func:`~fer_core.model.fuse_batchnorm`, about 1.6x faster on CPU), channels-last
    (about 1.8x faster convolutions on CPU, ``benchmarks/bench_inference.py``). The copy is made
    once here: changing ``model``'s weights afterwards does not reach it.

    Args:
        model: a loaded :class:`EmotionNet`; it is moved to ``device``, channels-last, eval mode.
        device: torch device.

    Attributes:
        model: ``model`` (eval mode, on ``device``); config: its :class:`ModelConfig`; revision: its Hub commit.
    """

    def __init__(self, model: EmotionNet, device: str | torch.device = "cpu") -> None:
        import torch

        from .model import fuse_batchnorm

        self.device = torch.device(device)
        self.model = model.to(self.device, memory_format=torch.channels_last).eval()
        self._net = fuse_batchnorm(self.model).to(memory_format=torch.channels_last)
        self.config: ModelConfig = model.config
        self.revision: str | None = model.revision

    @property
    def labels(self) -> list[str]:
        """The model's label names in output order."""
        return list(self.config.labels)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Raw network outputs, float32 ``(N, num_classes)``, of a float32 ``(N, 3, S, S)`` batch from
        :func:`~fer_core.preprocess.crops_to_array` (one forward pass of the folded network)."""
        import torch

        if len(batch) == 0:
            return np.zeros((0, self.config.num_classes), dtype=np.float32)
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
            x = x.to(self.device, memory_format=torch.channels_last)
            return self._net(x).float().cpu().numpy()

    def probabilities(self, crops: Sequence[Image.Image], balanced: bool | None = None,
                      batch_size: int = CLASSIFY_BATCH) -> np.ndarray:
        """Calibrated probabilities of face crops; as :meth:`OnnxClassifier.probabilities`."""
        return _chunked_probabilities(self.logits, self.config, crops, balanced, batch_size)


def load_classifier(source: str | os.PathLike | None = None, revision: str | None = None, *,
                    backend: Literal["onnx", "torch"] = "onnx", device: str | torch.device = "cpu",
                    cache_dir: str | os.PathLike | None = None, local_files_only: bool = False,
                    token: str | bool | None = None, name: str | None = None,
                    threads: int | None = None) -> OnnxClassifier | TorchClassifier:
    """A classifier for a model folder or Hub repo (:func:`fer_core.hub.resolve_model_folder`).

    Args:
        source: folder, Hub repo id ``"user/name"``, or ``None`` for the bundled default model.
        revision: Hub branch, tag or commit (ignored for folders).
        backend: ``"onnx"`` (ONNX Runtime on the CPU, ``model.onnx``; torch is not imported) or
            ``"torch"`` (``model.safetensors`` through :func:`fer_core.model.load_model`).
        device: torch device for ``backend="torch"``; ``"cpu"`` only for ``"onnx"``.
        cache_dir, local_files_only, token: passed to ``huggingface_hub.snapshot_download``, which
            downloads only the files the backend needs (plus ``config.json`` and ``README.md``).
        name: the model's name in error messages (default: ``source``).
        threads: ONNX Runtime intra-op threads (``None``: :func:`fer_core.onnx_runtime.default_threads`);
            ignored by ``"torch"`` (torch's own thread setting applies).

    Returns:
        An :class:`OnnxClassifier` or :class:`TorchClassifier`; ``.revision`` is the Hub commit
        (``None`` for a folder).

    Raises:
        InvalidArgumentError: unknown ``backend``, or a device other than the CPU for ``"onnx"``.
        ModelLoadError: the folder or repo is missing or unreachable, ``config.json`` is missing or
            invalid, or the backend's network file is missing, corrupt or does not match the config.
        MissingDependencyError: ``"torch"`` without the torch extra (``pip install 'fer-core[torch]'``).
    """
    if backend not in BACKENDS:
        raise InvalidArgumentError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if source is None:
        if not DEFAULT_MODEL_DIR.is_dir():
            raise ModelLoadError(f"the bundled default model is missing ({DEFAULT_MODEL_DIR})")
        source, name = DEFAULT_MODEL_DIR, name or "bundled default"
    name = name or str(source)
    if backend == "torch":
        require_torch()
        from .model import load_model

        model = load_model(source, revision, device=device, cache_dir=cache_dir, local_files_only=local_files_only,
                           token=token, name=name)
        return TorchClassifier(model, device)
    if str(device) != "cpu":
        raise InvalidArgumentError(f"backend='onnx' runs on the CPU; for device={str(device)!r} use backend='torch'")
    folder, commit = resolve_model_folder(source, revision, cache_dir=cache_dir, local_files_only=local_files_only,
                                          token=token, files=(CONFIG_NAME, ONNX_NAME, CARD_NAME))
    return OnnxClassifier(folder, threads, revision=commit, name=name)


__all__ = ["BACKENDS", "CLASSIFY_BATCH", "Classifier", "OnnxClassifier", "TorchClassifier", "load_classifier"]

"""Saliency per face: where in each face the emotion network looked for its label.

:func:`explain` finds the faces of an image (or takes those already found), cuts the same aligned
crops the classifier saw (:func:`fer_core.align.crop_face`), runs a class-activation-map method of
the ``grad-cam`` package (pytorch-grad-cam, Gildenblat et al.) on the *unfused*
:class:`~fer_core.model.EmotionNet` at one convolutional layer, and maps each crop's heatmap back
into image pixels through the inverse of the crop's rotation and scale (:class:`CropTransform`).

Methods (``method=``):

- ``"gradcam"``: Grad-CAM, Selvaraju et al. 2017, "Grad-CAM: Visual Explanations from Deep
  Networks via Gradient-based Localization" (ICCV): the layer's activations weighted by the
  spatial mean of the target logit's gradient, ReLU.
- ``"gradcam++"``: Grad-CAM++, Chattopadhay et al. 2018 (WACV): higher-order gradient weights.
- ``"layercam"``: LayerCAM, Jiang et al. 2021 (IEEE TIP): element-wise positive-gradient weights.

(grad-cam's Eigen-CAM is left out: it ignores the target label, and its full SVD costs about 0.3 s a face.)

The layer is, by default, the backbone's last convolutional stage (:data:`TARGET_LAYERS`, the layer
Selvaraju et al. recommend); a model's ``config.json`` may name another one (``saliency_layer``, read
when :class:`~fer_core.config.ModelConfig` has that field), and a call may override both (``layer=``).
At the bundled model's 96 px input MobileNetV2's last stage is 3x3 cells, so a map is coarse: it
says which part of the face (eyes, mouth, one side) drove the label, not which pixels.

Needs the torch backend (``EmotionRecognizer.from_pretrained(backend="torch")``) and the ``grad-cam``
package (in the ``torch`` extra: ``pip install 'fer-core[torch]'``). Importing this module imports neither
torch nor grad-cam.
"""

from __future__ import annotations

import importlib.util
import json
import math
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from PIL import Image

from .align import MAX_CROP_SIZE, crop_face, eye_angle
from .errors import InvalidArgumentError, MissingDependencyError
from .io import ImageInput, load_image
from .result import FaceResult

if TYPE_CHECKING:
    import torch

    from .config import ModelConfig

__all__ = ["DEFAULT_METHOD", "METHODS", "TARGET_LAYERS", "CropTransform", "FaceSaliency", "combined_heatmap",
           "explain", "overlay", "target_layer_name", "write_saliency"]

#: ``method=`` name -> the ``pytorch_grad_cam`` class that computes it.
METHODS: dict[str, str] = {"gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "layercam": "LayerCAM"}
DEFAULT_METHOD = "gradcam"
#: Default Grad-CAM layer per backbone, as a module path in :class:`~fer_core.model.EmotionNet` (whose
#: torchvision network is ``net``): the last convolutional stage, whose output the pooling and the
#: emotion head read (torchvision's module layout: MobileNetV2's ``features[18]`` is the 1x1 conv to 1280
#: channels, ResNets' ``layer4``, EfficientNet's ``features[8]``, ConvNeXt's last stage ``features[7]``).
#: Backbones not listed (registered ones) use ``net.layer4`` when they have it, else their last ``Conv2d``.
TARGET_LAYERS: dict[str, str] = {
    "mobilenet_v2": "net.features.18",
    "mobilenet_v3_small": "net.features.12",
    "mobilenet_v3_large": "net.features.16",
    "resnet18": "net.layer4",
    "resnet34": "net.layer4",
    "resnet50": "net.layer4",
    "efficientnet_b0": "net.features.8",
    "efficientnet_b1": "net.features.8",
    "convnext_tiny": "net.features.7",
}


class Recognizer(Protocol):
    """What :func:`explain` uses of an :class:`~fer_core.recognizer.EmotionRecognizer` (a Protocol, so this
    module does not import the recognizer, which delegates its ``explain`` here)."""

    model: Any
    config: ModelConfig

    @property
    def labels(self) -> list[str]: ...  # noqa: D102

    def predict(self, image: Any, **options: Any) -> list[FaceResult]: ...  # noqa: D102


#: The install line for the ``grad-cam`` package, in error messages.
INSTALL_HINT = "pip install 'fer-core[torch]' (the torch extra includes grad-cam), or: pip install grad-cam"


@dataclass(frozen=True)
class CropTransform:
    """The geometry of one :func:`fer_core.align.crop_face` crop, to map points between the crop and
    the image it was cut from.

    ``crop_face`` cuts a square of ``side`` image pixels centred on ``(cx, cy)``, rotated by ``angle``
    (the eye line's angle, so the eyes come out level) and resampled to ``size`` x ``size`` pixels. In
    continuous pixel coordinates (``(0, 0)`` is the top-left corner of the top-left pixel, pixel ``i``'s
    centre is ``i + 0.5``; PIL's convention), a crop point ``(u, v)`` is the image point::

        x = cx + s * (cos(angle) * (u - size / 2) - sin(angle) * (v - size / 2))
        y = cy + s * (sin(angle) * (u - size / 2) + cos(angle) * (v - size / 2)),   s = side / size

    Attributes:
        cx, cy: the crop's centre in image pixels (the box centre).
        side: the crop square's side in image pixels, ``max(w, h) * (1 + margin)``.
        angle: rotation in radians (positive when the right eye, as seen, is lower); 0 without alignment.
        size: the crop's side in crop pixels, ``min(round(side), max_size)`` and at least 1.
    """

    cx: float
    cy: float
    side: float
    angle: float
    size: int

    @classmethod
    def from_face(cls, box: Sequence[float], landmarks: np.ndarray | None, margin: float, align: bool,
                  max_size: int = MAX_CROP_SIZE) -> CropTransform:
        """The transform of ``crop_face(image, box, landmarks, margin, align, max_size)`` (same arguments).

        Raises:
            InvalidArgumentError: ``margin`` is -1 or less, or the box is empty (as ``crop_face``).
        """
        if not margin > -1:
            raise InvalidArgumentError(f"margin must be > -1, got {margin}")
        x1, y1, x2, y2 = (float(v) for v in box)
        if x2 <= x1 or y2 <= y1:
            raise InvalidArgumentError(f"empty box {tuple(box)}")
        side = max(x2 - x1, y2 - y1) * (1.0 + margin)
        angle = eye_angle(landmarks) if (align and landmarks is not None) else 0.0
        return cls((x1 + x2) / 2.0, (y1 + y2) / 2.0, side, angle, max(1, min(int(round(side)), max_size)))

    @property
    def scale(self) -> float:
        """Image pixels per crop pixel, ``side / size``."""
        return self.side / self.size

    def to_image(self, points: np.ndarray) -> np.ndarray:
        """Crop coordinates -> image coordinates.

        Args:
            points: ``(N, 2)`` (or ``(2,)``) ``(u, v)`` continuous crop pixels.

        Returns:
            float64 array of the same shape, ``(x, y)`` continuous image pixels.
        """
        p = np.asarray(points, dtype=np.float64)
        u, v = p[..., 0] - self.size / 2.0, p[..., 1] - self.size / 2.0
        c, s = math.cos(self.angle) * self.scale, math.sin(self.angle) * self.scale
        return np.stack([self.cx + c * u - s * v, self.cy + s * u + c * v], axis=-1)

    def to_crop(self, points: np.ndarray) -> np.ndarray:
        """Image coordinates -> crop coordinates, the inverse of :meth:`to_image`.

        Args:
            points: ``(N, 2)`` (or ``(2,)``) ``(x, y)`` continuous image pixels.

        Returns:
            float64 array of the same shape, ``(u, v)`` continuous crop pixels (outside ``[0, size]``
            for image points outside the crop).
        """
        p = np.asarray(points, dtype=np.float64)
        dx, dy = p[..., 0] - self.cx, p[..., 1] - self.cy
        c, s = math.cos(self.angle) / self.scale, math.sin(self.angle) / self.scale
        return np.stack([self.size / 2.0 + c * dx + s * dy, self.size / 2.0 - s * dx + c * dy], axis=-1)

    def corners(self) -> np.ndarray:
        """The crop square's 4 corners in image pixels, float64 ``(4, 2)``: top-left, top-right,
        bottom-right, bottom-left (as seen in the crop)."""
        n = float(self.size)
        return self.to_image(np.array([[0.0, 0.0], [n, 0.0], [n, n], [0.0, n]]))

    def to_dict(self) -> dict[str, float]:
        """JSON-serialisable ``{"cx", "cy", "side", "angle", "size"}`` (``angle`` in radians)."""
        return {"cx": round(self.cx, 3), "cy": round(self.cy, 3), "side": round(self.side, 3),
                "angle": round(self.angle, 6), "size": self.size}


def crop_heatmap_to_image(heatmap: np.ndarray, transform: CropTransform,
                          image_size: tuple[int, int]) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """Resample a crop's heatmap into the image's pixel grid, inside the crop square only.

    Each image pixel whose centre falls in the crop square takes the bilinear interpolation of
    ``heatmap`` at its crop coordinates (:meth:`CropTransform.to_crop`); the rest are 0.

    Args:
        heatmap: float ``(S, S)`` over the crop, any ``S >= 1`` (need not equal ``transform.size``).
        transform: the crop's :class:`CropTransform`.
        image_size: the image's ``(width, height)`` in pixels.

    Returns:
        ``(x0, y0, x1, y1)``, the integer pixel rectangle of the image the crop square touches
        (clipped to the image; empty when the crop lies outside it), and the float32 heatmap of that
        rectangle, shape ``(y1 - y0, x1 - x0)``, values within ``heatmap``'s range (and 0).
    """
    import cv2

    w, h = image_size
    corners = transform.corners()
    x0, y0 = (max(0, int(math.floor(v))) for v in corners.min(axis=0))
    x1, y1 = min(w, int(math.ceil(corners[:, 0].max()))), min(h, int(math.ceil(corners[:, 1].max())))
    if x1 <= x0 or y1 <= y0:
        return (x0, y0, max(x0, x1), max(y0, y1)), np.zeros((max(0, y1 - y0), max(0, x1 - x0)), np.float32)
    heat = np.ascontiguousarray(heatmap, dtype=np.float32)
    xs, ys = np.meshgrid(np.arange(x0, x1) + 0.5, np.arange(y0, y1) + 0.5)
    uv = transform.to_crop(np.stack([xs, ys], axis=-1)) * (heat.shape[0] / transform.size)  # heatmap pixels
    inside = (uv[..., 0] >= 0) & (uv[..., 0] <= heat.shape[1]) & (uv[..., 1] >= 0) & (uv[..., 1] <= heat.shape[0])
    # cv2.remap samples pixel centres at integer positions: shift by half a pixel, clamp at the edges
    region = cv2.remap(heat, (uv[..., 0] - 0.5).astype(np.float32), (uv[..., 1] - 0.5).astype(np.float32),
                       interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    region[~inside] = 0.0
    return (x0, y0, x1, y1), region.astype(np.float32, copy=False)


@dataclass(frozen=True, eq=False)
class FaceSaliency:
    """The saliency map of one face for one label.

    Attributes:
        face: the face (:class:`~fer_core.result.FaceResult`: box, landmarks, probabilities, mesh).
        target: the label the map explains (the face's predicted label unless one was chosen).
        target_index: ``target``'s index in the model's labels (the logit whose gradient is used).
        method: the ``method=`` name (see :data:`METHODS`).
        layer: the module path of the layer the map was computed at, e.g. ``"net.features.18"``.
        heatmap: float32 ``(S, S)`` in [0, 1] over the face crop (``S = transform.size`` crop pixels,
            the crop the classifier saw), 1 where the evidence for ``target`` is strongest; all 0 when
            the layer holds no positive evidence for it.
        transform: the crop's geometry in the image (:class:`CropTransform`).
        image_size: the image's ``(width, height)`` in pixels.
        region: ``(x0, y0, x1, y1)`` integer pixels, the part of the image the crop square covers.
        region_heatmap: float32 ``(y1 - y0, x1 - x0)`` in [0, 1], :attr:`heatmap` resampled into that
            rectangle (0 outside the rotated crop square).
    """

    face: FaceResult
    target: str
    target_index: int
    method: str
    layer: str
    heatmap: np.ndarray
    transform: CropTransform
    image_size: tuple[int, int]
    region: tuple[int, int, int, int]
    region_heatmap: np.ndarray = field(repr=False)

    @cached_property
    def image_heatmap(self) -> np.ndarray:
        """float32 ``(H, W)`` in [0, 1] over the whole image: :attr:`region_heatmap` in place, 0 outside
        the face's crop square (made on first access, then kept)."""
        w, h = self.image_size
        out = np.zeros((h, w), dtype=np.float32)
        x0, y0, x1, y1 = self.region
        out[y0:y1, x0:x1] = self.region_heatmap
        return out

    def to_dict(self, heatmap_size: int = 32) -> dict[str, Any]:
        """JSON-serialisable summary: the face (:meth:`FaceResult.to_dict`), target, method, layer, the
        crop transform and the crop heatmap resized to ``heatmap_size`` x ``heatmap_size`` (rows of
        floats rounded to 3 decimals; map it to the image with ``transform``).

        Raises:
            InvalidArgumentError: ``heatmap_size`` is not an integer from 1 to 256.
        """
        if isinstance(heatmap_size, bool) or not isinstance(heatmap_size, int) or not 1 <= heatmap_size <= 256:
            raise InvalidArgumentError(f"heatmap_size must be an integer from 1 to 256, got {heatmap_size!r}")
        import cv2

        small = cv2.resize(self.heatmap, (heatmap_size, heatmap_size), interpolation=cv2.INTER_AREA)
        return {"face": self.face.to_dict(), "target": self.target, "method": self.method, "layer": self.layer,
                "transform": self.transform.to_dict(),
                "heatmap": np.round(np.clip(small, 0.0, 1.0), 3).tolist()}


def target_layer_name(model: Any, layer: str | None = None) -> str:
    """The module path (in ``model``, an :class:`~fer_core.model.EmotionNet`) Grad-CAM reads.

    Order: ``layer`` if given; else the config's ``saliency_layer`` field when the config has one and
    it is set; else :data:`TARGET_LAYERS` for the backbone; else ``net.layer4`` if it exists; else the
    last ``nn.Conv2d`` of the network.

    Raises:
        InvalidArgumentError: the named layer is not a module of ``model``, or the model has no
            convolution at all.
    """
    config = getattr(model, "config", None)
    name = layer or getattr(config, "saliency_layer", None) or TARGET_LAYERS.get(getattr(config, "backbone", ""))
    modules = dict(model.named_modules())
    if name is None:
        if "net.layer4" in modules:
            name = "net.layer4"
        else:
            import torch

            convs = [n for n, m in modules.items() if isinstance(m, torch.nn.Conv2d)]
            if not convs:
                raise InvalidArgumentError("the model has no Conv2d layer to compute a saliency map at")
            name = convs[-1]
    if name not in modules or not name:
        raise InvalidArgumentError(f"saliency layer {name!r} is not a module of the model (e.g. "
                                   f"{', '.join(n for n in list(modules)[1:4])}; see model.named_modules())")
    return name


def _cam_class(method: str) -> Any:
    if method not in METHODS:
        raise InvalidArgumentError(f"method must be one of {', '.join(map(repr, METHODS))}, got {method!r}")
    if importlib.util.find_spec("pytorch_grad_cam") is None:
        raise MissingDependencyError(f"saliency maps need the grad-cam package, which is not installed: {INSTALL_HINT}",
                                     name="pytorch_grad_cam")
    import pytorch_grad_cam

    return getattr(pytorch_grad_cam, METHODS[method])


_LOCKS: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


@contextmanager
def _hooked(model: torch.nn.Module) -> Iterator[None]:
    """One explanation at a time per model (the CAM's hooks live on the model), in eval mode, with
    gradients on but the parameters' own ``requires_grad`` off (only activations' gradients are
    needed); everything is restored afterwards."""
    import torch

    with _LOCKS_GUARD:
        lock = _LOCKS.setdefault(model, threading.Lock())
    with lock:
        params = list(model.parameters())
        wanted = [p.requires_grad for p in params]
        training = [m for m in model.modules() if m.training]
        try:
            for p in params:
                p.requires_grad_(False)
            for m in training:
                m.training = False
            with torch.inference_mode(False), torch.enable_grad():
                yield
        finally:
            for p, w in zip(params, wanted):
                p.requires_grad_(w)
            for m in training:
                m.training = True


def _Frozen(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` behind a module whose ``train()``/``eval()`` do nothing: the CAM classes call
    ``model.eval()`` on every construction, a walk over all the modules that costs more than a backward
    pass here; :func:`_hooked` has already put the model in eval mode."""
    import torch

    class Frozen(torch.nn.Module):
        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        def train(self, mode: bool = True) -> Frozen:
            return self

    return Frozen(model)


def _cams(model: torch.nn.Module, layer: str, cam_class: Any, batch: np.ndarray, targets: Sequence[int],
          batch_size: int) -> np.ndarray:
    """float32 ``(N, S, S)`` maps in [0, 1] of a preprocessed batch ``(N, 3, S, S)``, ``batch_size`` at a time."""
    import torch
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    out = np.zeros((len(batch), batch.shape[2], batch.shape[3]), dtype=np.float32)
    if len(batch) == 0:
        return out
    device = next(model.parameters()).device
    module = model.get_submodule(layer)
    with _hooked(model):
        # The layer's output becomes a leaf that requires grad: the backward pass stops there (nothing
        # below it needs a gradient), which makes a map about 2x cheaper than backpropagating to the input.
        # Registered before the CAM's own hooks, so they see this output.
        cut = module.register_forward_hook(lambda _m, _i, output: output.detach().requires_grad_(True))
        cam = cam_class(model=_Frozen(model), target_layers=[module])
        try:
            for i in range(0, len(batch), batch_size):
                x = torch.from_numpy(batch[i:i + batch_size]).to(device)
                chunk = [ClassifierOutputTarget(int(t)) for t in targets[i:i + batch_size]]
                out[i:i + len(x)] = cam(input_tensor=x, targets=chunk)
        finally:
            cam.activations_and_grads.release()  # not `with cam:`, whose __exit__ swallows IndexError
            cut.remove()
    np.nan_to_num(out, copy=False)
    return np.clip(out, 0.0, 1.0, out=out)


def explain(recognizer: Recognizer, image: ImageInput, *, target: str | None = None,
            method: str = DEFAULT_METHOD, batch_size: int = 8, faces: Sequence[FaceResult] | None = None,
            layer: str | None = None, align: bool | None = None, **predict_options: Any) -> list[FaceSaliency]:
    """A saliency map for every face of an image: where the network found the evidence for a label.

    The faces are found by ``recognizer.predict(image, align=align, **predict_options)`` unless given;
    each is cropped exactly as the classifier crops it (:func:`~fer_core.align.crop_face` with the
    config's ``crop_margin`` and ``align``), preprocessed (:func:`~fer_core.preprocess.crops_to_array`),
    and run through the unfused :class:`~fer_core.model.EmotionNet` (``recognizer.model``) with a CAM
    method of the ``grad-cam`` package at :func:`target_layer_name`'s layer, for the target label's logit
    (Grad-CAM: Selvaraju et al. 2017, ICCV). The CAM, at the network's input resolution, is min-max
    scaled to [0, 1] per face (grad-cam's ``scale_cam_image``), resized to the crop, and mapped into the
    image through the crop's inverse rotation and scale (:class:`CropTransform`).

    Deterministic: the same image, faces, target and model give the same maps (eval mode, no dropout),
    and a face's map does not depend on the other faces in its batch.

    Args:
        recognizer: an :class:`~fer_core.recognizer.EmotionRecognizer` with the torch backend.
        image: a path, encoded bytes, ``PIL.Image`` or uint8 ``(H, W, 3)`` RGB array
            (:func:`~fer_core.io.load_image`).
        target: the label to explain for every face, one of ``recognizer.labels``; ``None``: each
            face's predicted label (``FaceResult.label``, the recognizer's operating point).
        method: ``"gradcam"``, ``"gradcam++"`` or ``"layercam"`` (:data:`METHODS`).
        batch_size: faces per forward and backward pass (>= 1).
        faces: the faces of ``image`` already found by ``recognizer.predict`` (skips detection).
        layer: module path to compute the map at (default: :func:`target_layer_name`).
        align: level the eyes before cropping (``None``: the config's ``align``); must match how
            ``faces`` were classified.
        **predict_options: passed to ``recognizer.predict`` (``threshold``, ``min_face_size``,
            ``max_faces``, ``balanced``, ``verify_faces``...); not allowed with ``faces``.

    Returns:
        One :class:`FaceSaliency` per face, in the faces' order (reading order from ``predict``);
        empty when there is no face.

    Raises:
        InvalidArgumentError: the recognizer has the ONNX backend (no differentiable model), an
            unknown ``target`` or ``method``, ``batch_size`` < 1, a ``layer`` that is not a module of the
            model, or ``predict_options`` together with ``faces``.
        InvalidImageError: the image is invalid.
        MissingDependencyError: the ``grad-cam`` package is not installed.
    """
    from .preprocess import crops_to_array

    model = recognizer.model
    if model is None:
        raise InvalidArgumentError("saliency maps need the torch backend (gradients of the network): load the "
                                   "recognizer with EmotionRecognizer.from_pretrained(..., backend='torch')")
    labels = list(recognizer.labels)
    if target is not None and target not in labels:
        raise InvalidArgumentError(f"target must be one of the model's labels ({', '.join(labels)}) or None, "
                                   f"got {target!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    cam_class = _cam_class(method)
    layer_name = target_layer_name(model, layer)
    if faces is not None and predict_options:
        raise InvalidArgumentError(f"detection options ({', '.join(predict_options)}) cannot be used with faces=")
    pil = load_image(image)
    if faces is None:
        faces = recognizer.predict(pil, align=align, **predict_options)
    cfg = recognizer.config
    do_align = cfg.align if align is None else bool(align)
    transforms = [CropTransform.from_face(f.box, f.landmarks, cfg.crop_margin, do_align) for f in faces]
    crops = [crop_face(pil, f.box, f.landmarks, margin=cfg.crop_margin, align=do_align) for f in faces]
    targets = [labels.index(target if target is not None else f.label) for f in faces]
    cams = _cams(model, layer_name, cam_class, crops_to_array(crops, cfg), targets, batch_size)

    import cv2

    out = []
    for face, t, cam, tf in zip(faces, targets, cams, transforms):
        heat = np.clip(cv2.resize(cam, (tf.size, tf.size), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
        region, region_heat = crop_heatmap_to_image(heat, tf, pil.size)
        out.append(FaceSaliency(face, labels[t], t, method, layer_name, heat.astype(np.float32, copy=False), tf,
                                pil.size, region, np.clip(region_heat, 0.0, 1.0)))
    return out


def combined_heatmap(saliencies: Sequence[FaceSaliency], image_size: tuple[int, int]) -> np.ndarray:
    """Every face's map in one image: float32 ``(H, W)`` in [0, 1], the per-pixel maximum over the faces
    (0 where no face's crop reaches).

    Args:
        saliencies: maps of one image (from :func:`explain`).
        image_size: the image's ``(width, height)``.

    Raises:
        InvalidArgumentError: a map belongs to an image of another size.
    """
    w, h = image_size
    out = np.zeros((h, w), dtype=np.float32)
    for s in saliencies:
        if tuple(s.image_size) != (w, h):
            raise InvalidArgumentError(f"a saliency map of a {s.image_size} image given for a {(w, h)} image")
        x0, y0, x1, y1 = s.region
        np.maximum(out[y0:y1, x0:x1], s.region_heatmap, out=out[y0:y1, x0:x1])
    return out


def overlay(image: ImageInput, saliencies: Sequence[FaceSaliency], *, alpha: float = 0.5,
            colormap: str = "jet", max_side: int | None = None) -> Image.Image:
    """The image with every face's heatmap blended on top in a colour map.

    Each pixel becomes ``(1 - a) * pixel + a * colour(heat)`` with ``a = alpha * heat`` and ``heat`` the
    per-pixel maximum over the faces (:func:`combined_heatmap`), so pixels without heat (outside the
    faces) keep their colour. Only the faces' rectangles are blended (float work and memory follow the
    faces, not the frame), with the colour map as a 256-entry lookup table.

    Args:
        image: the image the maps were computed on (anything :func:`~fer_core.io.load_image` takes).
        saliencies: its maps (:func:`explain`).
        alpha: opacity of the hottest pixels, 0..1.
        colormap: a matplotlib colour map name.
        max_side: if given, the image is first downscaled so its longer side is at most this many
            pixels (aspect kept), and each face's crop map is resampled straight into the smaller image
            (:func:`crop_heatmap_to_image` with the scaled :class:`CropTransform`).

    Returns:
        RGB ``PIL.Image``: the image's size, or the downscaled size with ``max_side``.

    Raises:
        InvalidArgumentError: ``alpha`` outside 0..1, an unknown colour map, ``max_side`` not an integer
            >= 1, or maps of another image size.
        InvalidImageError: the image is invalid.
    """
    if not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise InvalidArgumentError(f"alpha must be a number from 0 to 1, got {alpha!r}")
    if max_side is not None and (isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 1):
        raise InvalidArgumentError(f"max_side must be an integer >= 1 or None, got {max_side!r}")
    import matplotlib

    try:
        cmap = matplotlib.colormaps[colormap]
    except KeyError:
        raise InvalidArgumentError(f"unknown matplotlib colour map {colormap!r}") from None
    pil = load_image(image)
    w, h = pil.size
    for s in saliencies:
        if tuple(s.image_size) != (w, h):
            raise InvalidArgumentError(f"a saliency map of a {s.image_size} image given for a {(w, h)} image")
    if max_side is not None and max(w, h) > max_side:
        scale = max_side / max(w, h)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        pil = pil.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)
        regions = []
        for s in saliencies:
            t = s.transform
            scaled = CropTransform(t.cx * scale, t.cy * scale, t.side * scale, t.angle, t.size)
            region, heat = crop_heatmap_to_image(s.heatmap, scaled, size)
            regions.append((region, np.clip(heat, 0.0, 1.0)))
    else:
        regions = [(s.region, s.region_heatmap) for s in saliencies]
    src = np.asarray(pil)
    out = src.copy()
    # matplotlib maps a float x to entry min(int(x * N), N - 1) of its N-entry table: the same colours
    lut = cmap(np.arange(cmap.N))[:, :3].astype(np.float32) * 255.0
    for (x0, y0, x1, y1), _ in regions:
        if x1 <= x0 or y1 <= y0:
            continue
        heat = np.zeros((y1 - y0, x1 - x0), dtype=np.float32)
        for (a0, b0, a1, b1), other in regions:  # the maximum over every face reaching this rectangle
            ix0, iy0, ix1, iy1 = max(x0, a0), max(y0, b0), min(x1, a1), min(y1, b1)
            if ix1 > ix0 and iy1 > iy0:
                part = heat[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0]
                np.maximum(part, other[iy0 - b0:iy1 - b0, ix0 - a0:ix1 - a0], out=part)
        index = np.minimum((heat * cmap.N).astype(np.int32), cmap.N - 1)
        a = (alpha * heat)[..., None]
        rgb = src[y0:y1, x0:x1].astype(np.float32) * (1.0 - a) + lut[index] * a
        out[y0:y1, x0:x1] = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    return Image.fromarray(out, "RGB")


def write_saliency(folder: str | Path, stem: str, image: ImageInput, saliencies: Sequence[FaceSaliency], *,
                   alpha: float = 0.5) -> list[Path]:
    """Write an image's maps to ``folder``: ``<stem>_saliency.png`` (:func:`overlay`) and
    ``<stem>_saliency.json`` (a list of :meth:`FaceSaliency.to_dict`, 32x32 crop heatmaps).

    Args:
        folder: output folder (created if missing).
        stem: file-name stem, e.g. the input's name without its extension.
        image, saliencies, alpha: as :func:`overlay`.

    Returns:
        The two paths written.

    Raises:
        InvalidArgumentError: an empty ``stem`` or one with a path separator (and as :func:`overlay`).
        OSError: the folder cannot be created or written.
    """
    if not stem or "/" in stem or "\\" in stem or stem in (".", ".."):
        raise InvalidArgumentError(f"stem must be a plain file-name stem, got {stem!r}")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    png, js = out / f"{stem}_saliency.png", out / f"{stem}_saliency.json"
    overlay(image, saliencies, alpha=alpha).save(png)
    js.write_text(json.dumps([s.to_dict() for s in saliencies], indent=1) + "\n", encoding="utf-8")
    return [png, js]

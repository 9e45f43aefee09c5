"""Per-call options of the recognizer: their defaults and valid ranges, in one place.

The library (:class:`~fer_core.detect.FaceDetector`, :class:`~fer_core.recognizer.EmotionRecognizer`,
:func:`~fer_core.video_analysis.analyze_video`), the CLI, the app's sliders and the REST query
validation all read these constants and checks, so a default or a range changes here only.
Defaults that belong to a model (``align``, ``balanced``) come from its ``config.json``: see
:meth:`EmotionRecognizer.options() <fer_core.recognizer.EmotionRecognizer.options>`.
"""

from __future__ import annotations

import importlib.util
import math
import reprlib
from dataclasses import dataclass
from typing import Any

from .errors import InvalidArgumentError, MissingDependencyError

#: Default detection-probability threshold: MTCNN's final-stage score a face must reach. 0.9 removes
#: the spurious low-score boxes MTCNN finds in busy scenes while keeping real faces (typically > 0.99).
DEFAULT_THRESHOLD: float = 0.9
#: Default face-verification threshold: a detection is kept only if FaceMesh's face-presence
#: probability (:attr:`fer_core.detect.Detection.face_prob`) on its region reaches this, or MTCNN is sure
#: (:data:`DEFAULT_TRUSTED_SCORE`). Measured: >= 0.99 on sharp frontal faces (the astronaut, FER+ faces,
#: a team photo's), 0.0003 on a hand MTCNN boxed at p = 0.92, under 0.01 on noise and flat colour; but
#: round patterns (a mission patch) can reach 0.9 and turned or blurred real faces score under 0.01
#: (docs/experiments.md).
DEFAULT_FACE_PROB_THRESHOLD: float = 0.5
#: MTCNN probability from which a detection is kept without FaceMesh's confirmation (its ``face_prob``
#: is still computed and reported). FaceMesh's presence flag is trained on frontal-to-three-quarter,
#: sharp faces: on real group photos it gave 0.0004 to a laughing half-profile face (MTCNN 0.995) and
#: 0.001-0.002 to blurred faces behind glass (MTCNN 1.0 and 0.952), while every false box seen scored
#: under 0.93 with MTCNN (a hand 0.92, a motorcycle part 0.929, medal ribbons 0.78, helmet rivets 0.81).
#: So only boxes under this need FaceMesh to say "face"; the margin is thin on both sides, measured on
#: few photos (docs/experiments.md).
DEFAULT_TRUSTED_SCORE: float = 0.95
#: Smallest face searched for in still photos when no ``min_face_size`` is given: the small faces of
#: group photos are found (group canvases: recall 0.26 -> 0.93), and verification removes the false
#: boxes the deeper pyramid brings. Video and live frames keep the speed-first adaptive size
#: (:func:`fer_core.detect.adaptive_min_face_size`). 16 px was measured and not taken (docs/experiments.md).
#: Images over :data:`~fer_core.detect.DEFAULT_MAX_SIDE` (1280 px) are searched on a downscaled copy, at
#: least 12 px there: 20 px up to a longer side of 2,133 px, 37 px in a 4000x3000 photo.
PHOTO_MIN_FACE_SIZE: int = 20
#: Valid detection thresholds (inclusive).
THRESHOLD_RANGE: tuple[float, float] = (0.0, 1.0)
#: Smallest ``min_face_size`` in pixels: MTCNN's P-Net window is 12x12.
MIN_FACE_SIZE_FLOOR: int = 12
#: Default probability-smoothing half-life of tracked faces, seconds: a new frame's probabilities get
#: weight ``1 - 0.5 ** (dt / half_life)`` (:func:`fer_core.track.ema_weight`); after a lasting change
#: of expression the smoothed probabilities have moved half way after this long.
DEFAULT_HALF_LIFE_S: float = 0.25
#: Valid smoothing half-lives, seconds (inclusive; 0 = no smoothing).
SMOOTHING_RANGE_S: tuple[float, float] = (0.0, 10.0)
#: Highest ``sample_fps`` (frames analysed per second of video); ``None`` or 0 analyses every frame.
MAX_SAMPLE_FPS: float = 60.0
#: Frames analysed per second of video where a server request does not say (the library and the CLI
#: analyse every frame by default).
DEFAULT_VIDEO_SAMPLE_FPS: float = 5.0


#: Inference backends: ``"onnx"`` (ONNX Runtime, no torch in the process) and ``"torch"`` (PyTorch).
BACKENDS: tuple[str, ...] = ("onnx", "torch")


def resolve_backend(value: str | None = None) -> str:
    """``value`` as an inference backend; ``None`` means the default: ``"onnx"`` when
    ``onnxruntime`` is installed, else ``"torch"``.

    Raises:
        InvalidArgumentError: not one of :data:`BACKENDS`.
        MissingDependencyError: ``"torch"`` without the torch extra (:func:`require_torch`).
    """
    if value is None:
        value = "onnx" if importlib.util.find_spec("onnxruntime") is not None else "torch"
    if value not in BACKENDS:
        raise InvalidArgumentError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {value!r}")
    if value == "torch":
        require_torch()
    return value


#: The modules of the ``torch`` extra (``pip install 'fer-core[torch]'``) that ``backend="torch"`` imports.
TORCH_MODULES: tuple[str, ...] = ("torch", "torchvision", "facenet_pytorch", "safetensors")


def require_torch(what: str = "backend='torch'") -> None:
    """Check that the ``torch`` extra is installed, without importing it.

    Raises:
        MissingDependencyError: a module of :data:`TORCH_MODULES` is missing; the message names it
            and ``pip install 'fer-core[torch]'`` (and, when onnxruntime is installed, ``backend='onnx'``).
    """
    missing = [name for name in TORCH_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        other = (", or use backend='onnx' (the default)" if importlib.util.find_spec("onnxruntime") is not None
                 else "; or install onnxruntime for the default backend='onnx'")
        raise MissingDependencyError(f"{what} needs the torch extra, which is not installed (missing: "
                                     f"{', '.join(missing)}): pip install 'fer-core[torch]'{other}",
                                     name=missing[0])


def _number(name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"{name} must be a number, got {value!r}") from exc
    if math.isnan(number):
        raise InvalidArgumentError(f"{name} must be a number, got NaN")
    return number


def _in_range(name: str, value: Any, bounds: tuple[float, float], unit: str = "") -> float:
    number = _number(name, value)
    low, high = bounds
    if not low <= number <= high:
        raise InvalidArgumentError(f"{name} must be between {low:g} and {high:g}{unit}, got {value}")
    return number


def check_threshold(value: Any) -> float:
    """``value`` as a detection threshold.

    Raises:
        InvalidArgumentError: not a number, or outside :data:`THRESHOLD_RANGE` (0..1).
    """
    return _in_range("threshold", value, THRESHOLD_RANGE)


def check_bool(name: str, value: Any) -> bool | None:
    """``value`` as an on/off option: ``True``/``False`` (numpy's too), the strings ``"true"``/``"false"``
    in any case, or ``None`` (the default). A client sending ``"false"`` or ``2`` gets an error, not
    Python's truthiness (``bool("false")`` is ``True``).

    Raises:
        InvalidArgumentError: anything else.
    """
    if value is None or isinstance(value, bool):
        return value
    if type(value).__name__ == "bool_":  # numpy.bool_, without importing numpy here
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise InvalidArgumentError(f"{name} must be true or false, got {reprlib.repr(value)}")


def check_face_prob_threshold(value: Any) -> float:
    """``value`` as a face-verification threshold (FaceMesh face-presence probability).

    Raises:
        InvalidArgumentError: not a number, or outside 0..1.
    """
    return _in_range("face_prob_threshold", value, THRESHOLD_RANGE)


def check_min_face_size(value: Any) -> int | None:
    """``value`` as a minimum face size in pixels; ``None`` or 0 means adaptive (``None``).

    Raises:
        InvalidArgumentError: not a whole number, or below :data:`MIN_FACE_SIZE_FLOOR` (12) pixels.
    """
    if value is None:
        return None
    number = _number("min_face_size", value)
    if number == 0:
        return None
    if number != int(number) or number < MIN_FACE_SIZE_FLOOR:
        raise InvalidArgumentError(f"min_face_size must be a whole number of pixels >= {MIN_FACE_SIZE_FLOOR} "
                                   f"(or 0 for adaptive), got {value}")
    return int(number)


def check_smoothing(value: Any) -> float:
    """``value`` as a smoothing half-life in seconds.

    Raises:
        InvalidArgumentError: not a number, or outside :data:`SMOOTHING_RANGE_S` (0..10 s).
    """
    return _in_range("smoothing", value, SMOOTHING_RANGE_S, " seconds")


def check_sample_fps(value: Any) -> float | None:
    """``value`` as frames analysed per second of video; ``None`` or 0 means every frame (``None``).

    Raises:
        InvalidArgumentError: not a number, negative, or above :data:`MAX_SAMPLE_FPS` (60).
    """
    if value is None:
        return None
    number = _number("sample_fps", value)
    if not 0 <= number <= MAX_SAMPLE_FPS:
        raise InvalidArgumentError(f"sample_fps must be between 0 (every frame) and {MAX_SAMPLE_FPS:g}, got {value}")
    return number or None


def check_max_seconds(value: Any) -> float | None:
    """``value`` as the seconds of video to analyse; ``None`` or 0 means all (``None``).

    Raises:
        InvalidArgumentError: not a number, negative or infinite.
    """
    if value is None:
        return None
    number = _number("max_seconds", value)
    if not 0 <= number < math.inf:
        raise InvalidArgumentError(f"max_seconds must be >= 0 seconds (0 = all), got {value}")
    return number or None


def check_max_faces(value: Any, name: str = "max_faces") -> int | None:
    """``value`` as a cap on faces classified (per image, or over a call); ``None`` means no cap,
    0 that faces are only counted (detected, none classified).

    Raises:
        InvalidArgumentError: not a whole number >= 0.
    """
    if value is None:
        return None
    number = _number(name, value)
    if number != int(number) or number < 0:
        raise InvalidArgumentError(f"{name} must be a whole number >= 0 (or None for no limit), got {value}")
    return int(number)


def check_max_frames(value: Any) -> int | None:
    """``value`` as the most video frames decoded; ``None`` means no cap.

    Raises:
        InvalidArgumentError: not a whole number >= 1.
    """
    if value is None:
        return None
    number = _number("max_frames", value)
    if number != int(number) or number < 1:
        raise InvalidArgumentError(f"max_frames must be a whole number >= 1 (or None for no limit), got {value}")
    return int(number)


@dataclass(frozen=True)
class PredictOptions:
    """The options of one :meth:`~fer_core.recognizer.EmotionRecognizer.predict` call, validated.

    Attributes:
        threshold: detection probability threshold, 0..1.
        min_face_size: smallest face side in pixels (>= 12), or ``None`` for adaptive.
        align: level the eyes before classifying.
        balanced: balanced (prior-corrected) decisions.
        verify_faces: keep only detections that FaceMesh confirms as faces
            (:data:`DEFAULT_FACE_PROB_THRESHOLD`).
    """

    threshold: float = DEFAULT_THRESHOLD
    min_face_size: int | None = None
    align: bool = True
    balanced: bool = False
    verify_faces: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "threshold", check_threshold(self.threshold))
        object.__setattr__(self, "min_face_size", check_min_face_size(self.min_face_size))

    def as_kwargs(self) -> dict[str, Any]:
        """``threshold``, ``min_face_size``, ``align``, ``balanced`` and ``verify_faces`` as keyword
        arguments of :meth:`~fer_core.recognizer.EmotionRecognizer.predict` (and ``predict_batch``,
        ``analyze_video``)."""
        return {"threshold": self.threshold, "min_face_size": self.min_face_size, "align": self.align,
                "balanced": self.balanced, "verify_faces": self.verify_faces}

"""fer_core: multi-face facial expression recognition (MTCNN + a FER+-trained torchvision CNN).

>>> from fer_core import EmotionRecognizer
>>> rec = EmotionRecognizer.from_pretrained()      # bundled default model
>>> faces = rec.predict("photo.jpg")               # list[FaceResult], one per face
>>> video = rec.analyze_video("clip.mp4")          # tracked faces over time: VideoAnalysis

The names below are imported lazily (PEP 562), so ``import fer_core.draw`` or
``from fer_core.result import FaceResult`` does not load torch models or the face detector.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    "LABELS": "labels",
    "MAX_IMAGE_PIXELS": "io",
    "Backbone": "backbones",
    "Detection": "detect",
    "EmotionNet": "model",
    "EmotionRecognizer": "recognizer",
    "ExportCheckError": "errors",
    "FaceMesh": "mesh",
    "FERError": "errors",
    "FaceDetector": "detect",
    "FaceResult": "result",
    "InvalidArgumentError": "errors",
    "InvalidImageError": "errors",
    "InvalidVideoError": "errors",
    "ModelConfig": "config",
    "MissingDependencyError": "errors",
    "ModelLoadError": "errors",
    "PredictOptions": "options",
    "load_classifier": "classifier",
    "load_image": "io",
    "load_model": "model",
    "register_backbone": "backbones",
}

__all__ = sorted(_EXPORTS)

__version__ = "0.3.0"


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'fer_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])

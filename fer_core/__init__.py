"""fer_core: multi-face facial expression recognition (MTCNN + a FER+-trained torchvision CNN).

>>> from fer_core import EmotionRecognizer
>>> rec = EmotionRecognizer.from_pretrained()      # bundled default model
>>> faces = rec.predict("photo.jpg")               # list[FaceResult], one per face
"""

from .config import ModelConfig
from .detect import Detection, FaceDetector
from .errors import FERError, InvalidImageError, ModelLoadError
from .io import MAX_IMAGE_PIXELS, load_image
from .labels import LABELS
from .model import EmotionNet
from .recognizer import EmotionRecognizer, FaceResult

__all__ = [
    "LABELS",
    "MAX_IMAGE_PIXELS",
    "Detection",
    "EmotionNet",
    "EmotionRecognizer",
    "FERError",
    "FaceDetector",
    "FaceResult",
    "InvalidImageError",
    "ModelConfig",
    "ModelLoadError",
    "load_image",
]

__version__ = "0.1.0"

"""fer_core: multi-face facial expression recognition (MTCNN + a FER+-trained torchvision CNN).

>>> from fer_core import EmotionRecognizer
>>> rec = EmotionRecognizer.from_pretrained()      # bundled default model
>>> faces = rec.predict("photo.jpg")               # list[FaceResult], one per face
>>> video = rec.analyze_video("clip.mp4")          # tracked faces over time: VideoAnalysis
"""

from .config import ModelConfig
from .detect import Detection, FaceDetector
from .errors import FERError, InvalidImageError, InvalidVideoError, ModelLoadError
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
    "InvalidVideoError",
    "ModelConfig",
    "ModelLoadError",
    "load_image",
]

__version__ = "0.1.0"

"""Exception types raised by :mod:`fer_core`.

Every error a caller can cause (bad image or video, bad model folder, bad argument) is one of these,
so ``except FERError`` catches all of them and nothing surfaces as a bare traceback from PIL or torch.
The library raises them ``from`` the underlying exception where there is one, so ``__cause__``
still shows where a problem started. Anything else escaping :mod:`fer_core` is a bug.
"""

from __future__ import annotations


class FERError(Exception):
    """Base class of every error raised on purpose by :mod:`fer_core`."""


class InputError(FERError, ValueError):
    """A bad input file or array: the message is ``"<source>: <reason>"`` and both parts are
    attributes, so a caller that knows the input by another name (an upload's original file name
    rather than the server's temporary path) can show ``reason`` under that name.

    Args:
        source: how the input was described, e.g. ``"'photo.jpg'"``, ``"<1234 bytes>"``.
        reason: what is wrong with it, e.g. ``"not a recognised image file"``.
    """

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(source, reason)  # both in args, so the error pickles across processes
        self.source = source
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


class InvalidImageError(InputError):
    """The input is not a usable image: not an image at all, truncated or corrupt, empty, too
    large (more pixels than :data:`fer_core.io.MAX_IMAGE_PIXELS`), or an array of the wrong
    shape or dtype. Message and attributes as :class:`InputError`.
    """


class ModelLoadError(FERError, RuntimeError):
    """A model could not be loaded: missing or malformed ``config.json``, missing or unreadable
    ``model.safetensors``, weights that do not match the config, or a Hub repo that cannot be
    reached or found. The message names the source and the reason."""


class ExportCheckError(FERError, RuntimeError):
    """An exported ONNX file does not reproduce the torch model's probabilities within
    :data:`fer_core.export_onnx.TOLERANCE` (the message gives the measured difference); nothing
    was written (:func:`fer_core.export_onnx.export_onnx`)."""


class InvalidVideoError(InputError):
    """The input is not a usable video: missing, empty, not a video at all, truncated or corrupt
    so that no frame can be decoded, a codec FFmpeg (PyAV) cannot decode, or a frame size above
    :data:`fer_core.video.MAX_VIDEO_PIXELS`.

    A video in which no face is ever found is *not* an error (the analysis is simply empty).
    Message and attributes as :class:`InputError`, e.g. ``"'clip.mp4': no video stream in the file"``.
    """



class MissingDependencyError(FERError, ImportError):
    """An optional part of the install is missing for what was asked: ``backend="torch"`` without the
    ``torch`` extra (torch, torchvision, facenet-pytorch, safetensors). The message names the missing
    modules and the ``pip install`` line that adds them, e.g. ``pip install 'fer-core[torch]'``."""


class InvalidArgumentError(FERError, ValueError):
    """An option or parameter is out of range or of the wrong kind: a detection threshold outside
    0..1, a minimum face size under 12 pixels, a negative smoothing half-life, balanced decisions
    asked of a model without a class prior... The message names the parameter, the allowed range
    (see :mod:`fer_core.options`) and the value given.
    """

"""Turn whatever the caller has (path, bytes, PIL image, NumPy array) into a validated RGB image.

Everything that can be wrong with an input image is caught here and reported as
:class:`~fer_core.errors.InvalidImageError`, before any pixel reaches the detector.
"""

from __future__ import annotations

import io as _io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InvalidImageError

#: File suffixes read as still images (the CLI's folders, corpus jobs).
IMAGE_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
#: Largest image accepted, in pixels (width x height), checked from the header before decoding, so
#: a decompression bomb is refused without allocating it. 50 MP covers every common camera.
MAX_IMAGE_PIXELS: int = 50_000_000

ORIENTATION = 0x0112  # EXIF tag

ImageInput = str | os.PathLike | bytes | Image.Image | np.ndarray
"""Anything :func:`load_image` accepts: a file path, encoded file bytes, a PIL image, or a NumPy
array ``(H, W, 3)`` uint8 RGB (``(H, W)`` grayscale and ``(H, W, 4)`` RGBA are accepted too)."""


def _describe(source: object) -> str:
    if isinstance(source, (str, os.PathLike)):
        return f"'{os.fspath(source)}'"
    if isinstance(source, bytes):
        return f"<{len(source)} bytes>"
    return f"<{type(source).__name__}>"


def _check_size(width: int, height: int, what: str) -> None:
    if width < 1 or height < 1:
        raise InvalidImageError(what, f"image has no pixels ({width}x{height})")
    if width * height > MAX_IMAGE_PIXELS:
        raise InvalidImageError(
            what, f"image is {width}x{height} = {width * height:,} pixels, more than the limit of "
            f"{MAX_IMAGE_PIXELS:,} (fer_core.io.MAX_IMAGE_PIXELS); downscale it first"
        )


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert a decoded PIL image of any mode to 8-bit RGB.

    Transparent pixels (RGBA, LA, P with transparency) are composited onto white; 16-bit (``I;16``)
    is scaled to 8 bits over its full range, 32-bit integer (``I``) and float (``F``) over their
    actual min..max; CMYK, YCbCr, 1-bit and grayscale go through PIL's standard conversions.

    Args:
        image: a loaded PIL image, any mode.

    Returns:
        A new (or the same, when already RGB) ``PIL.Image`` in mode ``"RGB"``, same size.
    """
    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        if mode.startswith("I;16"):
            arr = arr / 257.0
        else:
            lo, hi = float(arr.min()), float(arr.max())
            arr = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        gray = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")
        return gray.convert("RGB")
    return image.convert("RGB")


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation tag (1..8), or 1 when there is none or the EXIF block is unreadable
    (damaged EXIF is metadata, not a reason to refuse the pixels)."""
    try:
        return int(image.getexif().get(ORIENTATION, 1))
    except Exception:  # PIL raises SyntaxError, struct.error, ValueError... on damaged EXIF
        return 1


def _from_array(array: np.ndarray) -> Image.Image:
    what = f"<ndarray shape={array.shape} dtype={array.dtype}>"
    if array.dtype != np.uint8:
        raise InvalidImageError(what, f"expected dtype uint8 (0..255), got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise InvalidImageError(what, "expected shape (H, W, 3) RGB, (H, W, 4) RGBA or (H, W)")
    _check_size(array.shape[1], array.shape[0], what)
    return to_rgb(Image.fromarray(np.ascontiguousarray(array)))


def image_size(source: ImageInput) -> tuple[int, int]:
    """``(width, height)`` in pixels of an image, from its header only (nothing is decoded), before
    EXIF orientation; for budgeting work before any image of a request is decoded.

    Args:
        source: as :func:`load_image`.

    Raises:
        InvalidImageError: as :func:`load_image`, for every problem the header shows (missing,
            empty, not an image, more than :data:`MAX_IMAGE_PIXELS` pixels, wrong array); a file
            whose pixel data is damaged passes here and fails in :func:`load_image`.
    """
    what = _describe(source)
    if isinstance(source, np.ndarray):
        if source.ndim < 2:
            raise InvalidImageError(f"<ndarray shape={source.shape} dtype={source.dtype}>",
                                    "expected shape (H, W, 3) RGB, (H, W, 4) RGBA or (H, W)")
        return int(source.shape[1]), int(source.shape[0])
    if isinstance(source, Image.Image):
        return source.size
    data = _read_bytes(source, what)
    try:
        with Image.open(_io.BytesIO(data)) as opened:
            _check_size(opened.width, opened.height, what)
            return opened.size
    except InvalidImageError:
        raise
    except Exception as exc:  # PIL's header parsers raise many types on garbage
        raise _decode_error(what, exc) from exc


def _read_bytes(source: ImageInput, what: str) -> bytes:
    """The encoded bytes of a path or bytes source.

    Raises:
        InvalidImageError: missing, unreadable or empty file, no bytes, or an unsupported type.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise InvalidImageError(what, "no such file")
        if path.stat().st_size == 0:
            raise InvalidImageError(what, "file is empty (0 bytes)")
        try:
            return path.read_bytes()
        except OSError as exc:
            raise InvalidImageError(what, f"cannot read file ({exc.strerror or exc})") from exc
    if isinstance(source, (bytes, bytearray, memoryview)):
        if not len(source):
            raise InvalidImageError(what, "no data (0 bytes)")
        return bytes(source)
    raise InvalidImageError(what, "unsupported input type; pass a path, bytes, a PIL image or a uint8 NumPy array")


def _decode_error(what: str, exc: Exception) -> InvalidImageError:
    """The InvalidImageError for an exception PIL raised while opening or decoding."""
    if isinstance(exc, UnidentifiedImageError):
        return InvalidImageError(what, "not a recognised image file")
    if isinstance(exc, Image.DecompressionBombError):  # PIL's own guard, in case it trips first
        return InvalidImageError(what, f"image too large ({exc})")
    return InvalidImageError(what, f"truncated or corrupt image ({exc})")


def load_image(source: ImageInput) -> Image.Image:
    """Open and validate one image and return it as an upright 8-bit RGB PIL image.

    EXIF orientation is applied (``ImageOps.exif_transpose``; unreadable EXIF is ignored); of an
    animated image (GIF, APNG, WebP) or a multi-page TIFF the first frame is used; every PIL mode is
    converted by :func:`to_rgb`.

    Args:
        source: a path (``str`` or ``os.PathLike``), the encoded bytes of an image file, a
            ``PIL.Image.Image``, or a NumPy array ``(H, W, 3)`` uint8 RGB (also ``(H, W)`` gray
            or ``(H, W, 4)`` RGBA).

    Returns:
        ``PIL.Image.Image`` in mode ``"RGB"``, fully decoded, size ``(W, H)`` after orientation; a
        PIL input that is already upright RGB is returned as is, not copied.

    Raises:
        InvalidImageError: the file does not exist or cannot be read, is not an image, is
            zero bytes, truncated or corrupt, has more than :data:`MAX_IMAGE_PIXELS` pixels, or
            the array has the wrong dtype or shape. Also for unsupported argument types.
    """
    what = _describe(source)
    if isinstance(source, np.ndarray):
        return _from_array(source)
    if isinstance(source, Image.Image):
        _check_size(source.width, source.height, what)
        try:
            source.load()
            if _orientation(source) not in (0, 1):
                source = ImageOps.exif_transpose(source)
            return to_rgb(source)  # no copy for an upright RGB image (the hot path re-validates)
        except (OSError, ValueError, SyntaxError) as exc:
            raise InvalidImageError(what, f"cannot decode image ({exc})") from exc
    data = _read_bytes(source, what)
    try:
        with Image.open(_io.BytesIO(data)) as opened:
            _check_size(opened.width, opened.height, what)
            opened.seek(0)  # first frame of an animation
            opened.load()
            image = ImageOps.exif_transpose(opened) if _orientation(opened) not in (0, 1) else opened
            upright = to_rgb(image).copy()
            upright.info.pop("exif", None)  # orientation applied; unreadable EXIF must not follow the pixels
            return upright
    except InvalidImageError:
        raise
    except Exception as exc:  # PIL's decoders raise many types on damaged data; the cause is kept
        raise _decode_error(what, exc) from exc

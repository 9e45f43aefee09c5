"""A corpus of malformed and odd image inputs, generated from a real face (the astronaut).

Every entry is ``(name, data)``: ``data`` is the bytes of a file, or for the array cases a NumPy
array (only the Python API takes those). Deterministic (seeded), about 550 entries.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

FORMATS = {"jpg": "JPEG", "png": "PNG", "gif": "GIF", "webp": "WEBP", "tif": "TIFF", "bmp": "BMP"}
MAGIC = {
    "jpg": b"\xff\xd8\xff\xe0", "png": b"\x89PNG\r\n\x1a\n", "gif": b"GIF89a", "webp": b"RIFF\x00\x10\x00\x00WEBPVP8 ",
    "tif": b"II*\x00", "bmp": b"BM", "ico": b"\x00\x00\x01\x00", "psd": b"8BPS",
}
TRUNCATIONS = 45  # offsets per format
RANDOM_TAILS = 12  # random bodies per magic number
BYTE_FLIPS = 12  # corrupted copies per format


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **params)
    return buf.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` but which holds almost no data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + png_chunk(b"IEND", b""))


def gif_declaring(width: int, height: int) -> bytes:
    header = b"GIF89a" + struct.pack("<HH", width, height) + b"\x00\x00\x00"
    image = b"\x2c" + struct.pack("<HHHH", 0, 0, width, height) + b"\x00" + b"\x02\x02\x44\x01\x00" + b"\x3b"
    return header + image


def bmp_declaring(width: int, height: int) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40 + 16, 0, 0, 54) + info + b"\x00" * 16


def jpeg_declaring(valid_jpeg: bytes, width: int, height: int) -> bytes:
    """``valid_jpeg`` with the size in its SOF0 marker replaced."""
    at = valid_jpeg.index(b"\xff\xc0")
    return valid_jpeg[:at + 5] + struct.pack(">HH", height, width) + valid_jpeg[at + 9:]


def with_orientation(face: Image.Image, value: int, bogus: bool) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value
    if bogus:
        exif[0x9003] = "not a date"  # DateTimeOriginal with garbage
        exif[0xA002] = 2 ** 31  # an absurd PixelXDimension
        exif[0xBEEF] = b"\x00\xff" * 40  # an unknown tag with binary junk
    return encode(face, "JPEG", exif=exif.tobytes())


def with_garbage_exif(valid_jpeg: bytes, junk: bytes) -> bytes:
    """``valid_jpeg`` with an APP1 Exif segment holding ``junk`` (a broken TIFF structure)."""
    payload = b"Exif\x00\x00" + junk
    return valid_jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + valid_jpeg[2:]


def corpus(face_rgb: np.ndarray) -> list[tuple[str, bytes | np.ndarray]]:
    """The malformed/odd inputs, built from ``face_rgb`` (uint8 RGB, a real face)."""
    rng = np.random.default_rng(1234)
    face = Image.fromarray(face_rgb).resize((96, 96))
    items: list[tuple[str, bytes | np.ndarray]] = [
        ("empty.jpg", b""),
        ("text.jpg", b"just some text, not an image\n"),
        ("page.png", b"<!DOCTYPE html><html><body><img src=x></body></html>"),
        ("data.gif", b'{"image": "no"}'),
        ("drawing.svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" '
                        b'height="10"/></svg>'),
        ("doc.pdf", b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"),
        ("zeros.png", bytes(4096)),
        ("newline.jpg", b"\n"),
    ]
    valid = {ext: encode(face, fmt) for ext, fmt in FORMATS.items()}
    for ext, data in valid.items():
        items.append((f"valid.{ext}", data))
        for k, offset in enumerate(np.linspace(1, len(data) - 1, TRUNCATIONS).astype(int)):
            items.append((f"truncated_{k:02d}.{ext}", data[:offset]))
        for k in range(BYTE_FLIPS):
            broken = np.frombuffer(data, np.uint8).copy()
            broken[rng.integers(len(data) // 4, len(data), 16)] = rng.integers(0, 256, 16)
            items.append((f"flipped_{k}.{ext}", broken.tobytes()))
    for ext, magic in MAGIC.items():
        for k in range(RANDOM_TAILS):
            tail = rng.integers(0, 256, int(rng.integers(1, 3000)), dtype=np.uint8).tobytes()
            items.append((f"magic_{k}.{ext}", magic + tail))
    modes = {
        "cmyk.jpg": encode(face.convert("CMYK"), "JPEG"),
        "cmyk.tif": encode(face.convert("CMYK"), "TIFF"),
        "i16.png": encode(Image.fromarray(np.asarray(face.convert("L"), np.uint16) * 257), "PNG"),
        "i32.tif": encode(Image.fromarray(np.asarray(face.convert("L"), np.int32) * 1000), "TIFF"),
        "float.tif": encode(Image.fromarray(np.asarray(face.convert("L"), np.float32) / 255), "TIFF"),
        "palette_transparent.png": encode(face.convert("P"), "PNG", transparency=0),
        "palette.gif": encode(face.convert("P"), "GIF"),
        "la.png": encode(face.convert("LA"), "PNG"),
        "rgba.png": encode(face.convert("RGBA"), "PNG"),
        "one_bit.png": encode(face.convert("1"), "PNG"),
        "gray.jpg": encode(face.convert("L"), "JPEG"),
        "ycbcr.jpg": encode(face, "JPEG", subsampling=0),
        "progressive.jpg": encode(face, "JPEG", progressive=True),
        "lossless.webp": encode(face, "WEBP", lossless=True),
        "rgba.webp": encode(face.convert("RGBA"), "WEBP"),
        "lzw.tif": encode(face, "TIFF", compression="tiff_lzw"),
    }
    items += list(modes.items())
    for value in range(1, 9):
        items.append((f"exif_{value}.jpg", with_orientation(face, value, bogus=False)))
        items.append((f"exif_{value}_bogus.jpg", with_orientation(face, value, bogus=True)))
    for value in (0, 9, 255, 65535):
        items.append((f"exif_invalid_{value}.jpg", with_orientation(face, value, bogus=True)))
    for k, junk in enumerate([b"", b"II*\x00\xff\xff\xff\x7f", b"MM\x00*\x00\x00\x00\x08\xff\xff",
                              rng.integers(0, 256, 200, dtype=np.uint8).tobytes()]):
        items.append((f"exif_garbage_{k}.jpg", with_garbage_exif(valid["jpg"], junk)))
    for w, h in ((100_000, 100_000), (65_535, 65_535), (10_000, 10_000), (1, 2 ** 31 - 1)):
        items.append((f"declares_{w}x{h}.png", png_declaring(w, h)))
    items += [
        ("declares_65535x65535.gif", gif_declaring(65535, 65535)),
        ("declares_60000x60000.bmp", bmp_declaring(60000, 60000)),
        ("declares_negative.bmp", bmp_declaring(-5, 0)),
        ("declares_60000x60000.jpg", jpeg_declaring(valid["jpg"], 60000, 60000)),
        ("declares_0x0.jpg", jpeg_declaring(valid["jpg"], 0, 0)),
        ("one_pixel.png", encode(Image.new("RGB", (1, 1), (128, 128, 128)), "PNG")),
        ("one_pixel.jpg", encode(Image.new("RGB", (1, 1)), "JPEG")),
        ("wide_10000x1.png", encode(Image.new("RGB", (10000, 1), (90, 90, 90)), "PNG")),
        ("tall_1x10000.png", encode(Image.new("L", (1, 10000), 90), "PNG")),
        ("wide_face_strip.png", encode(face.resize((4000, 12)), "PNG")),
    ]
    frames = [face, face.rotate(90), face.convert("L").convert("RGB")]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    tiff = io.BytesIO()
    frames[0].save(tiff, "TIFF", save_all=True, append_images=frames[1:])
    apng = io.BytesIO()
    frames[0].save(apng, "PNG", save_all=True, append_images=frames[1:])
    awebp = io.BytesIO()
    frames[0].save(awebp, "WEBP", save_all=True, append_images=frames[1:])
    items += [("animated.gif", gif.getvalue()), ("multipage.tif", tiff.getvalue()),
              ("animated.png", apng.getvalue()), ("animated.webp", awebp.getvalue())]
    arrays = {
        "float32": face_rgb.astype(np.float32), "float_nan": np.full((64, 64, 3), np.nan, np.float32),
        "int64": face_rgb.astype(np.int64), "bool": face_rgb > 128, "two_channels": face_rgb[:, :, :2],
        "five_channels": np.concatenate([face_rgb, face_rgb[:, :, :2]], axis=2), "flat": face_rgb.ravel(),
        "scalar": np.array(7, np.uint8), "empty": np.zeros((0, 0, 3), np.uint8), "one_pixel": face_rgb[:1, :1],
        "gray": face_rgb[:, :, 0], "rgba": np.dstack([face_rgb, np.full(face_rgb.shape[:2], 255, np.uint8)]),
        "single_channel": face_rgb[:, :, :1], "four_dims": face_rgb[None], "non_contiguous": face_rgb[::-2, ::3],
        "object": np.array([[None]], dtype=object),
    }
    items += [(f"array_{k}", v) for k, v in arrays.items()]
    return items

"""load_image: every accepted input form, every PIL mode, and every kind of bad input."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
from PIL import Image

from fer_core import InvalidImageError, load_image
from fer_core.io import MAX_IMAGE_PIXELS


def encode(image: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_path_bytes_pil_and_array_agree(tmp_path, astronaut):
    path = tmp_path / "a.png"
    Image.fromarray(astronaut).save(path)
    images = [load_image(path), load_image(str(path)), load_image(path.read_bytes()),
              load_image(Image.fromarray(astronaut)), load_image(astronaut)]
    for img in images:
        assert img.mode == "RGB" and img.size == (512, 512)
        assert np.array_equal(np.asarray(img), astronaut)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "CMYK", "I;16", "L", "1", "I", "F"])
def test_every_mode_becomes_rgb(mode, astronaut):
    src = Image.fromarray(astronaut)
    if mode == "I;16":
        src = Image.fromarray(np.asarray(src.convert("L"), dtype=np.uint16) * 257)
        assert src.mode.startswith("I;16")
    else:
        src = src.convert(mode)
    out = load_image(src)
    assert out.mode == "RGB" and out.size == (512, 512)
    if mode == "I;16":  # scaled to 8 bits over the full 16-bit range, not clipped to white
        assert np.array_equal(np.asarray(out)[..., 0], np.asarray(Image.fromarray(astronaut).convert("L")))


def test_transparent_pixels_become_white():
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert np.asarray(load_image(rgba))[0, 0].tolist() == [255, 255, 255]


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (60, 30), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 10, 30))  # white stripe on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    out = load_image(encode(img, "JPEG", exif=exif.tobytes(), quality=95))
    assert out.size == (30, 60)
    arr = np.asarray(out).mean(axis=2)
    assert arr[:10].mean() > 200 and arr[-10:].mean() < 50  # stripe now on top


def test_animated_gif_uses_first_frame():
    frames = [Image.new("RGB", (8, 8), c) for c in [(255, 0, 0), (0, 0, 255)]]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    out = np.asarray(load_image(buf.getvalue()))
    assert out[0, 0, 0] > 200 and out[0, 0, 2] < 50


def test_one_pixel_image_loads():
    assert load_image(encode(Image.new("RGB", (1, 1)))).size == (1, 1)


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"this is not an image at all", "not a recognised image"),
        (b"", "0 bytes"),
    ],
)
def test_bad_bytes(data, reason):
    with pytest.raises(InvalidImageError, match=reason):
        load_image(data)


def test_zero_byte_and_missing_files(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(InvalidImageError, match="empty"):
        load_image(empty)
    with pytest.raises(InvalidImageError, match="no such file") as info:
        load_image(tmp_path / "missing.png")
    # the parts travel separately, so an app can name the upload instead of its temp path
    assert info.value.source == f"'{tmp_path / 'missing.png'}'" and info.value.reason == "no such file"
    assert str(info.value) == f"{info.value.source}: no such file"
    again = pickle.loads(pickle.dumps(info.value))
    assert (again.source, again.reason, str(again)) == (info.value.source, "no such file", str(info.value))


def test_truncated_file(tmp_path, astronaut):
    data = encode(Image.fromarray(astronaut), "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidImageError, match="truncated or corrupt"):
        load_image(path)


def test_decompression_bomb_is_refused_before_decoding():
    side = int(MAX_IMAGE_PIXELS**0.5) + 100
    data = encode(Image.new("L", (side, side)), "PNG", optimize=True)  # small file, huge image
    assert len(data) < 1_000_000
    with pytest.raises(InvalidImageError, match="more than the limit"):
        load_image(data)


@pytest.mark.parametrize(
    "array, reason",
    [
        (np.zeros((10, 10, 3), dtype=np.float32), "dtype uint8"),
        (np.zeros((10, 10, 2), dtype=np.uint8), "shape"),
        (np.zeros((0, 10, 3), dtype=np.uint8), "no pixels"),
    ],
)
def test_bad_arrays(array, reason):
    with pytest.raises(InvalidImageError, match=reason):
        load_image(array)


def test_unsupported_type():
    with pytest.raises(InvalidImageError, match="unsupported input type"):
        load_image(12345)  # type: ignore[arg-type]


def test_pil_input_with_exif_orientation_is_rotated_and_upright_rgb_is_not_copied():
    img = Image.new("RGB", (60, 30))
    assert load_image(img) is img
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = Image.open(io.BytesIO(encode(img, "JPEG", exif=exif.tobytes())))
    assert load_image(rotated).size == (30, 60)

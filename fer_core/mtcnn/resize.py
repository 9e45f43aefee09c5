"""Area resizing equal to torch's ``F.interpolate(mode="area")`` (adaptive average pooling), in numpy.

facenet-pytorch's MTCNN resizes its scale pyramid and its face crops with
``torch.nn.functional.interpolate(mode="area")`` (``imresample``), which is adaptive average pooling:
output cell ``i`` of ``n_out`` averages input cells ``floor(i * n_in / n_out) .. ceil((i + 1) * n_in / n_out) - 1``
(bins overlap when ``n_in / n_out`` is not whole; upscaling repeats cells). Here the sums come from
an integral image of the uint8 pixels (exact integers), and the mean is formed as torch's CPU kernel
does, ``float32(sum) / kh / kw`` in float32, so the results are bitwise equal to torch's for uint8-valued
float input.
"""

from __future__ import annotations

import numpy as np


def area_bins(n_in: np.ndarray | int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Adaptive-pooling bins of ``n_out`` cells over ``n_in`` input cells.

    Args:
        n_in: input length(s), int or int array of shape ``(K,)`` (>= 1).
        n_out: output length (>= 1).

    Returns:
        ``(start, end)`` int64 arrays of shape ``(n_out,)`` (scalar ``n_in``) or ``(K, n_out)``: bin ``i``
        covers input cells ``start[i] <= j < end[i]``, ``start = floor(i * n_in / n_out)``,
        ``end = ceil((i + 1) * n_in / n_out)`` (torch's ``start_index``/``end_index``).
    """
    i = np.arange(n_out, dtype=np.int64)
    n = np.asarray(n_in, dtype=np.int64)[..., None]
    start = (i * n) // n_out
    end = ((i + 1) * n + n_out - 1) // n_out
    return start, end


def integral_image(images: np.ndarray) -> np.ndarray:
    """Channels-first integral image of uint8 images.

    Args:
        images: uint8 ``(B, H, W, C)`` pixels.

    Returns:
        ``(B, C, H + 1, W + 1)`` int32 (int64 when ``H * W * 255`` could overflow int32) where
        ``[b, c, y, x]`` is the sum of ``images[b, :y, :x, c]``; row and column 0 are zeros.
    """
    b, h, w, c = images.shape
    dtype = np.int32 if h * w * 255 < 2**31 else np.int64
    out = np.empty((b, c, h + 1, w + 1), dtype=dtype)
    out[:, :, 0] = 0
    out[:, :, :, 0] = 0
    planar = images.transpose(0, 3, 1, 2)
    body = out[:, :, :, 1:]
    # down the rows: one vector add per row (numpy's cumsum along a non-last axis is ~10x slower)
    for y in range(h):
        np.add(body[:, :, y], planar[:, :, y], out=body[:, :, y + 1])
    np.cumsum(body, axis=3, out=body)
    return out


def _mean(box_sum: np.ndarray, kh: np.ndarray, kw: np.ndarray) -> np.ndarray:
    """``float32(sum) / kh / kw`` in float32, as torch's adaptive average pooling divides."""
    return box_sum.astype(np.float32) / kh.astype(np.float32) / kw.astype(np.float32)


def resize_area(integral: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Whole images area-resized (torch ``interpolate(mode="area")``) from their integral image.

    Args:
        integral: ``(B, C, H + 1, W + 1)`` from :func:`integral_image`.
        out_h, out_w: output size in pixels (>= 1).

    Returns:
        float32 ``(B, C, out_h, out_w)`` mean pixel values (0..255 for uint8 images).
    """
    h, w = integral.shape[2] - 1, integral.shape[3] - 1
    ys, ye = area_bins(h, out_h)
    xs, xe = area_bins(w, out_w)
    rows_e, rows_s = integral[:, :, ye], integral[:, :, ys]
    box_sum = rows_e[..., xe] - rows_s[..., xe] - rows_e[..., xs] + rows_s[..., xs]
    return _mean(box_sum, (ye - ys)[:, None], (xe - xs)[None, :])


def crop_resize_area(integral: np.ndarray, image_index: np.ndarray, y0: np.ndarray, x0: np.ndarray,
                     height: np.ndarray, width: np.ndarray, side: int) -> np.ndarray:
    """Crops area-resized to ``side x side``, all at once: torch's
    ``interpolate(img[b, :, y0:y0 + height, x0:x0 + width][None], (side, side), mode="area")`` for each crop.

    Args:
        integral: ``(B, C, H + 1, W + 1)`` from :func:`integral_image`.
        image_index: int ``(K,)`` image of each crop, ``0 <= b < B``.
        y0, x0: int ``(K,)`` top-left pixel of each crop (inside the image).
        height, width: int ``(K,)`` crop size in pixels (>= 1, inside the image).
        side: output side (24 for R-Net, 48 for O-Net).

    Returns:
        float32 ``(K, C, side, side)`` mean pixel values.
    """
    _, c, hp, wp = integral.shape
    ys, ye = area_bins(height, side)  # (K, side)
    xs, xe = area_bins(width, side)
    y0 = np.asarray(y0, dtype=np.int64)[:, None]
    x0 = np.asarray(x0, dtype=np.int64)[:, None]
    # flat index of integral[b, ch, y, x] = ((b * C + ch) * hp + y) * wp + x
    plane = (np.asarray(image_index, dtype=np.int64)[:, None] * c + np.arange(c)) * (hp * wp)  # (K, C)
    plane = plane[:, :, None, None]
    row_s, row_e = ((ys + y0) * wp)[:, None, :, None], ((ye + y0) * wp)[:, None, :, None]
    col_s, col_e = (xs + x0)[:, None, None, :], (xe + x0)[:, None, None, :]
    flat = integral.reshape(-1)
    base_e, base_s = plane + row_e, plane + row_s
    box_sum = flat[base_e + col_e] - flat[base_s + col_e] - flat[base_e + col_s] + flat[base_s + col_s]
    return _mean(box_sum, (ye - ys)[:, None, :, None], (xe - xs)[:, None, None, :])

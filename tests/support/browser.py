"""Headless Debian Chromium driven by Playwright, and a fake-camera clip for the live tab."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-quic"]


def write_y4m(image: Image.Image, path: Path, size: tuple[int, int] = (640, 480), frames: int = 30) -> Path:
    """Write a still ``image`` as a YUV4MPEG2 (4:2:0) clip for ``--use-file-for-fake-video-capture``."""
    w, h = size
    ycbcr = np.asarray(image.convert("RGB").resize(size).convert("YCbCr"))
    y = ycbcr[:, :, 0].tobytes()
    cb = np.asarray(Image.fromarray(ycbcr[:, :, 1]).resize((w // 2, h // 2))).tobytes()
    cr = np.asarray(Image.fromarray(ycbcr[:, :, 2]).resize((w // 2, h // 2))).tobytes()
    with path.open("wb") as fh:
        fh.write(f"YUV4MPEG2 W{w} H{h} F10:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            fh.write(b"FRAME\n" + y + cb + cr)
    return path

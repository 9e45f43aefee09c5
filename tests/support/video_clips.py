"""Test videos built from real faces (FER+ Valid crops on a grey canvas), encoded with PyAV."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from fer_core.video import VideoWriter

#: FER+ Valid crops (majority labels) that MTCNN finds at 160 px and the bundled model reads as
#: their label: face A smiles, then switches to neutral; face B smiles and leaves.
HAPPY_A, NEUTRAL_A, HAPPY_B = "fer0028642.png", "fer0028652.png", "fer0028643.png"
SIZE, FPS, SECONDS = (640, 480), 10, 3.0
SWITCH_S, B_LEAVES_S = 1.5, 2.0
TILE = 160


def _tile(folder: Path, name: str) -> Image.Image:
    return Image.open(folder / name).convert("RGB").resize((TILE, TILE), Image.Resampling.BICUBIC)


def two_face_frames(ferplus: Path, fps: int = FPS, seconds: float = SECONDS):
    """Yield ``(time_s, uint8 (480, 640, 3) frame)``: face A at the left drifting 1 px per frame,
    smiling until :data:`SWITCH_S` and neutral after; face B at the right until :data:`B_LEAVES_S`."""
    valid = ferplus / "FER2013Valid"
    a1, a2, b = _tile(valid, HAPPY_A), _tile(valid, NEUTRAL_A), _tile(valid, HAPPY_B)
    for i in range(round(fps * seconds)):
        t = i / fps
        canvas = Image.new("RGB", SIZE, (128, 128, 128))
        canvas.paste(a1 if t < SWITCH_S else a2, (60 + i, 160))
        if t < B_LEAVES_S:
            canvas.paste(b, (400, 140))
        yield t, np.asarray(canvas)


def write_two_face_clip(ferplus: Path, path: Path, fps: int = FPS, seconds: float = SECONDS) -> Path:
    """The :func:`two_face_frames` scene as an H.264 MP4 at ``path``."""
    with VideoWriter(path, fps, *SIZE) as writer:
        for _, frame in two_face_frames(ferplus, fps, seconds):
            writer.write(frame)
    return path


def write_with_codec(frames, path: Path, codec: str, fps: int = FPS) -> Path:
    """Encode ``(time, frame)`` pairs with another codec/container (``"libvpx-vp9"`` -> .webm,
    ``"mpeg4"`` -> .avi/.mkv/.mov), to check that every accepted container decodes."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        for _, frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def grey_clip(path: Path, seconds: float = 1.0, fps: int = FPS) -> Path:
    """A faceless clip: plain grey frames."""
    with VideoWriter(path, fps, *SIZE) as writer:
        for _ in range(round(fps * seconds)):
            writer.write(np.full((SIZE[1], SIZE[0], 3), 128, np.uint8))
    return path


def dense_clip(path: Path, frames: int = 3600, size: tuple[int, int] = (64, 64), codec: str = "libx264") -> Path:
    """A clip of ``frames`` frames 1/90000 s apart (time base 1/90000, one tick per frame): a few
    tens of KB and 0.04 s long by its timestamps, however many frames it holds, so a cap on
    seconds does not bound its decoding work. Frames are grey with a moving bar (each one differs)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=90000)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.time_base = Fraction(1, 90000)
        stream.codec_context.time_base = Fraction(1, 90000)
        for i in range(frames):
            rgb = np.full((size[1], size[0], 3), 128, np.uint8)
            rgb[:, i % size[0]] = 255
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 90000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path

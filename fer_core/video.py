"""Video files in and out with PyAV (FFmpeg's libraries; audio is ignored).

:func:`probe_video` checks a file and reads its size, frame rate and duration; :func:`iter_frames`
streams decoded RGB frames (optionally sampled to a lower rate), so memory does not grow with the
video's length; :class:`VideoWriter` encodes RGB frames as H.264 MP4 that browsers play.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import numpy as np

from .errors import InvalidArgumentError, InvalidVideoError
from .options import check_max_frames

#: File name endings treated as videos by the CLI and the app.
VIDEO_SUFFIXES: frozenset[str] = frozenset({".mp4", ".webm", ".mov", ".avi", ".mkv", ".m4v"})
#: Largest accepted frame, pixels (8K UHD, 7680x4320); larger frames raise InvalidVideoError.
MAX_VIDEO_PIXELS: int = 7680 * 4320
#: Frame rate assumed when a file does not state one.
FALLBACK_FPS: float = 25.0

VideoSource = str | os.PathLike


@dataclass(frozen=True)
class VideoInfo:
    """What a video file says about itself.

    Attributes:
        width, height: frame size, pixels.
        fps: average frame rate, frames per second (:data:`FALLBACK_FPS` if the file has none).
        duration_s: length in seconds, or ``None`` if the container does not say.
        frames: number of frames if the container says (0 when unknown).
        codec: the video codec's name, e.g. ``"h264"``.
    """

    width: int
    height: int
    fps: float
    duration_s: float | None
    frames: int
    codec: str


def _describe(source: VideoSource) -> str:
    return repr(Path(source).name) if isinstance(source, (str, os.PathLike)) else f"<{type(source).__name__}>"


def _open(source: VideoSource):
    """Open a container with its first video stream, or raise InvalidVideoError."""
    import av

    name = _describe(source)
    if not isinstance(source, (str, os.PathLike)):
        raise InvalidVideoError(name, "expected a path to a video file")
    path = Path(source)
    if not path.is_file():
        raise InvalidVideoError(name, "no such file")
    if path.stat().st_size == 0:
        raise InvalidVideoError(name, "empty file (0 bytes)")
    try:
        container = av.open(str(path), mode="r")
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidVideoError(name, f"not a readable video file ({_reason(exc)})") from exc
    if container.format.name.endswith("_pipe") or container.format.name.startswith("image2"):
        container.close()  # FFmpeg reads a photo as a one-frame video
        raise InvalidVideoError(name, f"a still image ({container.format.name.removesuffix('_pipe')}), not a "
                                      "video: use predict() for images")
    if not container.streams.video:
        container.close()
        raise InvalidVideoError(name, "no video stream in the file")
    stream = container.streams.video[0]
    if stream.codec_context is None or not stream.codec_context.name:
        container.close()
        raise InvalidVideoError(name, "video codec not supported")
    width, height = stream.codec_context.width, stream.codec_context.height
    if width * height > MAX_VIDEO_PIXELS:
        container.close()
        raise InvalidVideoError(name, f"frames of {width}x{height} pixels exceed the limit of {MAX_VIDEO_PIXELS:,}")
    return container, stream


def _reason(exc: BaseException) -> str:
    """The error's kind and message, without the file's path (FFmpeg's errors end with
    ``: '<path>'``; the caller names the file itself, and a server's temp path is nobody's business)."""
    text = (getattr(exc, "strerror", None) or str(exc)).strip()
    filename = getattr(exc, "filename", None)
    if filename:
        text = text.replace(f": '{filename}'", "").replace(str(filename), "<file>")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _fps(stream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    return fps if 0 < fps <= 1000 else FALLBACK_FPS


def probe_video(source: VideoSource) -> VideoInfo:
    """Open a video file and read its size, frame rate and duration (no frame is decoded).

    Args:
        source: path to a video file (mp4, webm, mov, avi, mkv, ...).

    Raises:
        InvalidVideoError: missing or empty file, not a video, no video stream, unsupported
            codec, or frames larger than :data:`MAX_VIDEO_PIXELS`.
    """
    container, stream = _open(source)
    with container:
        return VideoInfo(stream.codec_context.width, stream.codec_context.height, _fps(stream),
                         _duration(container, stream), int(stream.frames or 0), stream.codec_context.name)


def _stream_duration(stream) -> float | None:
    """Seconds the video stream says it lasts, or None."""
    return float(stream.duration * stream.time_base) if stream.duration and stream.time_base else None


def _duration(container, stream) -> float | None:
    """Seconds the file says it lasts (video stream, else container), or None."""
    stated = _stream_duration(stream)
    if stated is None and container.duration is not None:
        return container.duration / 1_000_000  # microseconds (av.time_base)
    return stated


@dataclass(frozen=True)
class Frame:
    """One decoded frame.

    Attributes:
        index: position among all decoded frames of the file, from 0.
        time_s: presentation time in seconds from the first frame (monotonic).
        rgb: uint8 ``(H, W, 3)`` RGB pixels.
    """

    index: int
    time_s: float
    rgb: np.ndarray


def iter_frames(source: VideoSource, *, sample_fps: float | None = None, max_seconds: float | None = None,
                max_frames: int | None = None, problems: list[str] | None = None,
                truncated: list[str] | None = None) -> Iterator[Frame]:
    """Decode a video file frame by frame (one frame in memory at a time).

    Damaged data does not stop the stream: a packet the decoder rejects is skipped (as the
    ``ffmpeg`` tool does) and the stream ends where the file can no longer be read; each such
    event is described in ``problems`` when a list is given.

    Args:
        source: path to a video file.
        sample_fps: keep at most this many frames per second (the first frame at or after each
            ``1 / sample_fps`` step); ``None`` keeps every frame.
        max_seconds: stop after this many seconds of video; ``None`` for all of it.
        max_frames: decode at most this many frames (sampled-out frames and frames with a repeated
            timestamp count too: this bounds the decoding work, whatever the timestamps say; a
            file of thousands of frames 1/90000 s apart is a fraction of a second long); ``None``
            for no cap. Decoding stops at the first frame past the cap.
        problems: if given, messages about skipped packets and an early end are appended to it.
        truncated: if given, a message is appended to it when decoding stopped at ``max_frames``
            with more frames in the file (the frames before are kept).

    Yields:
        :class:`Frame` objects with strictly increasing ``time_s`` (frames whose timestamp does
        not advance are skipped).

    Raises:
        InvalidVideoError: the file cannot be opened (see :func:`probe_video`) or not one frame
            can be decoded.
        InvalidArgumentError: ``sample_fps`` or ``max_seconds`` is not positive, or ``max_frames``
            not a whole number >= 1.
    """
    import av

    if sample_fps is not None and not sample_fps > 0:
        raise InvalidArgumentError(f"sample_fps must be > 0, got {sample_fps}")
    if max_seconds is not None and not max_seconds > 0:
        raise InvalidArgumentError(f"max_seconds must be > 0, got {max_seconds}")
    max_frames = check_max_frames(max_frames)
    container, stream = _open(source)
    name = _describe(source)
    stream.thread_type = "AUTO"
    fps = _fps(stream)
    step = 1.0 / sample_fps if sample_fps else 0.0
    state = {"start": None, "last": -1.0, "next": 0.0, "index": -1}
    issues: list[str] = []
    bad_packets = 0

    def keep(frame) -> Frame | None:
        state["index"] += 1
        stamp = frame.time if frame.time is not None else state["index"] / fps
        if state["start"] is None:
            state["start"] = stamp
        time_s = float(stamp - state["start"])
        if time_s <= state["last"]:
            return None
        state["last"] = time_s
        if step and time_s + 1e-6 < state["next"]:
            return None
        if step:
            state["next"] = (np.floor(time_s / step + 1e-6) + 1) * step
        return Frame(state["index"], time_s, frame.to_ndarray(format="rgb24"))

    def decoded(packet) -> list:
        nonlocal bad_packets
        try:
            return packet.decode()
        except av.FFmpegError:
            bad_packets += 1  # a damaged packet: skip it, as ffmpeg does
            return []

    stated = _stream_duration(stream)  # not the container's, which may include a longer audio track
    stopped = False
    with container:
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.FFmpegError as exc:
                issues.append(f"the file ends early or is damaged after {max(state['last'], 0):.2f} s "
                              f"({_reason(exc)})")
                packet = None
            frames = decoded(packet) if packet is not None else []
            if packet is None:  # flush what the decoder still holds, then stop
                frames = [*frames, *_flush(stream)]
            stop = False
            for frame in frames:
                if max_frames is not None and state["index"] + 1 >= max_frames:
                    stop = True  # one frame past the cap: stop decoding, say so
                    if truncated is not None:
                        truncated.append(f"stopped after decoding {max_frames} frames ({max(state['last'], 0):.3f} s "
                                         f"of video), the most decoded per video (max_frames)")
                    break
                kept = keep(frame)
                if kept is not None and max_seconds is not None and kept.time_s >= max_seconds:
                    stop = True
                    break
                if kept is not None:
                    yield kept
            if stop or packet is None:
                stopped = stop
                break
    if not stopped and not issues and stated and state["index"] >= 0 and state["last"] < stated - 2.5 / fps:
        issues.append(f"the file ends at {state['last']:.2f} s of the {stated:.2f} s it states (truncated?)")
    if bad_packets:
        issues.insert(0, f"{bad_packets} damaged packet{'s' if bad_packets > 1 else ''} skipped")
    if state["index"] < 0:
        reason = "no decodable video frame" + (f" ({'; '.join(issues)})" if issues else "")
        raise InvalidVideoError(name, reason)
    if problems is not None:
        problems.extend(issues)


def _flush(stream) -> list:
    import av

    try:
        return stream.decode(None)
    except av.FFmpegError:
        return []


class VideoWriter:
    """Encode RGB frames into an H.264 MP4 (yuv420p, fast-start) that browsers play.

    Use as a context manager; odd frame sizes lose their last row/column (H.264 4:2:0 needs even
    sizes).

    Args:
        path: output file (``.mp4``).
        fps: frame rate of the output, frames per second.
        width, height: frame size, pixels.
        crf: x264 quality (0 lossless .. 51 worst; 23 is x264's default).

    Raises:
        InvalidArgumentError: ``fps`` not positive or a size under 2 pixels.
    """

    def __init__(self, path: str | os.PathLike, fps: float, width: int, height: int, crf: int = 23) -> None:
        import av

        if not fps > 0:
            raise InvalidArgumentError(f"fps must be > 0, got {fps}")
        if width < 2 or height < 2:
            raise InvalidArgumentError(f"frame size must be at least 2x2, got {width}x{height}")
        self.width, self.height = width - width % 2, height - height % 2
        self._container = av.open(str(path), mode="w", options={"movflags": "faststart"})
        rate = Fraction(fps).limit_denominator(1001)
        self._stream = self._container.add_stream("libx264", rate=rate)
        self._stream.width, self._stream.height, self._stream.pix_fmt = self.width, self.height, "yuv420p"
        self._stream.options = {"crf": str(crf), "preset": "veryfast"}
        self._av = av

    def write(self, rgb: np.ndarray) -> None:
        """Append one uint8 ``(H, W, 3)`` RGB frame of the writer's size (or one pixel larger)."""
        frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[: self.height, : self.width]),
                                                 format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> None:
        """Flush the encoder and close the file."""
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

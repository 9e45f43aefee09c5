"""Analyse a video file: decode -> detect -> classify -> track -> a per-face :class:`Timeline`.

Frames are streamed and handled in small chunks (``batch_frames`` frames: their faces go through
the classifier together), so memory does not grow with the video's length; only the numbers per
face per frame are kept.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from .config import ModelConfig
from .detect import Detection, FaceDetector
from .errors import InvalidArgumentError
from .options import (
    DEFAULT_HALF_LIFE_S,
    check_max_faces,
    check_max_frames,
    check_max_seconds,
    check_sample_fps,
    check_smoothing,
)
from .result import FaceResult
from .timeline import Timeline, TimelineRow
from .track import DEFAULT_MAX_MISSED_S, FaceTracker
from .video import Frame, VideoInfo, VideoSource, VideoWriter, iter_frames, probe_video


class FrameRecognizer(Protocol):
    """What :func:`analyze_video` needs of a recognizer (:class:`~fer_core.recognizer.EmotionRecognizer`
    is one): its labels and config, a face detector, and classification of detected faces."""

    detector: FaceDetector

    @property
    def labels(self) -> list[str]: ...  # noqa: D102

    @property
    def config(self) -> ModelConfig: ...  # noqa: D102

    def classify_detections(self, images: Sequence[Image.Image], detections: Sequence[Sequence[Detection]], *,
                            align: bool | None = None, balanced: bool | None = None
                            ) -> list[list[FaceResult]]: ...  # noqa: D102

#: Frames whose faces are classified in one forward pass by :func:`analyze_video`.
DEFAULT_BATCH_FRAMES: int = 8


class VideoAnalysis(Timeline):
    """The result of :func:`analyze_video`: a :class:`Timeline` plus what it was made from.

    Attributes:
        source: the video file's path.
        info: the file's :class:`~fer_core.video.VideoInfo`.
        sample_fps: frames analysed per second asked for (``None``: every frame).
        half_life_s: the smoothing half-life used, seconds.
        error: ``None`` if the video decoded cleanly; otherwise what was wrong (damaged packets
            skipped, or the file ending early: the rows before that point are kept).
        max_frames: the cap on decoded frames the analysis ran under (``None``: none).
        truncated: ``None`` if the analysis ran to the end (of the file or of ``max_seconds``);
            otherwise why it stopped early (``max_frames`` decoded frames reached): the rows before
            that point are kept.
        max_faces: the cap on faces classified per frame (``None``: none).
        faces_dropped: faces found but not classified because of ``max_faces``, over all frames.
        faces_rejected: MTCNN boxes that face verification (FaceMesh) rejected as not a face, over all
            the frames the detector ran on (0 without verification).
    """

    def __init__(self, labels: Sequence[str], source: str, info: VideoInfo, sample_fps: float | None,
                 half_life_s: float, max_frames: int | None = None, max_faces: int | None = None) -> None:
        rate = min(info.fps, sample_fps) if sample_fps else info.fps
        super().__init__(labels, frame_period_s=1.0 / rate)
        self.source, self.info = source, info
        self.sample_fps, self.half_life_s = sample_fps, half_life_s
        self.error: str | None = None
        self.max_frames, self.max_faces = max_frames, max_faces
        self.truncated: str | None = None
        self.faces_dropped = 0
        self.faces_rejected = 0

    @property
    def duration_s(self) -> float:
        """Seconds of video analysed (last analysed frame's time plus one frame period)."""
        return self.frames[-1][1] + (self.frame_period_s or 0.0) if self.frames else 0.0

    def video_dict(self) -> dict[str, Any]:
        """What was analysed: file name, width, height, fps, codec, seconds analysed, sample_fps,
        smoothing half-life (JSON-serialisable)."""
        return {
            "file": os.path.basename(self.source), "width": self.info.width, "height": self.info.height,
            "fps": round(self.info.fps, 3), "codec": self.info.codec, "seconds_analyzed": round(self.duration_s, 3),
            "sample_fps": self.sample_fps, "smoothing_half_life_s": self.half_life_s,
        }

    def to_dict(self) -> dict[str, Any]:
        """:meth:`Timeline.to_dict` plus ``video`` (:meth:`video_dict`), ``error``, ``truncated``
        (``None`` or why the analysis stopped early), ``faces_dropped`` (faces over ``max_faces``
        per frame, not classified) and ``faces_rejected`` (boxes face verification rejected)."""
        return {"video": self.video_dict(), "error": self.error, "truncated": self.truncated,
                "faces_dropped": self.faces_dropped, "faces_rejected": self.faces_rejected, **super().to_dict()}

    def write_annotated(self, path: str | os.PathLike, *, crf: int = 23) -> None:
        """Write the analysed part of the video with tracked boxes, ids and labels (H.264 MP4).

        Every source frame is written; a frame between two analysed ones (``sample_fps``) shows
        the faces of the last analysed frame before it.

        Args:
            path: output ``.mp4`` file.
            crf: x264 quality (see :class:`~fer_core.video.VideoWriter`).

        Raises:
            InvalidVideoError: the source video cannot be read again.
        """
        from .draw import annotate

        by_frame: dict[int, list[TimelineRow]] = {}
        for r in self.rows:
            by_frame.setdefault(r.frame, []).append(r)
        analysed = {f for f, _ in self.frames}
        end = self.duration_s
        current: list = []
        with VideoWriter(path, self.info.fps, self.info.width, self.info.height, crf=crf) as writer:
            for frame in iter_frames(self.source, max_frames=self.max_frames):
                if frame.time_s >= end:
                    break
                if frame.index in analysed:
                    current = [r.to_face(self.labels) for r in by_frame.get(frame.index, [])]
                image = Image.fromarray(frame.rgb)
                writer.write(np.asarray(annotate(image, current)) if current else frame.rgb)


def analyze_video(
    recognizer: FrameRecognizer,
    source: VideoSource,
    *,
    sample_fps: float | None = None,
    max_seconds: float | None = None,
    smoothing: float = DEFAULT_HALF_LIFE_S,
    max_missed_s: float = DEFAULT_MAX_MISSED_S,
    progress: bool = True,
    threshold: float | None = None,
    min_face_size: int | None = None,
    align: bool | None = None,
    balanced: bool | None = None,
    batch_frames: int = DEFAULT_BATCH_FRAMES,
    detect_every: int = 1,
    max_frames: int | None = None,
    max_faces: int | None = None,
    time_budget_s: float | None = None,
    verify_faces: bool | None = None,
) -> VideoAnalysis:
    """Track every face through a video file and record its expression probabilities over time.

    Args:
        recognizer: the loaded recognizer (detector + classifier).
        source: path to a video file (mp4, webm, mov, avi, mkv, ...; audio is ignored).
        sample_fps: analyse at most this many frames per second (up to
            :data:`~fer_core.options.MAX_SAMPLE_FPS`); ``None`` or 0 analyses every frame.
        max_seconds: analyse only the first ``max_seconds`` seconds; ``None`` or 0 for all.
        smoothing: EMA half-life in seconds of the per-face probabilities (0 = none, at most 10; see
            :class:`~fer_core.track.FaceTracker`).
        max_missed_s: seconds a face may go undetected and keep its ``face_id``.
        progress: show a tqdm progress bar (frames).
        threshold, min_face_size, align, balanced: as in :meth:`EmotionRecognizer.predict`.
        batch_frames: frames per classifier pass (memory is bounded by this, not by the video).
        detect_every: run the face detector on every n-th analysed frame only and reuse its boxes
            and landmarks on the frames between (the expression is still classified on every
            frame). 1 (default) detects on every frame; 2 or 3 make analysis much faster, since
            MTCNN is most of the time, while boxes lag a moving face by up to n - 1 frames.
        max_frames: decode at most this many frames (whether analysed or skipped by ``sample_fps``;
            see :func:`~fer_core.video.iter_frames`), which bounds the work of a file whatever its
            timestamps say; past it the analysis stops, keeps the rows so far and says so in
            ``truncated``. ``None`` (default): no cap.
        max_faces: classify at most this many faces per frame, the highest detection scores first
            (:func:`~fer_core.detect.limit_faces`); the others are counted in ``faces_dropped``.
            ``None`` (default): no cap.
        time_budget_s: stop analysing after this many seconds of wall time (checked after each
            batch of ``batch_frames`` frames), keep the rows so far and say so in ``truncated``.
            ``None`` (default): no limit.
        verify_faces: confirm each MTCNN box with FaceMesh and drop the rejected ones, counted in
            :attr:`VideoAnalysis.faces_rejected` (``None``: the detector's ``verify``, on by default).
            Frames keep the adaptive, speed-first smallest face (``min_face_size=None``), unlike
            still photos (:meth:`EmotionRecognizer.predict` ``photo=True``).

    Returns:
        A :class:`VideoAnalysis`; empty (no rows) if no face is ever found. A damaged or truncated
        file that still has decodable frames gives the rows of those frames, and ``error`` says
        what was wrong; a file cut short by ``max_frames`` gives the rows before the cap, and
        ``truncated`` says so.

    Raises:
        InvalidVideoError: the file is missing, empty, not a video, undecodable from the start, or
            its frames are too large.
        InvalidArgumentError: a parameter is out of range.
    """

    if batch_frames < 1:
        raise InvalidArgumentError(f"batch_frames must be >= 1, got {batch_frames}")
    if not (isinstance(detect_every, int) and detect_every >= 1):
        raise InvalidArgumentError(f"detect_every must be a whole number >= 1, got {detect_every}")
    sample_fps, max_seconds = check_sample_fps(sample_fps), check_max_seconds(max_seconds)
    smoothing = check_smoothing(smoothing)
    max_frames, max_faces = check_max_frames(max_frames), check_max_faces(max_faces)
    if time_budget_s is not None and not time_budget_s > 0:
        raise InvalidArgumentError(f"time_budget_s must be positive, got {time_budget_s}")
    recognizer.config.resolve_balanced(balanced)  # bad requests fail before decoding
    info = probe_video(source)
    tracker = FaceTracker(recognizer.labels, half_life_s=smoothing, max_missed_s=max_missed_s)
    analysis = VideoAnalysis(recognizer.labels, os.fspath(source), info, sample_fps, float(smoothing),
                             max_frames=max_frames, max_faces=max_faces)
    seconds = min(x for x in (info.duration_s, max_seconds, float("inf")) if x is not None)
    total = round(seconds / analysis.frame_period_s) if seconds < float("inf") else None
    if max_frames is not None:
        total = min(total, max_frames) if total is not None else max_frames
    chunk: list[Frame] = []

    reused: list = []  # the detections of the last frame the detector ran on
    counter = [0]  # analysed frames so far

    def flush() -> None:
        images = [Image.fromarray(f.rgb) for f in chunk]
        wanted = [i for i in range(len(chunk)) if (counter[0] + i) % detect_every == 0]
        rejected: list[int] = []
        lost: list[int] = []
        found = recognizer.detector.detect_batch([images[i] for i in wanted], threshold=threshold,
                                                 min_face_size=min_face_size, verify=verify_faces, rejected=rejected,
                                                 max_faces=max_faces, dropped=lost)
        analysis.faces_rejected += sum(rejected)
        analysis.faces_dropped += sum(lost)
        by_index = dict(zip(wanted, found))
        detections = []
        for i in range(len(chunk)):
            if i in by_index:
                reused[:] = by_index[i]
            detections.append(list(reused))
        counter[0] += len(chunk)
        results = recognizer.classify_detections(images, detections, align=align, balanced=balanced)
        for frame, faces in zip(chunk, results):
            analysis.add(frame.index, frame.time_s, tracker.update(faces, frame.time_s), faces)
        bar.update(len(chunk))
        chunk.clear()

    problems: list[str] = []
    truncated: list[str] = []
    started = time.monotonic()
    with tqdm(total=total, unit="frame", desc=os.path.basename(os.fspath(source)), disable=not progress) as bar:
        for frame in iter_frames(source, sample_fps=sample_fps, max_seconds=max_seconds, max_frames=max_frames,
                                 problems=problems, truncated=truncated):
            chunk.append(frame)
            if len(chunk) >= batch_frames:
                at_s = chunk[-1].time_s
                flush()
                if time_budget_s is not None and time.monotonic() - started > time_budget_s:
                    truncated.append(f"stopped after {time_budget_s:.0f} s of analysis at {at_s:.3f} s of video "
                                     "(time_budget_s)")
                    break
        if chunk:
            flush()
    analysis.error = "; ".join(problems) or None
    analysis.truncated = "; ".join(truncated) or None
    return analysis

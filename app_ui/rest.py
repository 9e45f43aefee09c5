"""Plain-HTTP routes for ``curl`` users, on the same FastAPI app as the Gradio UI.

``GET /health``, ``GET /api/labels``, ``POST /api/predict`` (multipart ``file``),
``POST /api/predict/batch`` (multipart ``files``), ``POST /api/predict/video`` (multipart ``file``),
each with ``threshold``, ``min_face_size``, ``align`` and ``balanced`` query parameters (omitted:
the model's own defaults; the video route also ``sample_fps``, ``max_seconds``, ``smoothing``);
OpenAPI docs at ``/docs``.

Status codes: 400 an invalid image or video; 411 an upload without ``Content-Length``; 413 a body,
file, file count or pixel total over the limits of :mod:`app_ui.limits`; 422 an option out of range
or a video longer than the limit without ``max_seconds``; 503 with ``Retry-After`` when every
inference slot is taken and the line is full.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, HTTPException, Query, UploadFile
from starlette.concurrency import run_in_threadpool

from fer_core import InvalidArgumentError, InvalidImageError, InvalidVideoError
from fer_core.options import (
    DEFAULT_HALF_LIFE_S,
    DEFAULT_VIDEO_SAMPLE_FPS,
    MAX_SAMPLE_FPS,
    MIN_FACE_SIZE_FLOOR,
    SMOOTHING_RANGE_S,
    THRESHOLD_RANGE,
)
from fer_core.video import VIDEO_SUFFIXES

from .limits import MAX_FILES, MAX_UPLOAD_BYTES, MB, RequestTooLargeError, ServerBusyError
from .service import FERService, VideoTooLongError, public

Threshold = Annotated[float | None, Query(ge=THRESHOLD_RANGE[0], le=THRESHOLD_RANGE[1],
                                          description="detection probability threshold; omit for the model's")]
MinFace = Annotated[int, Query(ge=0, description=f"smallest face in pixels (>= {MIN_FACE_SIZE_FLOOR}); 0 = adaptive")]
Align = Annotated[bool | None, Query(description="level the eyes before classifying; omit for the model's default")]
Balanced = Annotated[bool | None, Query(description="balanced (prior-corrected) decisions; omit for the "
                                                    "model's default")]
SampleFps = Annotated[float, Query(ge=0, le=MAX_SAMPLE_FPS, description="frames analysed per second; 0 = every frame")]
Smoothing = Annotated[float, Query(ge=SMOOTHING_RANGE_S[0], le=SMOOTHING_RANGE_S[1],
                                   description="probability smoothing half-life, seconds")]


async def _read_limited(upload: UploadFile) -> bytes:
    data = await upload.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise HTTPException(413, f"{upload.filename}: file larger than {MAX_UPLOAD_BYTES / MB:.0f} MB")
    return data


async def _run(name: str | None, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` in a worker thread, the project's errors turned into HTTP answers."""
    try:
        return await run_in_threadpool(fn, *args, **kwargs)
    except (InvalidImageError, InvalidVideoError) as exc:
        raise HTTPException(400, f"{name}: {exc.reason}") from exc
    except RequestTooLargeError as exc:
        raise HTTPException(413, str(exc)) from exc
    except (InvalidArgumentError, VideoTooLongError) as exc:
        raise HTTPException(422, f"{name}: {exc}" if name else str(exc)) from exc
    except ServerBusyError as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": str(exc.retry_after_s)}) from exc


def build_router(service: FERService) -> APIRouter:
    """The REST routes bound to ``service``."""
    router = APIRouter()

    async def options(threshold: float | None, min_face_size: int, align: bool | None, balanced: bool | None):
        return await _run(None, service.settings, threshold, min_face_size, align, balanced)

    @router.get("/health", tags=["meta"])
    def health() -> dict[str, Any]:
        """Liveness: ``status`` ok, the loaded model and revision, and inference slots in use."""
        return {"status": "ok", "model": service.model_id, "revision": service.recognizer.revision,
                "running": service.limiter.running, "waiting": service.limiter.waiting}

    @router.get("/api/labels", tags=["meta"])
    def labels() -> dict[str, Any]:
        """The model's labels (FER+ order), id, revision, default options and key config values."""
        return service.info()

    @router.post("/api/predict", tags=["predict"])
    async def predict(file: Annotated[UploadFile, File(description="an image file")],
                      threshold: Threshold = None, min_face_size: MinFace = 0, align: Align = None,
                      balanced: Balanced = None) -> dict[str, Any]:
        """Faces in one image: each with ``box`` [x1, y1, x2, y2] pixels, ``score``, ``label``,
        ``probs`` (label -> probability) and ``landmarks``."""
        opts = await options(threshold, min_face_size, align, balanced)
        data = await _read_limited(file)
        _, faces = await _run(file.filename, service.predict, data, opts)
        return {"file": file.filename, "faces": [f.to_dict() for f in faces]}

    @router.post("/api/predict/batch", tags=["predict"])
    async def predict_batch(files: Annotated[list[UploadFile], File(description=f"image files (at most {MAX_FILES})")],
                            threshold: Threshold = None, min_face_size: MinFace = 0, align: Align = None,
                            balanced: Balanced = None) -> dict[str, Any]:
        """Several images; a bad file gets an ``error`` entry and the others are still processed."""
        if len(files) > MAX_FILES:
            raise HTTPException(413, f"{len(files)} files in one request; at most {MAX_FILES}")
        opts = await options(threshold, min_face_size, align, balanced)
        items = [(f.filename or f"file{i}", await _read_limited(f)) for i, f in enumerate(files)]
        results = await _run(None, service.predict_many, items, opts)
        return {"results": public(results)}

    @router.post("/api/predict/video", tags=["predict"])
    async def predict_video(
        file: Annotated[UploadFile, File(description="a video file (mp4, webm, mov, avi, mkv)")],
        sample_fps: SampleFps = DEFAULT_VIDEO_SAMPLE_FPS,
        max_seconds: Annotated[float, Query(ge=0, description="analyse only the first seconds; 0 = all")] = 0,
        smoothing: Smoothing = DEFAULT_HALF_LIFE_S,
        threshold: Threshold = None, min_face_size: MinFace = 0, align: Align = None, balanced: Balanced = None,
    ) -> dict[str, Any]:
        """Faces tracked through a video: ``video`` (size, fps, seconds analysed), ``error`` (damaged
        parts, else null), ``summary`` (per face id: seconds visible, share of time per label) and
        ``rows`` (per face per analysed frame: ``time_s``, ``face_id``, ``box``, ``label``, smoothed
        ``probs`` and unsmoothed ``raw_probs``)."""
        opts = await options(threshold, min_face_size, align, balanced)
        data = await _read_limited(file)
        suffix = Path(file.filename or "").suffix.lower()
        fd, tmp = tempfile.mkstemp(suffix=suffix if suffix in VIDEO_SUFFIXES else ".mp4")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            analysis = await _run(file.filename, service.analyze_video, tmp, opts, sample_fps=sample_fps,
                                  max_seconds=max_seconds, smoothing=smoothing)
        finally:
            os.unlink(tmp)
        doc = analysis.to_dict()
        doc["video"]["file"] = file.filename
        return doc

    return router

"""Plain-HTTP routes for ``curl`` users, on the same FastAPI app as the Gradio UI.

``GET /health``, ``GET /api/labels``, ``POST /api/predict`` (multipart ``file``),
``POST /api/predict/batch`` (multipart ``files``), ``POST /api/predict/video`` (multipart ``file``),
each with ``threshold``, ``min_face_size``, ``align`` and ``balanced`` query parameters (the video
route also ``sample_fps``, ``max_seconds``, ``smoothing``); OpenAPI docs at ``/docs``. Uploads larger
than :data:`app_ui.service.MAX_UPLOAD_BYTES` get 413, invalid images or videos 400, bad settings and
videos longer than :data:`app_ui.service.MAX_VIDEO_SECONDS` 422.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, HTTPException, Query, Request, UploadFile
from starlette.concurrency import run_in_threadpool

from fer_core import InvalidImageError, InvalidVideoError
from fer_core.track import DEFAULT_HALF_LIFE_S
from fer_core.video import VIDEO_SUFFIXES

from .service import DEFAULT_VIDEO_SAMPLE_FPS, MAX_UPLOAD_BYTES, FERService, Settings, public

Threshold = Annotated[float, Query(ge=0, le=1, description="detection probability threshold")]
MinFace = Annotated[int, Query(ge=0, description="smallest face in pixels; 0 = adaptive")]
Align = Annotated[bool, Query(description="level the eyes before classifying")]
Balanced = Annotated[bool | None, Query(description="balanced (prior-corrected) decisions; omit for the "
                                                    "model's default")]


async def _read_limited(upload: UploadFile) -> bytes:
    data = await upload.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise HTTPException(413, f"{upload.filename}: upload larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB")
    return data


def _check_length(request: Request, files: int = 1) -> None:
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > MAX_UPLOAD_BYTES * files + 65536:
        raise HTTPException(413, f"request larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB per file")


def _settings(service: FERService, threshold: float, min_face_size: int, align: bool,
              balanced: bool | None) -> Settings:
    try:
        return service.settings(threshold, min_face_size, align, balanced)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None


def build_router(service: FERService) -> APIRouter:
    """The REST routes bound to ``service``."""
    router = APIRouter()

    @router.get("/health", tags=["meta"])
    def health() -> dict[str, Any]:
        """Liveness: ``status`` ok plus the loaded model and revision."""
        return {"status": "ok", "model": service.model_id, "revision": service.recognizer.revision}

    @router.get("/api/labels", tags=["meta"])
    def labels() -> dict[str, Any]:
        """The model's labels (FER+ order), id, revision and key config values."""
        return service.info()

    @router.post("/api/predict", tags=["predict"])
    async def predict(request: Request, file: Annotated[UploadFile, File(description="an image file")],
                      threshold: Threshold = 0.9, min_face_size: MinFace = 0, align: Align = True,
                      balanced: Balanced = None) -> dict[str, Any]:
        """Faces in one image: each with ``box`` [x1, y1, x2, y2] pixels, ``score``, ``label``,
        ``probs`` (label -> probability) and ``landmarks``."""
        _check_length(request)
        data = await _read_limited(file)
        settings = _settings(service, threshold, min_face_size, align, balanced)
        try:
            _, faces = await run_in_threadpool(service.predict, data, settings)
        except InvalidImageError as exc:
            raise HTTPException(400, f"{file.filename}: {exc}") from None
        return {"file": file.filename, "faces": [f.to_dict() for f in faces]}

    @router.post("/api/predict/batch", tags=["predict"])
    async def predict_batch(request: Request, files: Annotated[list[UploadFile], File(description="image files")],
                            threshold: Threshold = 0.9, min_face_size: MinFace = 0, align: Align = True,
                            balanced: Balanced = None) -> dict[str, Any]:
        """Several images; a bad file gets an ``error`` entry and the others are still processed."""
        _check_length(request, files=max(1, len(files)))
        items = [(f.filename or f"file{i}", await _read_limited(f)) for i, f in enumerate(files)]
        settings = _settings(service, threshold, min_face_size, align, balanced)
        results = await run_in_threadpool(service.predict_many, items, settings)
        return {"results": public(results)}

    @router.post("/api/predict/video", tags=["predict"])
    async def predict_video(
        request: Request, file: Annotated[UploadFile, File(description="a video file (mp4, webm, mov, avi, mkv)")],
        sample_fps: Annotated[float, Query(ge=0, le=60, description="frames analysed per second; 0 = every "
                                                                     "frame")] = DEFAULT_VIDEO_SAMPLE_FPS,
        max_seconds: Annotated[float, Query(ge=0, description="analyse only the first seconds; 0 = all")] = 0,
        smoothing: Annotated[float, Query(ge=0, le=10, description="probability smoothing half-life, "
                                                                   "seconds")] = DEFAULT_HALF_LIFE_S,
        threshold: Threshold = 0.9, min_face_size: MinFace = 0, align: Align = True, balanced: Balanced = None,
    ) -> dict[str, Any]:
        """Faces tracked through a video: ``video`` (size, fps, seconds analysed), ``error`` (damaged
        parts, else null), ``summary`` (per face id: seconds visible, share of time per label) and
        ``rows`` (per face per analysed frame: ``time_s``, ``face_id``, ``box``, ``label``, smoothed
        ``probs`` and unsmoothed ``raw_probs``)."""
        _check_length(request)
        data = await _read_limited(file)
        settings = _settings(service, threshold, min_face_size, align, balanced)
        suffix = Path(file.filename or "").suffix.lower()
        fd, tmp = tempfile.mkstemp(suffix=suffix if suffix in VIDEO_SUFFIXES else ".mp4")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            analysis = await run_in_threadpool(service.analyze_video, tmp, settings, sample_fps=sample_fps or None,
                                               max_seconds=max_seconds or None, smoothing=smoothing)
        except InvalidVideoError as exc:
            raise HTTPException(400, f"{file.filename}: {exc.reason}") from None
        except ValueError as exc:  # too long (VideoTooLongError) or out-of-range options
            raise HTTPException(422, f"{file.filename}: {exc}") from None
        finally:
            os.unlink(tmp)
        doc = analysis.to_dict()
        doc["video"]["file"] = file.filename
        return doc

    return router

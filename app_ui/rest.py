"""Plain-HTTP routes for ``curl`` users, on the same FastAPI app as the Gradio UI.

``GET /health``, ``GET /api/labels``, ``POST /api/predict`` (multipart ``file``),
``POST /api/predict/batch`` (multipart ``files``), each with ``threshold``, ``min_face_size``,
``align`` and ``balanced`` query parameters; OpenAPI docs at ``/docs``. Uploads larger than
:data:`app_ui.service.MAX_UPLOAD_BYTES` get 413, invalid images 400, bad settings 422.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, HTTPException, Query, Request, UploadFile
from starlette.concurrency import run_in_threadpool

from fer_core import InvalidImageError

from .service import MAX_UPLOAD_BYTES, FERService, Settings, public

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

    return router

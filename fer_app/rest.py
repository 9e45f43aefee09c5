"""Plain-HTTP routes for ``curl`` users, on the same FastAPI app as the Gradio UI.

``GET /health``, ``GET /api/labels``, ``POST /api/predict`` (multipart ``file``),
``POST /api/predict/batch`` (multipart ``files``), ``POST /api/predict/video`` (multipart ``file``),
each with ``threshold``, ``min_face_size``, ``align``, ``balanced`` and ``verify_faces`` query
parameters (omitted: the model's own defaults, verification on; the video route also ``sample_fps``,
``max_seconds``, ``smoothing``); ``POST /api/explain`` (multipart ``file``; ``target`` and ``method`` as
query or form fields, and the same detection options): each face's Grad-CAM saliency map and a PNG
overlay in base64, at most 1024 px on its longer side, null without faces (needs the ``torch`` extra on
the server, else 501). OpenAPI docs at ``/docs``.

Status codes: 400 an invalid image or video, or a request with both ``Content-Length`` and
``Transfer-Encoding``; 408 a body that arrives too slowly; 413 a body (counted as it streams),
file, file count or pixel total over the limits of :mod:`fer_app.limits`; 422 an option out of range,
a video longer than the limit without ``max_seconds``, an unknown explain ``target`` or ``method``, or
any other :class:`fer_core.FERError`; 501 an explanation on a server without torch or grad-cam; 503
with ``Retry-After`` when every inference slot is taken and the line is full. Every ``detail`` is the
reason a client can act on. Anything else is a bug: it is logged with its traceback (logger
``fer_app.rest``) and answered 500 with the fixed detail :data:`INTERNAL_ERROR`, never the exception's
text. Work is bounded too: faces over :data:`~fer_app.limits.MAX_FACES` per image are counted in
``faces_dropped`` (with a ``note``), a video stops at :data:`~fer_app.limits.MAX_VIDEO_FRAMES`
decoded frames (``truncated``), and a batch past :data:`~fer_app.limits.REQUEST_BUDGET_S` seconds
answers the files not started with an error entry.
"""

from __future__ import annotations

import base64
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from fer_core import FERError, InvalidArgumentError
from fer_core.errors import InputError
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
from .service import (
    PREDICTED,
    ExplainUnavailableError,
    FERService,
    VideoTooLongError,
    explain_document,
    faces_dropped_note,
    public,
)

log = logging.getLogger(__name__)

#: The whole ``detail`` of a 500: what went wrong inside stays in the server's log.
INTERNAL_ERROR = "internal error: the server could not process this request (the error is logged)"

Threshold = Annotated[float | None, Query(ge=THRESHOLD_RANGE[0], le=THRESHOLD_RANGE[1],
                                          description="detection probability threshold; omit for the model's")]
MinFace = Annotated[int, Query(ge=0, description=f"smallest face in pixels (>= {MIN_FACE_SIZE_FLOOR}); 0 = adaptive")]
Align = Annotated[bool | None, Query(description="level the eyes before classifying; omit for the model's default")]
Balanced = Annotated[bool | None, Query(description="balanced (prior-corrected) decisions; omit for the "
                                                    "model's default")]
VerifyFaces = Annotated[bool | None, Query(description="confirm each detected face with MediaPipe FaceMesh and "
                                                       "drop the boxes it rejects (counted in faces_rejected); "
                                                       "omit for the default, on")]
SampleFps = Annotated[float, Query(ge=0, le=MAX_SAMPLE_FPS, description="frames analysed per second; 0 = every frame")]
Smoothing = Annotated[float, Query(ge=SMOOTHING_RANGE_S[0], le=SMOOTHING_RANGE_S[1],
                                   description="probability smoothing half-life, seconds")]
_TARGET = (f"the label to explain for every face: {PREDICTED!r} (default: each face's predicted label) or one of "
           "the model's labels (GET /api/labels)")
_METHOD = "saliency method: gradcam (default), gradcam++ or layercam"


async def _read_limited(upload: UploadFile) -> bytes:
    data = await upload.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise HTTPException(413, f"{upload.filename}: file larger than {MAX_UPLOAD_BYTES / MB:.0f} MB")
    return data


def http_error(exc: Exception, name: str | None = None) -> HTTPException:
    """The HTTP answer for an exception raised while serving a request (``name``: the upload's file
    name, shown instead of the server's temporary path).

    A bad image or video (:class:`fer_core.errors.InputError`) is 400 with its reason; too much
    work (:class:`~fer_app.limits.RequestTooLargeError`) 413; an option out of range, a video over
    the length limit or any other :class:`fer_core.FERError` 422 with its message; a full server
    (:class:`~fer_app.limits.ServerBusyError`) 503 with ``Retry-After``; explanations on a server
    that cannot compute them (:class:`~fer_app.service.ExplainUnavailableError`) 501. Anything else is a bug: it
    is logged here with its traceback and answered 500 :data:`INTERNAL_ERROR`, without its text.
    """
    prefix = f"{name}: " if name else ""
    if isinstance(exc, HTTPException):
        return exc
    if isinstance(exc, InputError):
        return HTTPException(400, f"{prefix}{exc.reason}")
    if isinstance(exc, RequestTooLargeError):
        return HTTPException(413, str(exc))
    if isinstance(exc, ExplainUnavailableError):
        return HTTPException(501, str(exc))
    if isinstance(exc, ServerBusyError):
        return HTTPException(503, str(exc), headers={"Retry-After": str(exc.retry_after_s)})
    if isinstance(exc, (InvalidArgumentError, VideoTooLongError, FERError)):
        return HTTPException(422, f"{prefix}{exc}")
    log.error("internal error while serving %s", name or "a request", exc_info=exc)
    return HTTPException(500, INTERNAL_ERROR)


async def _run(name: str | None, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` in a worker thread, every exception turned into an HTTP answer
    (:func:`http_error`)."""
    try:
        return await run_in_threadpool(fn, *args, **kwargs)
    except Exception as exc:  # each kind is mapped; the rest is a logged 500
        raise http_error(exc, name) from exc


class GuardedRoute(APIRoute):
    """An :class:`~fastapi.routing.APIRoute` whose endpoint never leaks an exception: whatever a
    route raises outside :func:`_run` (building its answer, say) is mapped by :func:`http_error`,
    so a bug is a logged 500 :data:`INTERNAL_ERROR` in the JSON shape of every other error.
    FastAPI's own answers (HTTP errors, request validation 422) pass through unchanged."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except (StarletteHTTPException, RequestValidationError):
                raise
            except Exception as exc:  # mapped: 4xx for known errors, a logged 500 else
                error = http_error(exc)
                return JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=error.headers)

        return guarded


def build_router(service: FERService) -> APIRouter:
    """The REST routes bound to ``service``."""
    router = APIRouter(route_class=GuardedRoute)

    async def options(threshold: float | None, min_face_size: int, align: bool | None, balanced: bool | None,
                      verify_faces: bool | None):
        return await _run(None, service.settings, threshold, min_face_size, align, balanced, verify_faces)

    @router.api_route("/health", methods=["GET", "HEAD"], tags=["meta"])
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
                      balanced: Balanced = None, verify_faces: VerifyFaces = None) -> dict[str, Any]:
        """Faces in one image: each with ``box`` [x1, y1, x2, y2] pixels, ``score``, ``label``,
        ``probs`` (label -> probability), ``landmarks`` and, when verified, ``face_prob`` (FaceMesh's
        face-presence probability, 0..1); ``faces_rejected`` when verification rejected boxes;
        ``faces_dropped`` and ``note`` when more faces were found than the server classifies per
        image (the highest scores are kept)."""
        opts = await options(threshold, min_face_size, align, balanced, verify_faces)
        data = await _read_limited(file)
        dropped: list[int] = []
        rejected: list[int] = []
        _, faces = await _run(file.filename, service.predict, data, opts, dropped=dropped, rejected=rejected)
        doc: dict[str, Any] = {"file": file.filename, "faces": [f.to_dict() for f in faces]}
        if sum(rejected):
            doc["faces_rejected"] = sum(rejected)
        if sum(dropped):
            doc |= {"faces_dropped": sum(dropped), "note": faces_dropped_note(sum(dropped))}
        return doc

    @router.post("/api/explain", tags=["explain"])
    async def explain(file: Annotated[UploadFile, File(description="an image file")],
                      target: Annotated[str | None, Query(description=_TARGET)] = None,
                      method: Annotated[str | None, Query(description=_METHOD)] = None,
                      target_field: Annotated[str | None, Form(alias="target", description=_TARGET)] = None,
                      method_field: Annotated[str | None, Form(alias="method", description=_METHOD)] = None,
                      threshold: Threshold = None, min_face_size: MinFace = 0, align: Align = None,
                      balanced: Balanced = None, verify_faces: VerifyFaces = None) -> dict[str, Any]:
        """Where the network looked, per face (Grad-CAM): ``faces``, one entry per face with ``face`` (as in
        /api/predict), ``target`` (the label explained), ``method``, ``layer``, ``transform`` (the face
        crop in the image: centre ``cx``, ``cy``, ``side`` pixels, ``angle`` radians, ``size``) and
        ``heatmap`` (32 x 32 rows of floats in [0, 1] over the crop, 1 = strongest evidence);
        ``overlay_png``, the image with every map blended in, a base64 PNG at most
        ``EXPLAIN_OVERLAY_MAX_SIDE`` (1024) pixels on its longer side, or null when no face was found;
        ``faces_rejected``, ``faces_dropped`` and ``note`` as in /api/predict. ``target`` and ``method``
        may be query or form fields (the query wins, even empty). 501 when the server lacks the torch
        extra."""
        if reason := service.explain_unavailable():
            raise HTTPException(501, reason)
        target, method = await _run(None, service.explain_args, target if target is not None else target_field,
                                    method if method is not None else method_field)
        opts = await options(threshold, min_face_size, align, balanced, verify_faces)
        data = await _read_limited(file)
        dropped: list[int] = []
        rejected: list[int] = []
        _, _, maps, png = await _run(file.filename, service.explain, data, opts, target=target, method=method,
                                     dropped=dropped, rejected=rejected, overlay_png=True)
        doc: dict[str, Any] = {"file": file.filename, **explain_document(maps),
                               "overlay_png": base64.b64encode(png).decode("ascii") if png else None}
        if sum(rejected):
            doc["faces_rejected"] = sum(rejected)
        if sum(dropped):
            doc |= {"faces_dropped": sum(dropped), "note": faces_dropped_note(sum(dropped))}
        return doc

    @router.post("/api/predict/batch", tags=["predict"])
    async def predict_batch(files: Annotated[list[UploadFile], File(description=f"image files (at most {MAX_FILES})")],
                            threshold: Threshold = None, min_face_size: MinFace = 0, align: Align = None,
                            balanced: Balanced = None, verify_faces: VerifyFaces = None) -> dict[str, Any]:
        """Several images; a bad file gets an ``error`` entry and the others are still processed
        (also the files not started within the time budget: "not processed: time budget spent");
        ``faces_dropped`` and ``note`` where faces were over the per-image or per-request caps;
        ``faces_rejected`` where face verification rejected boxes."""
        if len(files) > MAX_FILES:
            raise HTTPException(413, f"{len(files)} files in one request; at most {MAX_FILES}")
        opts = await options(threshold, min_face_size, align, balanced, verify_faces)
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
        verify_faces: VerifyFaces = None,
    ) -> dict[str, Any]:
        """Faces tracked through a video: ``video`` (size, fps, seconds analysed), ``error`` (damaged
        parts, else null), ``truncated`` (why the analysis stopped before the end, e.g. the server's
        cap on decoded frames, else null), ``faces_dropped`` (faces over the per-frame cap),
        ``faces_rejected`` (boxes face verification rejected, over all frames),
        ``summary`` (per face id: seconds visible, share of time per label) and ``rows`` (per face
        per analysed frame: ``time_s``, ``face_id``, ``box``, ``label``, smoothed ``probs`` and
        unsmoothed ``raw_probs``)."""
        opts = await options(threshold, min_face_size, align, balanced, verify_faces)
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

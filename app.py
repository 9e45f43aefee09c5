"""Gradio Space: facial expression recognition on photos, a live webcam and batches of files.

``python app.py [--dev]`` serves the UI, the gradio_client API and the REST routes on
``GRADIO_SERVER_NAME:GRADIO_SERVER_PORT`` (default 0.0.0.0:7860). The model comes from
``FER_MODEL`` (Hub repo id or folder; ``FER_MODEL_REVISION``) or is the bundled default.
Monitoring (logins, stored timelines) runs when ``FER_JWT_SECRET`` is set, or with ``--dev`` on a
built-in secret for local use; otherwise its routes answer 503 and the public tabs work as ever.
"""

from __future__ import annotations

import os

import gradio as gr
from fastapi import FastAPI

from app_ui.blocks import build_blocks
from app_ui.limits import MAX_REQUEST_BYTES, MAX_UPLOAD_BYTES, BodySizeLimitMiddleware
from app_ui.monitoring_tab import MonitoringContext
from app_ui.rest import build_router
from app_ui.service import FERService
from monitoring.db import make_engine, session_factory, upgrade
from monitoring.routes import build_monitoring_router
from monitoring.settings import MonitoringConfigError, MonitoringSettings

#: Largest body per upload route, bytes (form overhead on top of the file: 64 KiB).
BODY_LIMITS: dict[str, int] = {
    "/api/predict": MAX_UPLOAD_BYTES + 65536,
    "/api/predict/video": MAX_UPLOAD_BYTES + 65536,
    "/api/predict/batch": MAX_REQUEST_BYTES,
    "/gradio_api/upload": MAX_REQUEST_BYTES,
    "/api/sessions": MAX_UPLOAD_BYTES + 65536,
}


def create_app(service: FERService | None = None, dev: bool = False) -> FastAPI:
    """The FastAPI app: REST routes, the monitoring routes and the Gradio UI mounted at ``/``,
    behind the body-size limit (:class:`app_ui.limits.BodySizeLimitMiddleware`, :data:`BODY_LIMITS`).

    Args:
        service: the loaded model service (default: :meth:`FERService.from_env`).
        dev: allow monitoring on the built-in development secret when ``FER_JWT_SECRET`` is unset.
    """
    service = service or FERService.from_env()
    api = FastAPI(title="Facial expression recognition", docs_url="/docs",
                  description="Faces, boxes and FER+ emotion probabilities. The UI is at /.")
    api.include_router(build_router(service))
    context, off_reason = None, ""
    try:
        settings = MonitoringSettings.from_env(dev=dev)
    except MonitoringConfigError as exc:
        off_reason = str(exc)
        api.include_router(build_monitoring_router(service, None, None, disabled_reason=off_reason))
    else:
        engine = make_engine(settings.database_url)
        upgrade(engine)
        context = MonitoringContext(settings, session_factory(engine))
        api.include_router(build_monitoring_router(service, settings, context.factory))
    api.add_middleware(BodySizeLimitMiddleware, limits=BODY_LIMITS)
    blocks = build_blocks(service, context, off_reason)
    return gr.mount_gradio_app(api, blocks, path="/", max_file_size=MAX_UPLOAD_BYTES)


if __name__ == "__main__":
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dev", action="store_true", help="monitoring on a built-in secret (local development only)")
    uvicorn.run(create_app(dev=parser.parse_args().dev), host=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"),
                port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))

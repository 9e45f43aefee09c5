"""The server: the FastAPI app (REST, monitoring, the mounted Gradio UI) and its command line.

``fer-app [--dev]`` (or ``python -m fer_app``, or ``python app.py`` in a checkout) serves the UI,
the gradio_client API and the REST routes on ``GRADIO_SERVER_NAME:GRADIO_SERVER_PORT`` (default
0.0.0.0:7860). The model comes from ``FER_MODEL`` (Hub repo id or folder; ``FER_MODEL_REVISION``)
or is the bundled default.
Monitoring (logins, stored timelines) runs when ``FER_JWT_SECRET`` is set, or with ``--dev`` on a
random per-process secret for local use; otherwise its routes answer 503 and the public tabs work.
"""

from __future__ import annotations

import importlib.util
import os
from typing import TYPE_CHECKING

from fer_app.limits import MAX_REQUEST_BYTES, MAX_UPLOAD_BYTES

if TYPE_CHECKING:
    from fastapi import FastAPI

    from fer_app.service import FERService

#: Top-level modules of the ``app`` extra (``pip install 'fer-core[app]'``) that the server imports. This
#: module imports them only in :func:`create_app` and :func:`main`, so that ``fer-app`` without the extra
#: can say what to install (:func:`missing_app_modules`) instead of failing on an import.
APP_MODULES: tuple[str, ...] = ("gradio", "gradio_client", "fastapi", "uvicorn", "httpx", "pydantic", "sqlalchemy",
                                "alembic", "jwt", "argon2", "limits", "zxcvbn")

#: Largest body per route, bytes, as ``(path regex, bytes)`` (first match wins; form overhead on top
#: of a file: 64 KiB). Every other route gets :data:`fer_app.guard.DEFAULT_BODY_BYTES` (1 MB).
BODY_LIMITS: list[tuple[str, int]] = [
    (r"/api/predict/batch$", MAX_REQUEST_BYTES),
    (r"/api/(predict(/video)?|explain)$", MAX_UPLOAD_BYTES + 65536),
    (r"/gradio_api/upload$", MAX_REQUEST_BYTES),
    (r"/api/sessions/\d+/frames$", MAX_UPLOAD_BYTES + 65536),
    (r"/api/auth/", 16 * 1024),  # a login form
    (r"/gradio_api/(queue/join|stream/)", 8 * 1024 * 1024),  # webcam frames as data URLs
]
#: The upload routes, whose bodies count against the guard's in-flight byte budget (UI events,
#: logins and other JSON never do, so uploads cannot starve them).
BUDGETED_ROUTES: list[str] = [r"/api/predict(/batch|/video)?$", r"/api/explain$", r"/gradio_api/upload$",
                               r"/api/sessions/\d+/frames$"]


def create_app(service: FERService | None = None, dev: bool = False) -> FastAPI:
    """The FastAPI app: REST routes, the monitoring routes and the Gradio UI mounted at ``/``,
    behind the request guard (:class:`fer_app.guard.RequestGuard`, :data:`BODY_LIMITS`) and the
    security headers (:class:`fer_app.headers.SecurityHeaders`).

    Args:
        service: the loaded model service (default: :meth:`FERService.from_env`).
        dev: allow monitoring on a random per-process secret when ``FER_JWT_SECRET`` is unset.
    """
    import gradio as gr
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError

    from fer_app import gradio_fixes
    from fer_app.blocks import build_blocks
    from fer_app.guard import RequestGuard, validation_error
    from fer_app.headers import SecurityHeaders
    from fer_app.monitoring.db import make_engine, session_factory, upgrade
    from fer_app.monitoring.live import LiveRegistry
    from fer_app.monitoring.routes import build_monitoring_router
    from fer_app.monitoring.settings import MonitoringConfigError, MonitoringSettings
    from fer_app.monitoring_tab import MonitoringContext, ServicePredictor
    from fer_app.rest import build_router
    from fer_app.service import FERService

    gradio_fixes.apply()
    service = service or FERService.from_env()
    api = FastAPI(title="Facial expression recognition", docs_url="/docs",
                  description="Faces, boxes and FER+ emotion probabilities. The UI is at /.")
    api.add_exception_handler(RequestValidationError, validation_error)
    api.include_router(build_router(service))
    context, off_reason, predictor = None, "", ServicePredictor(service)
    try:
        settings = MonitoringSettings.from_env(dev=dev)
    except MonitoringConfigError as exc:
        off_reason = str(exc)
        api.include_router(build_monitoring_router(predictor, None, None, disabled_reason=off_reason))
    else:
        engine = make_engine(settings.database_url)
        upgrade(engine)
        context = MonitoringContext(settings, session_factory(engine), LiveRegistry(), predictor)
        api.include_router(build_monitoring_router(predictor, settings, context.factory, live=context.live))
    api.add_middleware(RequestGuard, limits=BODY_LIMITS, budgeted=BUDGETED_ROUTES)
    api.add_middleware(SecurityHeaders)  # added last = outermost: the guard's own answers get them too
    blocks = build_blocks(service, context, off_reason)
    mounted = gr.mount_gradio_app(api, blocks, path="/", max_file_size=MAX_UPLOAD_BYTES)
    gradio_fixes.mark_launched(blocks)  # client-named file paths must be their own uploads
    for route in mounted.routes:  # Gradio's own FastAPI app answers its routes' validation errors too
        if isinstance(getattr(route, "app", None), FastAPI):
            route.app.add_exception_handler(RequestValidationError, validation_error)
    return mounted


def missing_app_modules() -> list[str]:
    """The modules of :data:`APP_MODULES` that are not installed (found without importing them)."""
    return [name for name in APP_MODULES if importlib.util.find_spec(name) is None]


def serve_host(dev: bool, environ: dict[str, str] | None = None) -> str:
    """The address to bind: ``GRADIO_SERVER_NAME`` when set; otherwise 0.0.0.0 (a Space, a
    container), except with ``--dev``, which binds 127.0.0.1 only (a development server is not
    meant to be reached from elsewhere)."""
    environ = os.environ if environ is None else environ
    return environ.get("GRADIO_SERVER_NAME") or ("127.0.0.1" if dev else "0.0.0.0")


def main(argv: list[str] | None = None) -> None:
    """``fer-app [--dev]``: serve the app with uvicorn on ``serve_host(dev)``:``GRADIO_SERVER_PORT``
    (default 7860), at most ``FER_MAX_CONNECTIONS`` (1000) connections at once. Without the ``app`` extra it
    exits with status 1, naming the missing modules and ``pip install 'fer-core[app]'``."""
    import argparse
    import sys

    if missing := missing_app_modules():
        sys.exit(f"fer-app needs the app extra, which is not installed (missing: {', '.join(missing)}): "
                 "pip install 'fer-core[app]'")
    import uvicorn

    parser = argparse.ArgumentParser(prog="fer-app", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dev", action="store_true", help="monitoring on a random per-process secret (local "
                        "development only; binds 127.0.0.1 unless GRADIO_SERVER_NAME is set)")
    dev = parser.parse_args(argv).dev
    host = serve_host(dev)
    if dev:
        print(f"WARNING: --dev: monitoring runs on a random per-process JWT secret (logins end with the "
              f"process); serving on {host}. Never use --dev in production.", file=sys.stderr)
    # at most FER_MAX_CONNECTIONS connections and tasks at once (503 past it): a flood of half-open
    # connections cannot run the process out of file descriptors
    uvicorn.run(create_app(dev=dev), host=host, port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
                server_header=False, limit_concurrency=int(os.environ.get("FER_MAX_CONNECTIONS", "1000")))

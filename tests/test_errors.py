"""Error mapping of the app: a FERError is a 4xx with its reason, anything else a logged 500 (REST) or
``gr.Error`` (Gradio) with a fixed message and no internals, in a real app (fer_app.server.create_app) run in
this process so that a service method can be made to fail."""

from __future__ import annotations

import io
import logging
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from gradio_client import Client, handle_file
from PIL import Image

from fer_app.blocks import INTERNAL_ERROR as UI_INTERNAL_ERROR
from fer_app.rest import INTERNAL_ERROR
from fer_app.service import FERService
from fer_core import InvalidArgumentError, InvalidImageError, ModelLoadError
from tests.conftest import ROOT
from tests.support.launch import free_port

ASTRONAUT = ROOT / "fer_app" / "examples" / "astronaut.jpg"
SECRET = "secret internals: torch.cat(): expected a non-empty list of Tensors at /srv/app/fer_core/detect.py"


def fail(exc: Exception):
    def method(*args, **kwargs):
        raise exc

    return method


@pytest.fixture
def service(recognizer):
    return FERService(recognizer, "test model")


@pytest.fixture
def rest(service, monkeypatch, tmp_path):
    from fer_app import server as app

    monkeypatch.delenv("FER_JWT_SECRET", raising=False)
    monkeypatch.setenv("FER_DATABASE_URL", f"sqlite:///{tmp_path / 'x.db'}")
    with TestClient(app.create_app(service), raise_server_exceptions=False) as client:
        yield client


def jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (120, 110, 100)).save(buf, "JPEG")
    return buf.getvalue()


def test_rest_bug_is_a_logged_500_without_internals(rest, service, monkeypatch, caplog):
    image = {"file": ("a.jpg", jpeg(), "image/jpeg")}
    calls = [
        ("predict", lambda: rest.post("/api/predict", files=image)),
        ("predict_many", lambda: rest.post("/api/predict/batch", files=[("files", image["file"])])),
        ("analyze_video", lambda: rest.post("/api/predict/video", files={"file": ("v.mp4", b"x" * 100, "video/mp4")})),
        ("info", lambda: rest.get("/api/labels")),  # outside _run: the route class maps it
    ]
    for method, call in calls:
        monkeypatch.setattr(service, method, fail(RuntimeError(SECRET)))
        caplog.clear()
        with caplog.at_level(logging.ERROR):
            r = call()
        assert r.status_code == 500, (method, r.text)
        assert r.json() == {"detail": INTERNAL_ERROR} and "secret" not in r.text and "torch" not in r.text
        assert any(rec.exc_info and SECRET in str(rec.exc_info[1]) for rec in caplog.records), method  # logged
        monkeypatch.undo()
    assert rest.post("/api/predict", files=image).status_code == 200  # the server is fine


def test_rest_every_fer_error_is_a_4xx_with_its_reason(rest, service, monkeypatch):
    image = {"file": ("photo.jpg", jpeg(), "image/jpeg")}
    cases = [(InvalidImageError("'/tmp/xyz/upload.jpg'", "truncated or corrupt"), 400,
              "photo.jpg: truncated or corrupt"),
             (InvalidArgumentError("threshold must be between 0 and 1, got 2"), 422, "threshold must be"),
             (ModelLoadError("the model is gone"), 422, "the model is gone")]
    for exc, status, detail in cases:
        monkeypatch.setattr(service, "predict", fail(exc))
        r = rest.post("/api/predict", files=image)
        assert r.status_code == status and detail in r.json()["detail"] and "/tmp/xyz" not in r.text


def test_gradio_cache_is_pruned_by_age(service):
    from fer_app.blocks import build_blocks
    from fer_app.limits import CACHE_MAX_AGE_S, CACHE_SWEEP_EVERY_S

    blocks = build_blocks(service)
    assert blocks.delete_cache == (CACHE_SWEEP_EVERY_S, CACHE_MAX_AGE_S) and CACHE_SWEEP_EVERY_S <= CACHE_MAX_AGE_S


@pytest.fixture(scope="module")
def live(recognizer, tmp_path_factory):
    """The real app (REST + Gradio) served by uvicorn in a thread of this process: its service can be
    monkeypatched. Yields (url, service)."""
    import os

    import uvicorn

    from fer_app import server as app

    os.environ.pop("FER_JWT_SECRET", None)
    service = FERService(recognizer, "test model")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app.create_app(service), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while not server.started:
        assert time.time() < deadline and thread.is_alive(), "the in-process app did not start"
        time.sleep(0.1)
    yield url, service
    server.should_exit = True
    thread.join(15)


def test_gradio_client_sees_reasons_not_internals(live, monkeypatch, tmp_path, caplog):
    url, service = live
    client = Client(url, verbose=False)
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x" * 100)
    calls = [
        ("predict", lambda: client.predict(handle_file(str(ASTRONAUT)), api_name="/predict")),
        ("predict_many", lambda: client.predict([handle_file(str(ASTRONAUT))], api_name="/predict_batch")),
        ("analyze_video", lambda: client.predict(handle_file(str(video)), api_name="/predict_video")),
        ("info", lambda: client.predict(api_name="/labels")),
    ]
    for method, call in calls:
        monkeypatch.setattr(service, method, fail(RuntimeError(SECRET)))
        with caplog.at_level(logging.ERROR), pytest.raises(Exception) as info:
            call()
        message = str(info.value)
        assert UI_INTERNAL_ERROR in message and "secret" not in message and "torch" not in message, (method, message)
        monkeypatch.undo()
    monkeypatch.setattr(service, "predict", fail(InvalidArgumentError("min_face_size must be >= 12, got 3")))
    with pytest.raises(Exception, match="min_face_size must be >= 12"):
        client.predict(handle_file(str(ASTRONAUT)), api_name="/predict")
    monkeypatch.undo()
    assert len(client.predict(handle_file(str(ASTRONAUT)), api_name="/predict")) == 1  # and it recovers
    r = httpx.post(f"{url}/api/predict", files={"file": ("a.jpg", ASTRONAUT.read_bytes(), "image/jpeg")}, timeout=60)
    assert r.status_code == 200 and len(r.json()["faces"]) == 1

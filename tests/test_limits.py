"""Bounded work per request: the limiter, the body-size middleware, file/pixel caps and 503 on a real server."""

from __future__ import annotations

import io
import socket
import threading
import time
from urllib.parse import urlparse

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from fer_app.limits import InferenceLimiter, ServerBusyError
from tests.conftest import ROOT
from tests.support.launch import app_server
from tests.support.video_clips import write_two_face_clip

ASTRONAUT = ROOT / "fer_app" / "examples" / "astronaut.jpg"
MAX_FILES = 3
MAX_MEGAPIXELS = 1
MAX_FACES, MAX_REQUEST_FACES = 2, 3


def test_limiter_runs_slots_queues_then_refuses():
    limiter = InferenceLimiter(slots=1, max_queue=1, timeout_s=5)
    release, entered, results = threading.Event(), threading.Event(), []

    def hold():
        with limiter.slot():
            entered.set()
            release.wait(5)

    def wait_in_line():
        with limiter.slot():
            results.append("ran")

    holder = threading.Thread(target=hold)
    holder.start()
    assert entered.wait(5)
    waiter = threading.Thread(target=wait_in_line)
    waiter.start()
    deadline = time.time() + 5
    while limiter.waiting < 1 and time.time() < deadline:
        time.sleep(0.01)
    assert (limiter.running, limiter.waiting) == (1, 1)
    # the line is full: refused at once (the message of that path), not after waiting for the timeout
    with pytest.raises(ServerBusyError, match=r"busy \(1 requests running, 1 waiting\)") as info, limiter.slot():
        pass
    assert info.value.retry_after_s > 0 and limiter.waiting == 1
    release.set()
    holder.join(5)
    waiter.join(5)
    assert results == ["ran"] and (limiter.running, limiter.waiting) == (0, 0)


def test_limiter_wait_times_out(monkeypatch):
    limiter = InferenceLimiter(slots=1, max_queue=4, timeout_s=0.2)
    waits = []
    real_acquire = limiter._semaphore.acquire

    def acquire(blocking=True, timeout=None):  # the semaphore's own timed wait, recorded
        waits.append((blocking, timeout))
        return real_acquire(blocking, timeout)

    with limiter.slot():
        monkeypatch.setattr(limiter._semaphore, "acquire", acquire)
        with pytest.raises(ServerBusyError, match="no free slot within"), limiter.slot():
            pass
        assert waits == [(False, None), (True, 0.2)] and limiter.waiting == 0  # tried, waited in line, gave up
        monkeypatch.undo()
    with limiter.slot():  # freed slots are reusable
        assert limiter.running == 1


@pytest.fixture(scope="module")
def server(tmp_path_factory, model_dir):
    log = tmp_path_factory.mktemp("limits") / "app.log"
    with app_server(log, FER_MODEL=str(model_dir), FER_MAX_FILES=str(MAX_FILES), FER_MAX_UPLOAD_MB="2",
                    FER_MAX_REQUEST_MB="4", FER_MAX_REQUEST_MEGAPIXELS=str(MAX_MEGAPIXELS),
                    FER_INFERENCE_SLOTS="1", FER_MAX_QUEUE="0", FER_MAX_FACES=str(MAX_FACES),
                    FER_MAX_REQUEST_FACES=str(MAX_REQUEST_FACES)) as url:
        yield url


def jpeg(size=(64, 64)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (120, 110, 100)).save(buf, "JPEG")
    return buf.getvalue()


def post(url: str, **kwargs) -> httpx.Response:
    return httpx.post(url, timeout=60, **kwargs)


def raw_request(server: str, head: str) -> str:
    """Send only a request head (no body) on a raw socket; return the status line the server answers."""
    parsed = urlparse(server)
    with socket.create_connection((parsed.hostname, parsed.port), timeout=10) as sock:
        sock.sendall(head.encode())
        return sock.recv(4096).decode(errors="replace").split("\r\n", 1)[0]


def test_too_many_files_and_too_many_pixels_get_413(server):
    files = [("files", (f"{i}.jpg", jpeg(), "image/jpeg")) for i in range(MAX_FILES + 1)]
    r = post(f"{server}/api/predict/batch", files=files)
    assert r.status_code == 413 and f"at most {MAX_FILES}" in r.json()["detail"]
    # two 800x800 JPEGs: small files (well under the byte limits), 1.28 MP together, over the 1 MP budget
    files = [("files", (f"{i}.jpg", jpeg((800, 800)), "image/jpeg")) for i in range(2)]
    r = post(f"{server}/api/predict/batch", files=files)
    assert r.status_code == 413 and "megapixels" in r.json()["detail"]
    r = httpx.post(f"{server}/api/predict/batch", files=files[:1], timeout=60)
    assert r.status_code == 200 and "faces" in r.json()["results"][0]


def test_oversize_body_is_refused_from_its_header_before_it_is_sent(server):
    host = urlparse(server).netloc
    boundary = "b" * 16
    head = (f"POST /api/predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary={boundary}"
            f"\r\nContent-Length: {10 * 1024 ** 3}\r\n\r\n")
    assert " 413 " in raw_request(server, head)  # a 10 GB declaration, answered without a byte of body
    head = head.replace("/api/predict ", "/api/predict/batch ")
    assert " 413 " in raw_request(server, head)
    # chunked bodies (no Content-Length) are counted as they stream: tests/test_guard.py
    big = np.random.default_rng(0).integers(0, 255, 5 * 1024 * 1024, dtype=np.uint8).tobytes()
    r = post(f"{server}/gradio_api/upload", files={"files": ("big.jpg", big, "image/jpeg")})
    assert r.status_code == 413
    assert httpx.get(f"{server}/health").json()["status"] == "ok"


def test_busy_server_answers_503_with_retry_after_and_health_stays_up(server, ferplus, tmp_path):
    clip = write_two_face_clip(ferplus, tmp_path / "clip.mp4")
    box: dict = {}

    def long_request():  # every frame of the clip: seconds of inference holding the only slot
        box["r"] = httpx.post(f"{server}/api/predict/video", params={"sample_fps": 0},
                              files={"file": ("clip.mp4", clip.read_bytes(), "video/mp4")}, timeout=120)

    worker = threading.Thread(target=long_request)
    worker.start()
    deadline = time.time() + 30
    while httpx.get(f"{server}/health").json()["running"] < 1:
        assert time.time() < deadline, "the long request never started"
        time.sleep(0.05)
    r = post(f"{server}/api/predict", files={"file": ("a.jpg", ASTRONAUT.read_bytes(), "image/jpeg")})
    assert r.status_code == 503 and int(r.headers["Retry-After"]) > 0
    assert "busy (1 requests running, 0 waiting)" in r.json()["detail"]  # refused at once: no line (FER_MAX_QUEUE=0)
    with pytest.raises(Exception, match="busy"):  # the UI's API shares the same slots
        Client(server, verbose=False).predict(handle_file(str(ASTRONAUT)), api_name="/predict")
    health = httpx.get(f"{server}/health", timeout=5)
    assert health.status_code == 200 and health.json()["running"] == 1
    worker.join(120)
    assert box["r"].status_code == 200 and box["r"].json()["summary"]
    r = httpx.post(f"{server}/api/predict", files={"file": ("a.jpg", ASTRONAUT.read_bytes(), "image/jpeg")},
                   timeout=60)
    assert r.status_code == 200 and len(r.json()["faces"]) == 1


def test_faces_over_the_caps_are_counted_not_silently_dropped(server, canvas):
    buf = io.BytesIO()
    canvas[0].save(buf, "PNG")  # six faces
    r = httpx.post(f"{server}/api/predict", files={"file": ("six.png", buf.getvalue(), "image/png")}, timeout=60)
    doc = r.json()
    assert r.status_code == 200 and len(doc["faces"]) == MAX_FACES and doc["faces_dropped"] == 6 - MAX_FACES
    assert "FER_MAX_FACES" in doc["note"]
    files = [("files", (f"{i}.png", buf.getvalue(), "image/png")) for i in range(2)]
    r = httpx.post(f"{server}/api/predict/batch", files=files, timeout=60)
    results = r.json()["results"]
    assert r.status_code == 200 and sum(len(x["faces"]) for x in results) == MAX_REQUEST_FACES
    assert sum(x["faces_dropped"] for x in results) == 12 - MAX_REQUEST_FACES and all("note" in x for x in results)
    r = httpx.post(f"{server}/api/predict", files={"file": ("a.jpg", ASTRONAUT.read_bytes(), "image/jpeg")},
                   timeout=60)
    assert "faces_dropped" not in r.json() and len(r.json()["faces"]) == 1  # under the cap: nothing to say

"""The request guard on a real uvicorn server, attacked with raw sockets (an HTTP client would refuse
to send most of these requests): mixed framing, lying lengths, oversize chunked bodies, stalled
bodies and the in-flight byte budget, then the real app's own Gradio routes."""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from fer_app.guard import ByteBudget, RequestGuard
from fer_app.headers import SecurityHeaders
from tests.support.launch import app_server, free_port

LIMIT = 64 * 1024
SECRET = "guard-test-Secret-0123456789-abcdefghijklmnop"
ROUTES = ["/gradio_api/queue/join", "/gradio_api/call/predict", "/gradio_api/component_server", "/gradio_api/upload",
          "/api/predict", "/api/predict/batch", "/api/subjects", "/api/users", "/api/auth/token"]


async def echo(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse({"bytes": len(body)})


@contextmanager
def guarded_server(**guard: object) -> Iterator[tuple[int, RequestGuard]]:
    """A uvicorn server in a thread: an echo app (answers the body's length) behind the guard."""
    inner = Starlette(routes=[Route("/echo", echo, methods=["POST", "GET"]),
                              Route("/big", echo, methods=["POST"]), Route("/event", echo, methods=["POST"])])
    app = RequestGuard(inner, limits=[(r"/(big|event)$", 4 * LIMIT)], default_limit=LIMIT, budgeted=[r"/big$"],
                       **guard)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(SecurityHeaders(app), host="127.0.0.1", port=port, log_level="error",
                                           server_header=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started:
        assert time.time() < deadline, "server did not start"
        time.sleep(0.05)
    try:
        yield port, app
    finally:
        server.should_exit = True
        thread.join(10)


def raw(port: int, head: str, body_parts: list[bytes] = (), pause_s: float = 0.0, timeout: float = 10.0) -> tuple[
        int, bytes, int]:
    """Send ``head`` (CRLF added) and the body pieces on a raw socket, until the server answers and closes;
    returns (status, answer, how many pieces went out)."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n")
        try:
            for part in body_parts:
                if pause_s and select.select([sock], [], [], 0)[0]:
                    break  # the server answered (or closed) before the body was complete
                sock.sendall(part)
                sent += 1
                if pause_s:
                    time.sleep(pause_s)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed while we were still sending
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1") else 0
    return status, answer, sent


def chunked(data: bytes, size: int = 16384) -> list[bytes]:
    parts = [f"{len(data[i:i + size]):x}\r\n".encode() + data[i:i + size] + b"\r\n"
             for i in range(0, len(data), size)]
    return [*parts, b"0\r\n\r\n"]


def test_honest_bodies_pass_and_get_security_headers():
    with guarded_server() as (port, _):
        r = httpx.post(f"http://127.0.0.1:{port}/echo", content=b"x" * 1000)
        assert r.status_code == 200 and r.json() == {"bytes": 1000}
        assert r.headers["x-content-type-options"] == "nosniff" and "server" not in r.headers
        assert "frame-ancestors" in r.headers["content-security-policy"]
        status, answer, _ = raw(port, "POST /echo HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\nConnection: close\n",
                                chunked(b"y" * 5000))
        assert status == 200 and b'{"bytes":5000}' in answer
        assert httpx.post(f"http://127.0.0.1:{port}/big", content=b"z" * 3 * LIMIT).json() == {"bytes": 3 * LIMIT}


def test_content_length_with_transfer_encoding_is_400():
    with guarded_server() as (port, app):
        big = b"a" * (20 * LIMIT)
        status, answer, _ = raw(port, "POST /echo HTTP/1.1\nHost: x\nContent-Length: 100\n"
                                      "Transfer-Encoding: chunked\n", chunked(big))
        assert status == 400 and b"RFC 9112" in answer
        status, _, _ = raw(port, "POST /echo HTTP/1.1\nHost: x\nContent-Length: 5\nContent-Length: 500000\n",
                           [b"hello"])
        assert status == 400
        assert app.budget.held == 0


def test_bodies_are_counted_whatever_the_headers_say():
    with guarded_server() as (port, app):
        status, answer, _ = raw(port, "POST /echo HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n",
                                chunked(b"b" * (50 * LIMIT)))
        assert status == 413 and b"larger than 64 KB" in answer
        status, _, _ = raw(port, f"POST /echo HTTP/1.1\nHost: x\nContent-Length: {LIMIT + 1}\n", [b"c" * (LIMIT + 1)])
        assert status == 413  # refused from the header
        status, _, _ = raw(port, "POST /echo HTTP/1.1\nHost: x\nContent-Length: 12abc\n", [b"c"])
        assert status == 400
        r = httpx.post(f"http://127.0.0.1:{port}/echo", content=b"ok")  # still serving
        assert r.status_code == 200 and app.budget.held == 0


def test_stalled_and_slow_bodies_get_408():
    with guarded_server(idle_s=0.5, grace_s=2.0, min_rate=1000) as (port, app):
        status, _, _ = raw(port, "POST /big HTTP/1.1\nHost: x\nContent-Length: 200000\n", [b"d" * 1024])
        assert status == 408  # promised 200 KB, sent 1 KB, then nothing: the idle timeout answers
        # a byte every 0.3 s never pauses 0.5 s, but averages 3 bytes/s: cut once the 2 s grace and
        # the bytes' allowance (n / 1000 s) are spent, with most of the body still to come
        status, _, sent = raw(port, "POST /echo HTTP/1.1\nHost: x\nContent-Length: 100\n", [b"e"] * 100,
                              pause_s=0.3)
        assert status == 408 and 1 < sent < 100
        # a slow but steady body (2 KB every 0.3 s, ~6.7 KB/s) gets through, past the grace
        status, _, sent = raw(port, "POST /big HTTP/1.1\nHost: x\nContent-Length: 30720\n", [b"f" * 2048] * 15,
                              pause_s=0.3)
        assert status == 200 and sent == 15
        assert app.budget.held == 0


def test_bytes_held_at_once_are_budgeted():
    """Bytes of large-body routes are reserved as they arrive (a promise alone holds nothing) and
    small-body routes stay outside the budget, so uploads can never starve UI events or logins."""
    with guarded_server(budget=ByteBudget(8 * LIMIT), idle_s=5) as (port, app):
        socks = []
        for _ in range(2):  # two uploads, each promising 4 x 64 KB and sending 3.5 x 64 KB so far
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(f"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: {4 * LIMIT}\r\n\r\n".encode()
                      + b"f" * int(3.5 * LIMIT))
            socks.append(s)
        deadline = time.time() + 5
        while app.budget.held < 7 * LIMIT and time.time() < deadline:
            time.sleep(0.05)
        assert app.budget.held == 7 * LIMIT
        promise = socket.create_connection(("127.0.0.1", port), timeout=10)  # promises 256 KB, sends nothing
        promise.sendall(f"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: {4 * LIMIT}\r\n\r\n".encode())
        time.sleep(0.2)
        assert app.budget.held == 7 * LIMIT
        status, answer, _ = raw(port, f"POST /big HTTP/1.1\nHost: x\nContent-Length: {2 * LIMIT}\n",
                                [b"g" * 2 * LIMIT])
        assert status == 503 and b"retry-after: 5" in answer.lower()  # 1 x 64 KB was left
        status, _, _ = raw(port, "POST /big HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n",
                           chunked(b"h" * 2 * LIMIT))
        assert status == 503
        # routes outside the budgeted patterns (JSON, UI events, even large ones) work while uploads hold it
        assert httpx.post(f"http://127.0.0.1:{port}/echo", content=b"x" * (LIMIT - 1)).status_code == 200
        assert httpx.post(f"http://127.0.0.1:{port}/event", content=b"x" * 3 * LIMIT).status_code == 200
        holders = []
        for s in socks:
            s.sendall(b"f" * (4 * LIMIT - int(3.5 * LIMIT)))
            holders.append(s.recv(4096))
            s.close()
        promise.close()
        assert all(h.startswith(b"HTTP/1.1 200") for h in holders)
        deadline = time.time() + 5
        while app.budget.held and time.time() < deadline:
            time.sleep(0.05)
        assert app.budget.held == 0
        assert httpx.post(f"http://127.0.0.1:{port}/big", content=b"i" * 2 * LIMIT).status_code == 200


def test_requests_without_a_body_keep_their_connection():
    with guarded_server() as (port, _):
        with httpx.Client() as client:
            r = client.get(f"http://127.0.0.1:{port}/echo")
            assert r.status_code == 200 and r.headers.get("connection") != "close"


@pytest.fixture(scope="module")
def abuse_server(tmp_path_factory, model_dir):
    """The real app (monitoring on, SQLite) on a free port; ``.port`` is its port."""
    folder = tmp_path_factory.mktemp("abuse")
    with app_server(folder / "app.log", FER_MODEL=str(model_dir), FER_JWT_SECRET=SECRET,
                    FER_DATABASE_URL=f"sqlite:///{folder / 'fer.db'}", GRADIO_TEMP_DIR=str(folder / "gradio")) as url:
        url.port, url.temp = int(url.rsplit(":", 1)[1]), folder / "gradio"
        url.files_at_start = {p for p in url.temp.rglob("*") if p.is_file()}  # the cached example photo
        yield url


@pytest.mark.parametrize("path", ROUTES)
def test_every_route_of_the_app_is_bounded(abuse_server, path):
    """300 MB of chunked junk to each route: cut at its limit, memory kept."""
    junk = b"[" + b"0," * (4 * 1024 * 1024)  # 8 MB pieces...
    parts = chunked(junk, 1 << 20)[:-1]

    body = []  # ...up to ~300 MB, sent only as long as the server reads
    if "upload" in path or "predict" in path:  # a well-formed start: the parser streams the file to disk
        body += chunked(b'--xyz\r\nContent-Disposition: form-data; name="files"; filename="a.jpg"\r\n'
                        b"Content-Type: image/jpeg\r\n\r\n")[:-1]
    body += parts * 38
    kind = ("multipart/form-data; boundary=xyz" if "upload" in path or "predict" in path else
            "application/x-www-form-urlencoded" if path.endswith("token") else "application/json")
    status, answer, sent = raw(abuse_server.port, f"POST {path} HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n"
                               f"Content-Type: {kind}\n", body, timeout=30)
    assert status == 413, answer[:300]
    assert sent < len(body) // 2  # cut at its limit: most of the junk never went out
    status, answer, _ = raw(abuse_server.port, f"POST {path} HTTP/1.1\nHost: x\nContent-Length: 100\n"
                            "Transfer-Encoding: chunked\n", chunked(b"x" * 1000))
    assert status == 400
    assert httpx.get(f"{abuse_server}/health", timeout=5).status_code == 200
    leftovers = {p for p in abuse_server.temp.rglob("*") if p.is_file()} - abuse_server.files_at_start
    assert leftovers == set()  # no partial upload stays on disk


def test_aborted_uploads_leave_no_partial_file(abuse_server):
    """A client that promises 15 MB, sends 5 MB of a file and hangs up (or stalls): nothing stays."""
    start = (b'--xyz\r\nContent-Disposition: form-data; name="files"; filename="a.jpg"\r\n'
             b"Content-Type: image/jpeg\r\n\r\n")
    for stall in (False, True):
        with socket.create_connection(("127.0.0.1", abuse_server.port), timeout=30) as sock:
            sock.sendall(b"POST /gradio_api/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 15000000\r\n"
                         b"Content-Type: multipart/form-data; boundary=xyz\r\n\r\n" + start + b"\xff" * 5_000_000)
            if stall:  # the guard's idle timeout (10 s) answers 408 and the app sees a disconnect
                assert sock.recv(4096).startswith(b"HTTP/1.1 408")
        deadline = time.time() + 15
        while time.time() < deadline:
            leftovers = {p for p in abuse_server.temp.rglob("*") if p.is_file()} - abuse_server.files_at_start
            if not leftovers:
                break
            time.sleep(0.5)
        assert leftovers == set()
    assert httpx.get(f"{abuse_server}/health", timeout=5).status_code == 200


def test_memory_is_handed_back_after_large_requests():
    """glibc's malloc_trim is found and run (the guard calls it after bodies of 4 MB and more, the
    service after every batch and video): a fragmented heap, whose freed blocks free() alone keeps
    (a few live blocks pin it), goes back to the OS."""
    import ctypes

    import psutil

    from fer_app.memory import trim

    process = psutil.Process()
    blocks = [ctypes.create_string_buffer(64 * 1024) for _ in range(4000)]  # 256 MB in small heap blocks
    pinned = [*blocks[::50], blocks[-1]]  # 2 % stay alive, spread over the heap
    peak = process.memory_info().rss
    del blocks
    assert process.memory_info().rss > peak - 50 * 1024**2  # free() alone returns little
    assert trim() is True
    assert process.memory_info().rss < peak - 150 * 1024**2
    del pinned


def queue_call(url: str, api_name: str, data: list) -> dict:
    """Call a Gradio event through its queue as a browser would (``queue/join`` + ``queue/data``)."""
    import uuid

    config = httpx.get(f"{url}/config").json()
    event = next(d for d in config["dependencies"] if d.get("api_name") == api_name)
    session_hash = uuid.uuid4().hex[:11]
    joined = httpx.post(f"{url}/gradio_api/queue/join", json={"fn_index": event["id"], "session_hash": session_hash,
                                                              "trigger_id": None, "event_data": None, "data": data})
    assert joined.status_code == 200, joined.text
    with httpx.stream("GET", f"{url}/gradio_api/queue/data", params={"session_hash": session_hash},
                      timeout=60) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:") and '"process_completed"' in line:
                return json.loads(line[5:])
    raise AssertionError("no answer")


def test_a_client_cannot_name_a_server_file(abuse_server, tmp_path):
    """A file input naming a server path (not an upload) is refused: nothing is copied or served."""
    secret = tmp_path / "secret.txt"
    secret.write_text("the server's own secret file\n")
    for path in (str(secret), "/etc/hostname", "/proc/self/environ"):
        answer = queue_call(abuse_server, "predict", [{"path": path, "meta": {"_type": "gradio.FileData"}}, 0.9, 0,
                                                       True, False])
        assert answer["success"] is False, answer
    copies = [p for p in abuse_server.temp.rglob("*") if p.is_file() and p.name in ("secret.txt", "hostname",
                                                                                        "environ")]
    assert copies == []


def test_errors_name_no_server_path_and_head_works(abuse_server):
    r = httpx.post(f"{abuse_server}/api/predict/video", files={"file": ("junk.webm", b"\x1a\x45\xdf\xa3" + bytes(200))})
    assert r.status_code == 400 and "junk.webm" in r.text and "/tmp" not in r.text and str(abuse_server.temp) \
        not in r.text
    assert httpx.head(f"{abuse_server}/health").status_code == 200


@pytest.mark.parametrize("name", ["..", ""])
def test_refused_upload_names_leave_nothing(abuse_server, name):
    r = httpx.post(f"{abuse_server}/gradio_api/upload", files={"files": (name, b"\xff" * 2_000_000)})
    assert r.status_code == 400, r.text
    leftovers = {p for p in abuse_server.temp.rglob("*") if p.is_file()} - abuse_server.files_at_start
    assert leftovers == set()


def test_a_folder_is_no_file_and_refusals_name_no_path(abuse_server):
    """Naming a folder inside the upload folder (which would stop Gradio's cache sweep for good) is
    refused like any other server path, and the refusal names no server path."""
    uploaded = httpx.post(f"{abuse_server}/gradio_api/upload", files={"files": ("x.txt", b"x")}).json()[0]
    for path in (str(Path(uploaded).parent), str(abuse_server.temp), "app.py", ""):
        answer = queue_call(abuse_server, "predict_batch", [[{"path": path, "meta": {"_type": "gradio.FileData"}}],
                                                            0.9, 0, True, False, True])
        text = json.dumps(answer)
        assert answer["success"] is False and "/work" not in text and str(abuse_server.temp) not in text, text


def test_a_body_cut_before_its_closing_boundary_leaves_no_file(abuse_server):
    body = (b'--BB\r\nContent-Disposition: form-data; name="files"; filename="o.bin"\r\n\r\n'
            + b"O" * 3_000_000)  # no closing boundary: Gradio answers 200 [] and forgot the file
    status, _, _ = raw(abuse_server.port, "POST /gradio_api/upload HTTP/1.1\nHost: x\nContent-Type: "
                       f"multipart/form-data; boundary=BB\nContent-Length: {len(body)}\n", [body])
    assert status in (200, 400)
    leftovers = {p for p in abuse_server.temp.rglob("*") if p.is_file()} - abuse_server.files_at_start
    assert not [p for p in leftovers if p.stat().st_size >= 3_000_000]

"""The Monitoring tab in a real browser: log in (cookie), create a subject, run a session on a fake
camera showing a real face, stop it, see its stored timeline (plot + CSV link), erase the subject.
Then the privacy audit: no image file in any temp or cache folder of the server, no blob and no
byte of the erased label in the database files."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import httpx
from PIL import Image
from sqlalchemy import select

from fer_app.monitoring.db import make_engine, session_factory
from fer_app.monitoring.models import Aggregate, MonitoringSession
from tests.conftest import ROOT
from tests.support.browser import write_y4m
from tests.support.launch import app_server
from tests.test_browser import ARTIFACTS, ASTRONAUT, open_page, playwright  # noqa: F401 (fixture)

PASSWORD = "browser test password"
LABEL = "bed-7-zq81"
#: File signatures of the image formats a browser or Gradio could write.
IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"RIFF", b"GIF8", b"BM", b"II*\x00", b"MM\x00*")


def image_files(folder: Path, allowed: set[str]) -> list[Path]:
    """Files under ``folder`` that start like an image, except copies (by hash) of ``allowed``."""
    found = []
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if data.startswith(IMAGE_MAGIC) and hashlib.sha256(data).hexdigest() not in allowed:
                found.append(path)
    return found


def test_monitoring_tab_session_history_erasure_and_no_image_on_disk(playwright, tmp_path,  # noqa: F811
                                                                      model_dir):
    db_path = tmp_path / "db" / "fer.db"
    url_db = f"sqlite:///{db_path}"
    server_tmp = tmp_path / "server-tmp"  # the server's temp dir: Gradio's cache, downloads, everything
    server_tmp.mkdir()
    env = {"FER_MODEL": str(model_dir), "FER_JWT_SECRET": "browser-secret-Kq7Vw2Lp9Zx4Rt8Nm3Bc6Hd1Fg5Js0",
           "FER_DATABASE_URL": url_db, "FER_ADMIN_PASSWORD": PASSWORD, "TMPDIR": str(server_tmp),
           "GRADIO_TEMP_DIR": str(server_tmp / "gradio")}
    subprocess.run([sys.executable, "-m", "fer_app.monitoring", "create-admin", "--username", "nurse"], cwd=ROOT,
                   env={**os.environ, **env}, check=True, capture_output=True, timeout=120)
    clip = write_y4m(Image.open(ASTRONAUT), tmp_path / "face.y4m")
    flags = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
             f"--use-file-for-fake-video-capture={clip}"]
    with app_server(tmp_path / "app.log", **env) as server:
        browser, page = open_page(playwright, server, flags, permissions=["camera"])
        try:
            page.get_by_role("tab", name="Monitoring").click()
            page.locator("#mon-user input, #mon-user textarea").first.fill("nurse")
            page.locator("#mon-password input").fill(PASSWORD)
            page.locator("#mon-login").click()
            page.wait_for_function("document.querySelector('#mon-status').innerText.includes('Logged in as')",
                                   timeout=30_000)
            cookies = page.context.cookies()
            assert [(c["name"], c["httpOnly"], c["sameSite"]) for c in cookies] == [("fer_session", True, "Strict")]
            assert page.evaluate("document.cookie") == ""  # page scripts cannot read the token
            page.locator("#mon-new-label input, #mon-new-label textarea").first.fill(LABEL)
            page.locator("#mon-create").click()
            page.wait_for_function(f"document.querySelector('#mon-subject input').value == '{LABEL}'",
                                   timeout=30_000)
            page.locator("#mon-start").click()
            page.wait_for_function("document.querySelector('#mon-live-status').innerText.includes('running')",
                                   timeout=30_000)
            page.locator("#mon-cam button:visible", has_text="Click to Access Webcam").click()
            page.locator("#mon-cam button:visible", has_text="Record").click()
            page.wait_for_selector("#mon-live img", timeout=60_000)
            assert page.locator("#mon-live img").get_attribute("src").startswith("data:image/jpeg;base64,")
            page.wait_for_selector("#mon-live-plot img, #mon-live-plot svg", timeout=60_000)  # the session so far
            page.wait_for_function("/ [3-9]\\d* s\\.|\\d\\d+ s\\./.test(document.querySelector('#mon-live-status')"
                                   ".innerText)", timeout=90_000)  # at least 3 s of frames
            page.locator("#mon-start").click()  # a second start while one runs is refused, not leaked
            page.get_by_text("is still running: stop it first").first.wait_for(timeout=30_000)
            page.locator("#mon-stop").click()
            page.wait_for_function("document.querySelector('#mon-live-status').innerText.includes('ended')",
                                   timeout=30_000)
            page.locator("#mon-session input").click()
            page.get_by_role("option").first.click()
            page.locator("#mon-show").click()
            page.wait_for_selector("#mon-plot img, #mon-plot svg", timeout=60_000)
            page.wait_for_function("document.querySelector('#mon-csv').innerText.includes('.csv')", timeout=30_000)
            href = page.locator("#mon-csv a").get_attribute("href")
            csv_text = page.evaluate(f"fetch('{href}').then(r => r.text())")  # with the page's cookie
            assert csv_text.startswith("start_s,face_id") and len(csv_text.splitlines()) >= 2
            assert httpx.get(f"{server}{href}").status_code == 401  # the link alone, without the login
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "monitoring_tab.png"), full_page=True)
            engine = make_engine(url_db)
            with session_factory(engine)() as db:
                rows = db.scalars(select(Aggregate)).all()
                labels = db.scalars(select(MonitoringSession.labels)).one()
            engine.dispose()
            assert labels == ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"]
            assert len(rows) >= 2 and {r.face_id for r in rows} == {1}  # the astronaut, tracked as one face
            assert all(len(r.probs) == len(labels) and abs(sum(r.probs) - 1) < 1e-4 for r in rows)
            assert csv_text.splitlines()[0] == ",".join(["start_s", "face_id", "n_frames", "faces", "label", *labels])
            # erase from the tab (admins, after a confirmation)
            page.on("dialog", lambda dialog: dialog.accept())
            page.locator("#mon-erase").click()
            page.wait_for_function("document.querySelector('#mon-status').innerText.includes('erased')",
                                   timeout=30_000)
        finally:
            browser.close()
        assert httpx.get(f"{server}/health").status_code == 200
    examples = {hashlib.sha256(p.read_bytes()).hexdigest() for p in (ROOT / "fer_app" / "examples").glob("*")}
    assert image_files(server_tmp, examples) == []  # no webcam frame, annotated frame or plot on disk
    assert list(server_tmp.rglob("*.csv")) == []  # no export copy either
    engine = make_engine(url_db)
    with session_factory(engine)() as db:
        assert db.scalars(select(Aggregate)).all() == []
    engine.dispose()
    stored = b"".join(p.read_bytes() for p in db_path.parent.iterdir() if p.is_file())
    assert LABEL.encode() not in stored  # erased from the file, the WAL and free pages alike
    assert not any(magic in stored for magic in (b"\xff\xd8\xff\xe0", b"\x89PNG\r\n"))  # no image blob

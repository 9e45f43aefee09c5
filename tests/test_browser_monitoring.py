"""The Monitoring tab in a real browser: log in, create a subject, run a session on a fake camera
showing a real face, stop it, and see its stored timeline (plot + CSV); the rows are in the database."""

from __future__ import annotations

import os
import subprocess
import sys

from PIL import Image
from sqlalchemy import select

from app_ui.launch import app_server
from monitoring.db import make_engine, session_factory
from monitoring.models import Aggregate
from tests.browser import write_y4m
from tests.conftest import ROOT
from tests.test_browser import ARTIFACTS, ASTRONAUT, open_page, playwright  # noqa: F401 (fixture)

PASSWORD = "browser test password"


def test_monitoring_tab_session_and_history(playwright, tmp_path, model_dir):  # noqa: F811 (fixture)
    url_db = f"sqlite:///{tmp_path / 'fer.db'}"
    env = {"FER_MODEL": str(model_dir), "FER_JWT_SECRET": "browser-secret-" + "q" * 40, "FER_DATABASE_URL": url_db,
           "FER_ADMIN_PASSWORD": PASSWORD}
    subprocess.run([sys.executable, "-m", "monitoring", "create-admin", "--username", "nurse"], cwd=ROOT,
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
            page.locator("#mon-new-label input, #mon-new-label textarea").first.fill("bed 7")
            page.locator("#mon-create").click()
            page.wait_for_function("document.querySelector('#mon-subject input').value == 'bed 7'", timeout=30_000)
            page.locator("#mon-start").click()
            page.wait_for_function("document.querySelector('#mon-live-status').innerText.includes('running')",
                                   timeout=30_000)
            page.locator("#mon-cam button:visible", has_text="Click to Access Webcam").click()
            page.locator("#mon-cam button:visible", has_text="Record").click()
            page.wait_for_selector("#mon-live img", timeout=60_000)
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
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "monitoring_tab.png"), full_page=True)
        finally:
            browser.close()
    engine = make_engine(url_db)
    with session_factory(engine)() as db:
        rows = db.scalars(select(Aggregate)).all()
    engine.dispose()
    assert len(rows) >= 2 and {r.face_id for r in rows} == {1}  # the astronaut, tracked as one face
    assert all(abs(sum(getattr(r, f"p_{k}") for k in ("neutral", "happiness", "surprise", "sadness", "anger",
                                                        "disgust", "fear", "contempt")) - 1) < 1e-4 for r in rows)

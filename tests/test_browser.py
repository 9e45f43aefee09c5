"""The Space in a real browser: Debian Chromium driven by Playwright (screenshots in test-artifacts/)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import ROOT
from tests.support.browser import CHROMIUM, FLAGS, write_y4m
from tests.support.launch import app_server
from tests.support.video_clips import write_two_face_clip

ARTIFACTS = ROOT / "test-artifacts"
ASTRONAUT = ROOT / "fer_app" / "examples" / "astronaut.jpg"


@pytest.fixture(scope="module")
def server(tmp_path_factory, model_dir):
    with app_server(tmp_path_factory.mktemp("app") / "app.log", FER_MODEL=str(model_dir)) as url:
        yield url


@pytest.fixture(scope="module")
def playwright():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: `make test` installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p
    ARTIFACTS.mkdir(exist_ok=True)


def open_page(playwright, url, extra_flags=(), **context):
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[*FLAGS, *extra_flags])
    page = browser.new_context(viewport={"width": 1280, "height": 1300}, **context).new_page()
    page.goto(url)
    return browser, page


@pytest.mark.parametrize("which, n_faces", [("astronaut", 1), ("canvas", 6)])
def test_upload_shows_boxes_bars_and_table(playwright, server, canvas, tmp_path, which, n_faces):
    path = ASTRONAUT
    if which == "canvas":
        path = tmp_path / "six_faces.png"
        canvas[0].save(path)
    browser, page = open_page(playwright, server)
    try:
        page.locator("input[type=file]").first.set_input_files(str(path))
        page.wait_for_selector("#annotated img", timeout=60_000)
        page.wait_for_function(f"document.querySelectorAll('#faces-table [role=row]').length == {n_faces + 1}",
                               timeout=60_000)
        assert f"{n_faces} face" in page.locator("#notice").inner_text()
        assert page.locator("#bars img, #bars svg").count() >= 1  # the per-face bar panels
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"image_tab_{which}.png"), full_page=True)
    finally:
        browser.close()


def test_no_face_notice(playwright, server, tmp_path):
    blank = tmp_path / "blank.png"
    Image.new("RGB", (400, 300), (200, 180, 160)).save(blank)
    browser, page = open_page(playwright, server)
    try:
        page.locator("input[type=file]").first.set_input_files(str(blank))
        page.wait_for_function("document.querySelector('#notice').innerText.includes('No face')", timeout=60_000)
    finally:
        browser.close()


def test_live_tab_with_fake_camera(playwright, server, tmp_path):
    clip = write_y4m(Image.open(ASTRONAUT), tmp_path / "face.y4m")
    flags = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
             f"--use-file-for-fake-video-capture={clip}"]
    browser, page = open_page(playwright, server, flags, permissions=["camera"])
    try:
        page.get_by_role("tab", name="Live webcam").click()
        page.get_by_role("button", name="Click to Access Webcam").click()
        page.locator("button:visible", has_text="Record").click()
        page.wait_for_selector("#live-out img", timeout=60_000)
        page.wait_for_function("document.querySelectorAll('#live-bars .face-bars').length == 1", timeout=60_000)
        page.wait_for_function("document.querySelector('#live-status').innerText.includes('frames/s shown')",
                               timeout=60_000)
        assert "ms/frame" in page.locator("#live-status").inner_text()
        page.wait_for_selector("#live-timeline img, #live-timeline svg", timeout=60_000)  # the session timeline
        page.get_by_role("button", name="Download this session (CSV)").click()
        page.wait_for_function("document.querySelector('#live-csv').innerText.includes('.csv')", timeout=30_000)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "live_tab.png"), full_page=True)
    finally:
        browser.close()


def test_batch_tab_gallery_downloads_and_bad_file(playwright, server, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"not an image")
    browser, page = open_page(playwright, server)
    try:
        page.get_by_role("tab", name="Batch").click()
        inputs = page.locator("input[type=file]")
        inputs.nth(inputs.count() - 1).set_input_files([str(ASTRONAUT), str(bad)])
        page.get_by_role("button", name="Analyse all").click()
        page.wait_for_function("document.querySelector('#batch-notice').innerText.includes('1 of 2 files')",
                               timeout=60_000)
        notice = page.locator("#batch-notice").inner_text()
        assert "notes.png" in notice and "not a recognised image" in notice
        assert page.locator("#gallery img").count() >= 1
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "batch_tab.png"), full_page=True)
        page.wait_for_function("document.querySelector('#downloads').innerText.includes('.csv')", timeout=30_000)
        text = page.locator("#downloads").inner_text()  # Gradio shows stem and extension apart
        assert "faces" in text and ".json" in text
    finally:
        browser.close()


def test_video_tab_shows_tracked_video_timeline_and_summary(playwright, server, ferplus, tmp_path):
    clip = write_two_face_clip(ferplus, tmp_path / "two_faces.mp4")
    browser, page = open_page(playwright, server)
    try:
        page.get_by_role("tab", name="Video").click()
        page.locator("#video-in input[type=file]").set_input_files(str(clip))
        page.get_by_role("button", name="Analyse video").click()
        page.wait_for_selector("#video-timeline img", timeout=120_000)
        page.wait_for_function("document.querySelectorAll('#video-summary [role=row]').length == 3", timeout=30_000)
        assert "2 faces" in page.locator("#video-notice").inner_text()
        page.wait_for_selector("#video-out video", timeout=30_000)
        page.wait_for_function("document.querySelector('#video-downloads').innerText.includes('.csv')",
                               timeout=30_000)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "video_tab.png"), full_page=True)
    finally:
        browser.close()

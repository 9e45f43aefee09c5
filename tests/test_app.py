"""The real app server: gradio_client endpoints, REST routes, bad uploads, Hub-pulled model."""

from __future__ import annotations

import base64
import io
import json
import math
import os
import shutil
import time

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from tests.conftest import ROOT
from tests.support.false_box import FACE_BOX, MIN_FACE_SIZE, RIBBON_BOX, THRESHOLD, busy_photo, near
from tests.support.launch import app_server
from tests.support.video_clips import dense_clip, write_two_face_clip

ASTRONAUT = ROOT / "fer_app" / "examples" / "astronaut.jpg"
UPLOAD_LIMIT_MB = 2
VIDEO_LIMIT_S = 2.5


@pytest.fixture(scope="module")
def server(tmp_path_factory, model_dir):
    log = tmp_path_factory.mktemp("app") / "app.log"
    with app_server(log, FER_MODEL=str(model_dir), FER_MAX_UPLOAD_MB=str(UPLOAD_LIMIT_MB),
                    FER_MAX_VIDEO_SECONDS=str(VIDEO_LIMIT_S)) as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    return Client(server, verbose=False)


@pytest.fixture(scope="module")
def canvas_file(canvas, tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "six_faces.png"
    canvas[0].save(path)
    return path


def check_faces(faces, n):
    assert len(faces) == n
    for f in faces:
        assert math.isclose(sum(f["probs"].values()), 1.0, abs_tol=1e-3)
        assert f["label"] == max(f["probs"], key=f["probs"].get)
        assert len(f["box"]) == 4 and f["box"][2] > f["box"][0]


def test_client_api_lists_named_endpoints(client):
    api = client.view_api(print_info=False, return_format="dict")
    named = api["named_endpoints"]
    assert {"/predict", "/predict_batch", "/predict_video", "/labels"} <= set(named)
    assert [p["parameter_name"] for p in named["/predict"]["parameters"]] == [
        "image", "detection_threshold", "min_face_size", "align", "balanced", "verify_faces"]
    assert [p["parameter_name"] for p in named["/predict_video"]["parameters"]] == [
        "video", "sample_fps", "max_seconds", "smoothing", "detection_threshold", "min_face_size", "align",
        "balanced", "verify_faces"]


def test_predict_astronaut_and_canvas(client, canvas_file):
    check_faces(client.predict(handle_file(str(ASTRONAUT)), api_name="/predict"), 1)
    check_faces(client.predict(handle_file(str(canvas_file)), 0.9, 0, True, api_name="/predict"), 6)


def test_labels_endpoint(client, model_dir):
    info = client.predict(api_name="/labels")
    assert info["labels"][:2] == ["neutral", "happiness"] and len(info["labels"]) == 8
    assert info["model"] == str(model_dir)


def test_predict_batch_keeps_going_past_a_bad_file(client, canvas_file, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    results = client.predict([handle_file(str(ASTRONAUT)), handle_file(str(bad)), handle_file(str(canvas_file))],
                             api_name="/predict_batch")
    assert [r["file"] for r in results] == ["astronaut.jpg", "notes.jpg", "six_faces.png"]
    assert results[1]["error"] == "not a recognised image file"  # the reason alone; "file" names it
    check_faces(results[0]["faces"], 1)
    check_faces(results[2]["faces"], 6)


def test_client_bad_image_is_a_clear_error_then_recovers(client, tmp_path):
    bad = tmp_path / "broken.png"
    data = io.BytesIO()
    Image.new("RGB", (300, 300), (10, 200, 30)).save(data, "PNG")
    bad.write_bytes(data.getvalue()[:200])
    with pytest.raises(Exception, match="broken.png: (truncated or corrupt|not a recognised)") as info:
        client.predict(handle_file(str(bad)), api_name="/predict")
    assert "/" not in str(info.value)  # the upload's name, not the server's temp path
    check_faces(client.predict(handle_file(str(ASTRONAUT)), api_name="/predict"), 1)


def test_rest_routes(server, canvas_file):
    assert httpx.get(f"{server}/health").json()["status"] == "ok"
    labels = httpx.get(f"{server}/api/labels").json()
    assert len(labels["labels"]) == 8
    r = httpx.post(f"{server}/api/predict", files={"file": ("astro.jpg", ASTRONAUT.read_bytes(), "image/jpeg")})
    assert r.status_code == 200
    check_faces(r.json()["faces"], 1)
    files = [("files", ("a.jpg", ASTRONAUT.read_bytes(), "image/jpeg")),
             ("files", ("bad.png", b"\x89PNG\r\n\x1a\n broken", "image/png")),
             ("files", ("six.png", canvas_file.read_bytes(), "image/png"))]
    r = httpx.post(f"{server}/api/predict/batch", files=files, timeout=60)
    results = r.json()["results"]
    assert r.status_code == 200 and "error" in results[1]
    check_faces(results[0]["faces"], 1)
    check_faces(results[2]["faces"], 6)
    spec = httpx.get(f"{server}/openapi.json").json()
    assert {"/health", "/api/labels", "/api/predict", "/api/predict/batch"} <= set(spec["paths"])
    assert httpx.get(f"{server}/docs").status_code == 200


def test_face_verification_in_both_apis(client, server, tmp_path):
    """A real false MTCNN box (Grace Hopper 2x, threshold 0.5, 12 px faces: the medal ribbons) is
    dropped and counted with verification (the default) and returned without it, in both APIs."""
    path = tmp_path / "hopper2x.png"
    busy_photo().save(path)
    detection = {"threshold": THRESHOLD, "min_face_size": MIN_FACE_SIZE}
    upload = {"file": ("hopper2x.png", path.read_bytes(), "image/png")}
    verified = httpx.post(f"{server}/api/predict", params=detection, files=upload, timeout=120).json()
    assert verified["faces_rejected"] == 1 and len(verified["faces"]) == 1
    face = verified["faces"][0]
    assert near(face["box"], FACE_BOX) and face["face_prob"] > 0.99
    plain = httpx.post(f"{server}/api/predict", params=detection | {"verify_faces": "false"}, files=upload,
                       timeout=120).json()
    assert "faces_rejected" not in plain and len(plain["faces"]) == 2
    assert plain["faces"][0]["box"] == face["box"] and near(plain["faces"][1]["box"], RIBBON_BOX)
    r = httpx.post(f"{server}/api/predict", params={"verify_faces": "maybe"}, files=upload)
    assert r.status_code == 422 and "verify_faces" in r.text
    astro = ("astro.jpg", ASTRONAUT.read_bytes(), "image/jpeg")
    batch = httpx.post(f"{server}/api/predict/batch", params=detection,
                       files=[("files", upload["file"]), ("files", astro)], timeout=120).json()["results"]
    assert [r.get("faces_rejected", 0) for r in batch] == [1, 0] and [len(r["faces"]) for r in batch] == [1, 1]

    on = client.predict(handle_file(str(path)), THRESHOLD, MIN_FACE_SIZE, api_name="/predict")
    off = client.predict(handle_file(str(path)), THRESHOLD, MIN_FACE_SIZE, verify_faces=False, api_name="/predict")
    assert [f["box"] for f in on] == [face["box"]] and len(off) == 2 and "face_prob" not in off[1]
    per_file = client.predict([handle_file(str(path))], THRESHOLD, MIN_FACE_SIZE, api_name="/predict_batch")
    assert per_file[0]["faces_rejected"] == 1 and len(per_file[0]["faces"]) == 1


def test_balanced_switch_in_both_apis(client, server, model_dir):
    config = json.loads((model_dir / "config.json").read_text())
    info = client.predict(api_name="/labels")
    assert info["balanced_available"] == (config.get("prior") is not None)
    assert info["balanced_default"] == config.get("balanced", False)
    if config.get("prior") is None:
        r = httpx.post(f"{server}/api/predict", params={"balanced": "true"},
                       files={"file": ("a.jpg", ASTRONAUT.read_bytes(), "image/jpeg")})
        assert r.status_code == 422 and "class prior" in r.text
        return
    plain = client.predict(handle_file(str(ASTRONAUT)), 0.9, 0, True, False, api_name="/predict")[0]["probs"]
    balanced = client.predict(handle_file(str(ASTRONAUT)), 0.9, 0, True, True, api_name="/predict")[0]["probs"]
    want = np.array(list(plain.values())) / np.asarray(config["prior"]) ** config["tau"]
    assert np.allclose(list(balanced.values()), want / want.sum(), atol=1e-4)
    for flag, expected in (("true", balanced), ("false", plain)):
        r = httpx.post(f"{server}/api/predict", params={"balanced": flag},
                       files={"file": ("a.jpg", ASTRONAUT.read_bytes(), "image/jpeg")}, timeout=60)
        assert r.status_code == 200
        got = r.json()["faces"][0]["probs"]
        assert np.allclose(list(got.values()), list(expected.values()), atol=1e-4)


def explain_checkbox(url):
    """The Image tab's "Explain (Grad-CAM)" checkbox in the app's Gradio config."""
    config = httpx.get(f"{url}/config", timeout=30).json()
    (box,) = [c for c in config["components"] if c.get("props", {}).get("elem_id") == "explain"]
    return box["props"]


def check_heatmaps(faces, target=None):
    for entry in faces:
        heat = np.asarray(entry["heatmap"])
        assert heat.shape == (32, 32) and heat.min() >= 0 and heat.max() <= 1 and heat.max() > 0.5
        assert entry["target"] == (target or entry["face"]["label"]) and entry["layer"]


def test_explain_rest_and_client(server, client):
    """Grad-CAM through a real server (ONNX faces, a torch copy of the model for the maps): REST answers
    the maps and a base64 PNG overlay, bad targets and methods 422 with the reason, a non-image 400 like
    /api/predict; gradio_client /explain gives the same JSON and the overlay file."""
    assert explain_checkbox(server)["visible"] is True
    astro = {"file": ("astro.jpg", ASTRONAUT.read_bytes(), "image/jpeg")}
    r = httpx.post(f"{server}/api/explain", files=astro, timeout=120)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["file"] == "astro.jpg" and len(doc["faces"]) == 1
    check_heatmaps(doc["faces"])
    assert doc["faces"][0]["face"]["label"] == "happiness" and doc["faces"][0]["method"] == "gradcam"
    with Image.open(io.BytesIO(base64.b64decode(doc["overlay_png"]))) as png:
        assert png.format == "PNG" and png.size == (512, 512)
    r = httpx.post(f"{server}/api/explain", data={"target": "surprise", "method": "gradcam++"}, files=astro,
                   timeout=120)
    assert r.status_code == 200 and r.json()["faces"][0]["method"] == "gradcam++"
    check_heatmaps(r.json()["faces"], "surprise")
    for params, reason in (({"target": "joy"}, "target must be 'predicted' or one of the model's labels"),
                           ({"method": "eigencam"}, "method must be one of gradcam, gradcam++, layercam")):
        r = httpx.post(f"{server}/api/explain", params=params, files=astro, timeout=60)
        assert r.status_code == 422 and reason in r.json()["detail"]
    junk = {"file": ("notes.jpg", b"not an image", "image/jpeg")}
    bad = httpx.post(f"{server}/api/explain", files=junk, timeout=60)
    assert bad.status_code == 400 and bad.json() == httpx.post(f"{server}/api/predict", files=junk).json()

    named = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert [p["parameter_name"] for p in named["/explain"]["parameters"]] == ["image", "target", "method"]
    answer, overlay_path = client.predict(handle_file(str(ASTRONAUT)), "predicted", "gradcam", api_name="/explain")
    assert answer["faces"][0]["heatmap"] == doc["faces"][0]["heatmap"]  # deterministic, same in both APIs
    with Image.open(overlay_path) as png:
        assert png.size == (512, 512)
    with pytest.raises(Exception, match="target must be 'predicted' or one of"):
        client.predict(handle_file(str(ASTRONAUT)), "joy", api_name="/explain")


def rss_mb(pid):
    """The resident memory of process ``pid`` (VmRSS), MB."""
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def test_explain_big_photos_keep_the_server_small(server):
    """The overlay is made inside the inference slot, downscaled to 1024 px before blending, and only when
    there are faces: a flat 6000x6000 photo answers null without growing the server, and a 4000x3000
    noisy photo with a face answers a 1024 x 768 overlay in well under 4 MB."""
    astro = {"file": ("astro.jpg", ASTRONAUT.read_bytes(), "image/jpeg")}
    assert httpx.post(f"{server}/api/explain", files=astro, timeout=120).status_code == 200  # torch copy loaded
    flat = io.BytesIO()
    Image.new("RGB", (6000, 6000), (128, 128, 128)).save(flat, "PNG")
    before, start = rss_mb(server.process.pid), time.monotonic()
    r = httpx.post(f"{server}/api/explain", files={"file": ("flat.png", flat.getvalue(), "image/png")}, timeout=120)
    took, after = time.monotonic() - start, rss_mb(server.process.pid)
    assert r.status_code == 200 and r.json()["faces"] == [] and r.json()["overlay_png"] is None, r.text[:300]
    print(f"flat 6000x6000: {took:.1f} s, server RSS {before:.0f} -> {after:.0f} MB")
    assert after - before < 300 and took < 30
    rng = np.random.default_rng(0)
    noisy = Image.fromarray(rng.integers(0, 255, (375, 500, 3), dtype=np.uint8)).resize((4000, 3000), Image.NEAREST)
    with Image.open(ASTRONAUT) as face:
        noisy.paste(face, (1744, 1244))
    buf = io.BytesIO()
    noisy.save(buf, "PNG")
    r = httpx.post(f"{server}/api/explain", files={"file": ("noisy.png", buf.getvalue(), "image/png")}, timeout=120)
    assert r.status_code == 200, r.text[:300]
    print(f"noisy 4000x3000 with a face: answer {len(r.content) / 1e6:.2f} MB, {r.elapsed.total_seconds():.1f} s, "
          f"server RSS {rss_mb(server.process.pid):.0f} MB")
    assert len(r.content) < 4_000_000
    assert any(1744 <= f["face"]["box"][0] and f["face"]["box"][2] <= 2256 for f in r.json()["faces"])
    with Image.open(io.BytesIO(base64.b64decode(r.json()["overlay_png"]))) as png:
        assert png.size == (1024, 768)


def test_explain_arguments_from_a_hostile_client(server, client):
    """A huge or non-string target/method is a short error in both APIs (REST 422, gradio_client an error),
    never an internal error, and the server's log does not echo it; an empty query target wins over the form."""
    astro = {"file": ("astro.jpg", ASTRONAUT.read_bytes(), "image/jpeg")}
    r = httpx.post(f"{server}/api/explain", data={"target": "x" * 1_000_000}, files=astro, timeout=60)
    assert r.status_code == 422 and "target must be 'predicted'" in r.json()["detail"]
    assert len(r.content) < 400, len(r.content)
    r = httpx.post(f"{server}/api/explain", params={"target": "", "method": ""},
                   data={"target": "surprise", "method": "eigencam"}, files=astro, timeout=60)
    assert r.status_code == 200, r.text[:300]
    assert [(f["target"], f["method"]) for f in r.json()["faces"]] == [("happiness", "gradcam")]
    log_path = os.readlink(f"/proc/{server.process.pid}/fd/1")
    logged = os.path.getsize(log_path)
    for target, method, reason in (("x" * 5_000_000, "gradcam", "target must be 'predicted'"),
                                   ("predicted", ["gradcam"], "method must be a string, got list"),
                                   ({"a": 1}, "gradcam", "target must be a string, got dict")):
        with pytest.raises(Exception) as failed:
            client.predict(handle_file(str(ASTRONAUT)), target, method, api_name="/explain")
        assert reason in str(failed.value) and len(str(failed.value)) < 400, str(failed.value)[:400]
        assert "internal error" not in str(failed.value)
    assert os.path.getsize(log_path) - logged < 20_000


def test_explain_without_torch_is_501_and_hidden(tmp_path):
    """A server without torch (tests/support/no_torch) hides the Explain switch and answers /api/explain
    501 with the install line, and gradio_client /explain an error saying the same."""
    no_torch = ROOT / "tests" / "support" / "no_torch"
    with app_server(tmp_path / "app.log", PYTHONPATH=f"{no_torch}{os.pathsep}{ROOT}", FER_MODEL="",
                    FER_JWT_SECRET="") as url:
        assert explain_checkbox(url)["visible"] is False
        r = httpx.post(f"{url}/api/explain", files={"file": ("a.jpg", ASTRONAUT.read_bytes(), "image/jpeg")},
                       timeout=60)
        assert r.status_code == 501 and "pip install 'fer-core[torch]'" in r.json()["detail"]
        assert "(missing: torch)" in r.json()["detail"]
        with pytest.raises(Exception, match=r"fer-core\[torch\]"):
            Client(url, verbose=False).predict(handle_file(str(ASTRONAUT)), api_name="/explain")


def test_rest_bad_inputs_then_valid_request(server):
    r = httpx.post(f"{server}/api/predict", files={"file": ("x.txt", b"hello", "text/plain")})
    assert r.status_code == 400 and "not a recognised image" in r.json()["detail"]
    jpeg = ASTRONAUT.read_bytes()
    r = httpx.post(f"{server}/api/predict", files={"file": ("cut.jpg", jpeg[: len(jpeg) // 2], "image/jpeg")})
    assert r.status_code == 400 and "truncated or corrupt" in r.json()["detail"]
    big = np.random.default_rng(0).integers(0, 255, (1200, 1200, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(big).save(buf, "PNG")
    assert buf.tell() > UPLOAD_LIMIT_MB * 1024 * 1024
    r = httpx.post(f"{server}/api/predict", files={"file": ("big.png", buf.getvalue(), "image/png")})
    assert r.status_code == 413 and f"{UPLOAD_LIMIT_MB} MB" in r.json()["detail"]
    r = httpx.post(f"{server}/api/predict", params={"threshold": 3}, files={"file": ("a.jpg", jpeg, "image/jpeg")})
    assert r.status_code == 422
    r = httpx.post(f"{server}/api/predict", params={"min_face_size": 5}, files={"file": ("a.jpg", jpeg, "image/jpeg")})
    assert r.status_code == 422 and ">= 12" in r.json()["detail"]
    r = httpx.post(f"{server}/api/predict", files={"file": ("a.jpg", jpeg, "image/jpeg")})
    assert r.status_code == 200 and len(r.json()["faces"]) == 1


def test_app_pulls_its_model_from_a_hub_server(tmp_path, model_dir):
    from tests.support.hub_server import make_git_repo, olah_server

    commit = make_git_repo(tmp_path / "mirrors", "fer-tests/app-model",
                           [model_dir / "config.json", model_dir / "model.safetensors"])
    with olah_server(tmp_path, tmp_path / "mirrors") as hub:
        env = {"FER_MODEL": "fer-tests/app-model", "FER_MODEL_REVISION": commit, "HF_ENDPOINT": hub,
               "HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_XET": "1"}
        with app_server(tmp_path / "app.log", **env) as url:
            info = httpx.get(f"{url}/api/labels").json()
            assert info["model"] == "fer-tests/app-model" and info["revision"] == commit
            r = httpx.post(f"{url}/api/predict", files={"file": ("a.jpg", ASTRONAUT.read_bytes(), "image/jpeg")})
            check_faces(r.json()["faces"], 1)
    shutil.rmtree(tmp_path / "hf", ignore_errors=True)
    assert json.loads((model_dir / "config.json").read_text())["labels"] == info["labels"]


@pytest.fixture(scope="module")
def clip(ferplus, tmp_path_factory):
    """3 s, 10 frames/s: two faces, one leaves at 2 s (tests/video_clips.py)."""
    return write_two_face_clip(ferplus, tmp_path_factory.mktemp("video") / "two_faces.mp4")


def check_video_doc(doc, faces, seconds, sample_fps):
    assert len(doc["summary"]) == faces and doc["error"] is None
    assert doc["video"]["seconds_analyzed"] == pytest.approx(seconds, abs=0.25)
    times = sorted({r["time_s"] for r in doc["rows"]})
    assert doc["frames_analyzed"] == len(times) == round(seconds * sample_fps)
    for r in doc["rows"]:
        assert math.isclose(sum(r["probs"].values()), 1, abs_tol=1e-3) and r["face_id"] in (1, 2)
    for s in doc["summary"]:
        assert math.isclose(sum(s["shares"].values()), 1, abs_tol=1e-3)


def test_predict_video_client(client, clip, tmp_path):
    doc = client.predict(handle_file(str(clip)), 5, 2, 0.25, api_name="/predict_video")
    assert doc["video"]["file"] == "two_faces.mp4"
    check_video_doc(doc, faces=2, seconds=2.0, sample_fps=5)
    assert doc["faces_rejected"] == 0  # real faces only: verification keeps them all
    with pytest.raises(Exception, match=f"at most {VIDEO_LIMIT_S:.0f} s"):  # 3 s clip, 2.5 s limit
        client.predict(handle_file(str(clip)), api_name="/predict_video")
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(clip.read_bytes()[-3000:])
    with pytest.raises(Exception, match="broken.mp4: not a readable video"):
        client.predict(handle_file(str(bad)), 5, 2, api_name="/predict_video")


def test_rest_predict_video_and_its_limits(server, clip):
    data = clip.read_bytes()
    r = httpx.post(f"{server}/api/predict/video", params={"sample_fps": 0, "max_seconds": 1},
                   files={"file": ("clip.mp4", data, "video/mp4")}, timeout=120)
    assert r.status_code == 200, r.text
    doc = r.json()
    check_video_doc(doc, faces=2, seconds=1.0, sample_fps=10)  # sample_fps 0: every frame
    assert doc["video"]["file"] == "clip.mp4" and doc["video"]["width"] == 640
    r = httpx.post(f"{server}/api/predict/video", files={"file": ("clip.mp4", data, "video/mp4")}, timeout=120)
    assert r.status_code == 422 and "lasts 3 s" in r.json()["detail"]
    r = httpx.post(f"{server}/api/predict/video", params={"sample_fps": 100, "max_seconds": 1},
                   files={"file": ("clip.mp4", data, "video/mp4")})
    assert r.status_code == 422
    r = httpx.post(f"{server}/api/predict/video", files={"file": ("notes.mp4", b"hello" * 100, "video/mp4")})
    assert r.status_code == 400 and "notes.mp4: not a readable video" in r.json()["detail"]
    r = httpx.post(f"{server}/api/predict/video", files={"file": ("empty.webm", b"", "video/webm")})
    assert r.status_code == 400 and "empty" in r.json()["detail"]
    big = np.random.default_rng(0).bytes(UPLOAD_LIMIT_MB * 1024 * 1024 + 10)
    r = httpx.post(f"{server}/api/predict/video", files={"file": ("big.mp4", big, "video/mp4")})
    assert r.status_code == 413
    assert "/api/predict/video" in httpx.get(f"{server}/openapi.json").json()["paths"]


def png(size) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (120, 110, 100)).save(buf, "PNG")
    return buf.getvalue()


#: Every short side from 1 to 24 px (12..19 used to be a 500: MTCNN's empty scale pyramid).
TINY = [(16, 16), (200, 15), (15, 200), *[(n, n) for n in range(1, 25)], *[(200, n) for n in range(1, 25)],
        *[(n, 200) for n in range(1, 25)]]


def test_tiny_images_are_no_face_in_every_api(server, client, tmp_path):
    for size in TINY:
        r = httpx.post(f"{server}/api/predict", files={"file": (f"{size[0]}x{size[1]}.png", png(size), "image/png")},
                       timeout=60)
        assert r.status_code == 200 and r.json()["faces"] == [], (size, r.text)
    files = [("files", (f"{n}.png", png((n, n)), "image/png")) for n in range(1, 25)]
    r = httpx.post(f"{server}/api/predict/batch", files=files, timeout=60)
    assert r.status_code == 200 and [x["faces"] for x in r.json()["results"]] == [[]] * 24
    for size in ((16, 16), (200, 15), (15, 200), (12, 12), (19, 40)):
        path = tmp_path / f"{size[0]}x{size[1]}.png"
        path.write_bytes(png(size))
        assert client.predict(handle_file(str(path)), api_name="/predict") == []
        assert client.predict([handle_file(str(path))], api_name="/predict_batch")[0]["faces"] == []


def test_tiny_video_is_no_face_in_both_apis(server, client, tmp_path):
    from fer_core.video import VideoWriter

    path = tmp_path / "tiny.mp4"
    with VideoWriter(path, 10, 16, 16) as writer:
        for i in range(10):
            writer.write(np.full((16, 16, 3), 20 * i, np.uint8))
    r = httpx.post(f"{server}/api/predict/video", params={"sample_fps": 0},
                   files={"file": ("tiny.mp4", path.read_bytes(), "video/mp4")}, timeout=60)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["frames_analyzed"] == 10 and doc["summary"] == [] and doc["error"] is None and doc["truncated"] is None
    doc = client.predict(handle_file(str(path)), 0, api_name="/predict_video")
    assert doc["frames_analyzed"] == 10 and doc["rows"] == []


def test_video_decoding_stops_at_the_frame_cap(server, client, tmp_path):
    """3,600 frames 1/90000 s apart: 0.04 s by its timestamps, under the 2.5 s limit; the frame cap
    (FER_MAX_VIDEO_FRAMES, here 2.5 s x 60 = 150 by default) stops it and the answer says so."""
    clip = dense_clip(tmp_path / "dense.mp4")
    r = httpx.post(f"{server}/api/predict/video", params={"sample_fps": 0},
                   files={"file": ("dense.mp4", clip.read_bytes(), "video/mp4")}, timeout=120)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["frames_analyzed"] == 150 and "stopped after decoding 150 frames" in doc["truncated"]
    assert "FER_MAX_VIDEO_FRAMES" in doc["truncated"]
    doc = client.predict(handle_file(str(clip)), 0, api_name="/predict_video")
    assert doc["frames_analyzed"] == 150 and "FER_MAX_VIDEO_FRAMES" in doc["truncated"]

"""Inference without torch (issue 30): the library, the ``fer`` CLI (images and a video, timelines and plots
included) and the app server run in child processes where torch, torchvision and facenet-pytorch cannot be
imported (tests/support/no_torch/sitecustomize.py), and give the torch backend's answers: the same faces,
boxes and labels. The torch backend asked for there says how to install it; ``fer-app`` without the app
extra says how to install that."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import ROOT
from tests.support.launch import app_server
from tests.support.video_clips import write_two_face_clip

NO_TORCH = ROOT / "tests" / "support" / "no_torch"
ASTRONAUT = ROOT / "fer_app" / "examples" / "astronaut.jpg"
#: Printed by every child: torch is unimportable there, and no torch library is mapped into the process.
CHECK = ("import importlib.util, sys\n"
         "assert importlib.util.find_spec('torch') is None and sys.modules['torch'] is None\n"
         "maps = open('/proc/self/maps').read()\n"
         "assert 'libtorch' not in maps and '/torch/' not in maps, 'torch is loaded'\n")


def no_torch_env(**extra: str) -> dict[str, str]:
    """The environment of a child without torch: the blocker first on ``PYTHONPATH``, then the checkout."""
    return {**os.environ, "PYTHONPATH": f"{NO_TORCH}{os.pathsep}{ROOT}", "FER_MODEL": "", **extra}


def run_no_torch(args: list[str], timeout: float = 300, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=no_torch_env(**extra), capture_output=True,
                          text=True, timeout=timeout)


def torch_faces(recognizer, image) -> list[dict]:
    """The torch backend's faces (the ``recognizer`` fixture: EmotionNet + facenet-pytorch's MTCNN)."""
    assert recognizer.backend == "torch"
    return [f.to_dict() for f in recognizer.predict(image)]


#: End-to-end probabilities: the backends' boxes agree within 1e-4 px, but a crop is uint8, so such a shift can
#: still move a few dozen crop pixels by one grey level, enough to move a probability by up to ~2.5e-3
#: (tests/test_backends.py); on the same crops the classifiers agree within 1e-4.
PROB_TOLERANCE = 5e-3


def assert_same_faces(got: list[dict], want: list[dict], box_px: float = 0.011, prob: float = PROB_TOLERANCE) -> None:
    assert len(got) == len(want), (got, want)
    for g, w in zip(got, want):
        assert g["label"] == w["label"]
        assert np.allclose(g["box"], w["box"], atol=box_px), (g["box"], w["box"])
        assert np.allclose(list(g["probs"].values()), list(w["probs"].values()), atol=prob)


def test_blocker_makes_torch_unimportable():
    proc = run_no_torch(["-c", CHECK + "import torch"])
    assert proc.returncode == 1 and "ModuleNotFoundError" in proc.stderr and "torch" in proc.stderr, proc.stderr


def test_library_without_torch_astronaut_and_six_faces(recognizer, canvas, tmp_path):
    image, tiles = canvas
    image.save(tmp_path / "canvas.png")
    code = CHECK + (
        "import json\n"
        "from fer_core import EmotionRecognizer, MissingDependencyError\n"
        "rec = EmotionRecognizer.from_pretrained()\n"
        f"out = {{'backend': rec.backend, 'astronaut': [f.to_dict() for f in rec.predict({str(ASTRONAUT)!r})],\n"
        f"       'canvas': [f.to_dict() for f in rec.predict({str(tmp_path / 'canvas.png')!r})]}}\n"
        "try:\n"
        "    EmotionRecognizer.from_pretrained(backend='torch')\n"
        "except MissingDependencyError as exc:\n"
        "    out['torch_error'] = str(exc)\n"
        "print(json.dumps(out))\n") + CHECK  # still no torch after all of it
    proc = run_no_torch(["-c", code])
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["backend"] == "onnx"
    assert [f["label"] for f in out["astronaut"]] == ["happiness"]
    assert_same_faces(out["astronaut"], torch_faces(recognizer, ASTRONAUT))
    assert len(out["canvas"]) == len(tiles) == 6
    assert_same_faces(out["canvas"], torch_faces(recognizer, image))
    assert "pip install 'fer-core[torch]'" in out["torch_error"] and "torch" in out["torch_error"]


def test_cli_without_torch_images_and_video(recognizer, canvas, ferplus, tmp_path):
    image, _ = canvas
    image.save(tmp_path / "canvas.png")
    clip = write_two_face_clip(ferplus, tmp_path / "clip.mp4")
    timelines = tmp_path / "timelines"
    proc = run_no_torch(["-c", CHECK + "import sys\nfrom fer_core.cli import main\nrc = main(sys.argv[1:])\n"
                         + CHECK + "sys.exit(rc)",
                         str(ASTRONAUT), str(tmp_path / "canvas.png"), str(clip), "--json", "--timeline",
                         str(timelines)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    astronaut, six, video = json.loads(proc.stdout)
    assert_same_faces(astronaut["faces"], torch_faces(recognizer, ASTRONAUT))  # the JSON rounds to 0.01 px
    assert [f["label"] for f in astronaut["faces"]] == ["happiness"]
    assert_same_faces(six["faces"], torch_faces(recognizer, image))
    want = recognizer.analyze_video(clip, progress=False).summary()
    assert [(s["face_id"], s["dominant"]) for s in video["summary"]] == [(s["face_id"], s["dominant"]) for s in want]
    assert len(video["summary"]) == 2 and video["video"]["seconds_analyzed"] == pytest.approx(3.0, abs=0.11), video
    for name in ("clip.csv", "clip.json", "clip_timeline.png"):  # pandas and matplotlib, still no torch
        assert (timelines / name).stat().st_size > 0


def test_app_without_torch_serves_a_prediction(tmp_path):
    with app_server(tmp_path / "app.log", PYTHONPATH=f"{NO_TORCH}{os.pathsep}{ROOT}", FER_MODEL="",
                    FER_JWT_SECRET="") as url:
        assert httpx.get(f"{url}/health", timeout=30).json()["status"] == "ok"
        r = httpx.post(f"{url}/api/predict", files={"file": ("astronaut.jpg", ASTRONAUT.read_bytes(), "image/jpeg")},
                       timeout=120)
        assert r.status_code == 200, r.text
        faces = r.json()["faces"]
        assert [f["label"] for f in faces] == ["happiness"] and faces[0]["probs"]["happiness"] > 0.9
        maps = Path(f"/proc/{url.process.pid}/maps").read_text()  # the server, after a prediction
        assert "libonnxruntime" in maps and "libtorch" not in maps and "/torch/" not in maps


def test_fer_app_without_the_app_extra_says_what_to_install():
    proc = run_no_torch(["-c", "from fer_app.server import main; main([])"], timeout=120,
                        FER_BLOCK_MODULES="gradio,fastapi,uvicorn")
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "pip install 'fer-core[app]'" in proc.stderr and "gradio" in proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]


@pytest.mark.parametrize("call", ["FaceDetector(backend='torch')", "load_classifier(backend='torch')"])
def test_torch_backend_without_torch_names_the_extra(call):
    proc = run_no_torch(["-c", "from fer_core import FaceDetector\nfrom fer_core.classifier import load_classifier\n"
                         f"from fer_core.errors import MissingDependencyError\ntry:\n    {call}\n"
                         "except MissingDependencyError as exc:\n    print(exc)\n"], timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "pip install 'fer-core[torch]'" in proc.stdout and "missing: torch" in proc.stdout, proc.stdout


def test_a_wrong_model_without_torch_is_a_load_error_not_install_torch(tmp_path):
    """Without torch, a model that cannot be found is reported as such (ModelLoadError), not as
    "install the torch extra": the default backend falls back to torch only where torch is installed."""
    code = ("from fer_core import EmotionRecognizer\nfrom fer_core.errors import ModelLoadError\n"
            f"for source in ({str(tmp_path / 'missing')!r}, {str(tmp_path)!r}):\n"
            "    try:\n        EmotionRecognizer.from_pretrained(source)\n"
            "    except ModelLoadError as exc:\n        print('ModelLoadError', exc)\n")
    proc = run_no_torch(["-c", code], timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("ModelLoadError") == 2 and "fer-core[torch]" not in proc.stdout, proc.stdout

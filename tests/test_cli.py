"""python -m fer_core: text and JSON output, crops mode, annotations, bad files and exit status."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import ROOT
from tests.support.false_box import FACE_BOX, MIN_FACE_SIZE, RIBBON_BOX, THRESHOLD, busy_photo, near


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "fer_core", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_cli_text_json_annotate_and_bad_file(tmp_path, astronaut, canvas, model_dir):
    Image.fromarray(astronaut).save(tmp_path / "astronaut.jpg")
    canvas[0].save(tmp_path / "six.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out_dir = tmp_path / "annotated"
    proc = run_cli(tmp_path, "--model", model_dir, "--annotate", out_dir)
    assert proc.returncode == 1  # one file failed
    assert "broken.jpg" in proc.stderr and "error" in proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert sum("astronaut.jpg\tface 1" in ln for ln in lines) == 1
    assert sum("six.png\tface" in ln for ln in lines) == 6
    assert sorted(p.name for p in out_dir.iterdir()) == ["astronaut_annotated.png", "six_annotated.png"]

    proc = run_cli(tmp_path / "astronaut.jpg", tmp_path / "six.png", "--json", "--model", model_dir)
    assert proc.returncode == 0, proc.stderr
    docs = json.loads(proc.stdout)
    assert [len(d["faces"]) for d in docs] == [1, 6]
    face = docs[0]["faces"][0]
    assert set(face) == {"box", "score", "landmarks", "label", "probs", "face_prob"}  # verified by default
    assert face["face_prob"] > 0.99 and [d["faces_rejected"] for d in docs] == [0, 0]
    assert abs(sum(face["probs"].values()) - 1) < 1e-3


def test_cli_verify_drops_a_false_box_and_mesh_goes_to_json(tmp_path, model_dir):
    busy_photo().save(tmp_path / "hopper2x.png")
    common = (tmp_path / "hopper2x.png", "--model", model_dir, "--threshold", THRESHOLD, "--min-face-size",
              MIN_FACE_SIZE)
    proc = run_cli(*common)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert sum("\tface " in ln for ln in lines) == 1
    assert any("\trejected\t1 box not confirmed as a face" in ln for ln in lines)

    proc = run_cli(*common, "--json", "--mesh")
    doc = json.loads(proc.stdout)[0]
    assert doc["faces_rejected"] == 1 and len(doc["faces"]) == 1
    face = doc["faces"][0]
    assert near(face["box"], FACE_BOX) and face["face_prob"] > 0.99
    mesh = np.asarray(face["mesh"])
    assert mesh.shape == (468, 3)
    x1, y1, x2, y2 = face["box"]
    inside = (mesh[:, 0] >= x1 - 20) & (mesh[:, 0] <= x2 + 20) & (mesh[:, 1] >= y1 - 20) & (mesh[:, 1] <= y2 + 20)
    assert inside.all()  # the points lie on the face, in image pixels

    proc = run_cli(*common, "--json", "--no-verify")
    doc = json.loads(proc.stdout)[0]
    assert "faces_rejected" not in doc and len(doc["faces"]) == 2
    assert near(doc["faces"][0]["box"], face["box"], tol=0.01)  # the verified face is unchanged
    assert near(doc["faces"][1]["box"], RIBBON_BOX) and "face_prob" not in doc["faces"][1]


def test_cli_crops_mode(tmp_path, ferplus, model_dir):
    crops = [ferplus / "FER2013Valid" / n for n in ("fer0028642.png", "fer0028652.png")]
    proc = run_cli(*crops, "--crops", "--json", "--model", model_dir)
    assert proc.returncode == 0, proc.stderr
    docs = json.loads(proc.stdout)
    assert len(docs) == 2 and all(abs(sum(d["probs"].values()) - 1) < 1e-3 for d in docs)


def test_cli_no_face_and_bad_model(tmp_path, model_dir):
    Image.new("RGB", (320, 240), (90, 90, 90)).save(tmp_path / "wall.png")
    proc = run_cli(tmp_path / "wall.png", "--model", model_dir)
    assert proc.returncode == 0 and "no face" in proc.stdout
    proc = run_cli(tmp_path / "wall.png", "--model", tmp_path)  # a folder without config.json
    assert proc.returncode == 1 and "config.json not found" in proc.stderr


def test_cli_video_timeline_annotate_and_bad_video(tmp_path, ferplus, model_dir):
    from fer_core.video import probe_video
    from tests.support.video_clips import write_two_face_clip

    clips = tmp_path / "clips"
    clips.mkdir()
    write_two_face_clip(ferplus, clips / "two_faces.mp4")
    (clips / "broken.webm").write_bytes(b"\x1a\x45\xdf\xa3 not really webm")
    out, ann = tmp_path / "timelines", tmp_path / "annotated"
    proc = run_cli(clips, "--model", model_dir, "--timeline", out, "--annotate", ann, "--sample-fps", 5,
                   "--no-progress")
    assert proc.returncode == 1  # the broken file
    assert "broken.webm" in proc.stderr and "not a readable video" in proc.stderr
    lines = [ln.split("\t") for ln in proc.stdout.strip().splitlines()]
    assert [ln[1] for ln in lines] == ["face 1", "face 2"]
    assert lines[0][3] == "3.0 s" and lines[1][3] == "2.0 s" and lines[1][2] == "happiness"
    assert sorted(p.name for p in out.iterdir()) == ["two_faces.csv", "two_faces.json", "two_faces_timeline.png"]
    doc = json.loads((out / "two_faces.json").read_text())
    assert doc["frames_analyzed"] == 15 and doc["video"]["sample_fps"] == 5
    assert (out / "two_faces.csv").read_text().splitlines()[0].startswith("frame,time_s,face_id,x1,y1,x2,y2")
    assert probe_video(ann / "two_faces_annotated.mp4").codec == "h264"

    proc = run_cli(clips / "two_faces.mp4", "--json", "--model", model_dir, "--max-seconds", 1, "--no-progress",
                   "--detect-every", 2)
    assert proc.returncode == 0, proc.stderr
    (doc,) = json.loads(proc.stdout)
    assert doc["video"]["seconds_analyzed"] == 1.0 and len(doc["summary"]) == 2
    assert all(abs(sum(s["shares"].values()) - 1) < 1e-3 for s in doc["summary"])


def test_cli_tiny_images_and_video_are_no_face(tmp_path, model_dir):
    from fer_core.video import VideoWriter

    sizes = [(16, 16), (200, 15), (15, 200), *[(n, n) for n in range(1, 25)], *[(200, n) for n in range(1, 25)],
             *[(n, 200) for n in range(1, 25)]]
    for i, size in enumerate(sizes):
        Image.new("RGB", size, (120, 110, 100)).save(tmp_path / f"{i:03d}_{size[0]}x{size[1]}.png")
    with VideoWriter(tmp_path / "tiny.mp4", 10, 16, 16) as writer:
        for _ in range(5):
            writer.write(np.full((16, 16, 3), 128, np.uint8))
    proc = run_cli(tmp_path, "--json", "--model", model_dir, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    docs = json.loads(proc.stdout)
    assert len(docs) == len(sizes) + 1
    assert all(d["faces"] == [] for d in docs[:-1]) and docs[-1]["summary"] == [] and docs[-1]["error"] is None


def test_cli_saliency_files_target_and_backend(tmp_path, astronaut, canvas, model_dir):
    """--saliency writes an overlay PNG and one JSON entry per face with a 32x32 heatmap in [0, 1]; on the
    ONNX backend (the default) a torch copy explains the ONNX faces; --saliency-target sets every target."""
    Image.fromarray(astronaut).save(tmp_path / "astronaut.jpg")
    canvas[0].save(tmp_path / "six.png")
    out = tmp_path / "maps"
    proc = run_cli(tmp_path / "astronaut.jpg", tmp_path / "six.png", "--model", model_dir, "--json",
                   "--saliency", out)
    assert proc.returncode == 0, proc.stderr
    docs = json.loads(proc.stdout)
    assert sorted(p.name for p in out.iterdir()) == ["astronaut_saliency.json", "astronaut_saliency.png",
                                                     "six_saliency.json", "six_saliency.png"]
    assert docs[0]["saliency"] == [str(out / "astronaut_saliency.png"), str(out / "astronaut_saliency.json")]
    for doc, stem, size in zip(docs, ("astronaut", "six"), ((512, 512), canvas[0].size)):
        maps = json.loads((out / f"{stem}_saliency.json").read_text())
        assert len(maps) == len(doc["faces"]) == (1 if stem == "astronaut" else 6)
        for entry, face in zip(maps, doc["faces"]):
            heat = np.asarray(entry["heatmap"])
            assert heat.shape == (32, 32) and heat.min() >= 0 and heat.max() <= 1 and heat.max() > 0.5
            assert entry["target"] == face["label"] and entry["method"] == "gradcam"
            assert entry["face"]["box"] == face["box"]  # the prediction's faces, not a second detection
        with Image.open(out / f"{stem}_saliency.png") as png:
            assert png.size == size and png.mode == "RGB"
    with Image.open(out / "astronaut_saliency.png") as png:  # heat blended inside the face box, not outside
        diff = np.abs(np.asarray(png, np.int16) - np.asarray(Image.open(tmp_path / "astronaut.jpg"), np.int16))
    x1, y1, x2, y2 = (int(v) for v in docs[0]["faces"][0]["box"])
    assert diff[y1:y2, x1:x2].mean() > 10 and diff[:40, :].mean() < 3

    proc = run_cli(tmp_path / "astronaut.jpg", "--model", model_dir, "--backend", "torch", "--saliency", out,
                   "--saliency-target", "surprise", "--saliency-method", "layercam")
    assert proc.returncode == 0, proc.stderr
    assert f"astronaut.jpg\tsaliency\t{out / 'astronaut_saliency.png'}" in proc.stdout
    (entry,) = json.loads((out / "astronaut_saliency.json").read_text())
    assert entry["target"] == "surprise" and entry["method"] == "layercam"

    proc = run_cli(tmp_path / "astronaut.jpg", "--model", model_dir, "--saliency", out, "--saliency-target", "joy")
    assert proc.returncode == 1 and "--saliency-target must be one of" in proc.stderr


def test_cli_corpus_subcommand(tmp_path, ferplus):
    """``python -m fer_core corpus`` is the corpus job: two images -> faces/ Parquet and a manifest."""
    import pandas as pd

    for i, name in enumerate(("fer0028642.png", "fer0028652.png")):
        face = Image.open(ferplus / "FER2013Valid" / name).convert("RGB").resize((160, 160))
        canvas = Image.new("RGB", (240, 240), (128, 128, 128))
        canvas.paste(face, (40, 40))
        canvas.save(tmp_path / f"img{i}.png")
    out = tmp_path / "out"
    proc = run_cli("corpus", tmp_path / "img0.png", tmp_path / "img1.png", "--out", out, "--engine", "local",
                   "--no-progress")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["engine"] == "local"
    faces = pd.read_parquet(out / "faces")
    assert sorted(Path(p).name for p in faces["path"]) == ["img0.png", "img1.png"]
    assert (out / "manifest.json").exists()


def test_cli_saliency_without_torch_names_the_extra_and_still_predicts(tmp_path, astronaut, model_dir):
    """Without torch (tests/support/no_torch) --saliency says what to install, once, on stderr; the
    predictions are still printed and the exit status is 1."""
    Image.fromarray(astronaut).save(tmp_path / "a.jpg")
    Image.fromarray(astronaut).save(tmp_path / "b.jpg")
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests' / 'support' / 'no_torch'}{os.pathsep}{ROOT}"}
    proc = subprocess.run([sys.executable, "-m", "fer_core", tmp_path / "a.jpg", tmp_path / "b.jpg", "--model",
                           model_dir, "--saliency", tmp_path / "maps"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.count("error: --saliency:") == 1 and "pip install 'fer-core[torch]'" in proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert [ln.split("\t")[1:3] for ln in lines] == [["face 1", "happiness"], ["face 1", "happiness"]]
    assert not list((tmp_path / "maps").iterdir())


def test_cli_saliency_torch_copy_load_error_is_reported_once(tmp_path, astronaut, model_dir):
    """An ONNX-only model folder (no model.safetensors): the torch copy's load error is printed once, not
    as every image's failure; every file is still predicted and the exit status is 1."""
    onnx_only = tmp_path / "onnx_only"
    onnx_only.mkdir()
    for name in ("config.json", "model.onnx"):
        (onnx_only / name).write_bytes((Path(model_dir) / name).read_bytes())
    for name in ("a.jpg", "b.jpg"):
        Image.fromarray(astronaut).save(tmp_path / name)
    proc = run_cli(tmp_path / "a.jpg", tmp_path / "b.jpg", "--model", onnx_only, "--saliency", tmp_path / "maps")
    assert proc.returncode == 1
    assert proc.stderr.count("error: --saliency:") == 1 and "model.safetensors" in proc.stderr, proc.stderr
    assert "a.jpg:" not in proc.stderr and "b.jpg:" not in proc.stderr, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert [ln.split("\t")[1:3] for ln in lines] == [["face 1", "happiness"], ["face 1", "happiness"]]

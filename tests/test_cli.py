"""python -m fer_core: text and JSON output, crops mode, annotations, bad files and exit status."""

from __future__ import annotations

import json
import subprocess
import sys

from PIL import Image

from tests.conftest import ROOT


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
    assert set(face) == {"box", "score", "landmarks", "label", "probs"}
    assert abs(sum(face["probs"].values()) - 1) < 1e-3


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

"""FER+ faces through the whole inference pipeline (python -m research.pipeline_eval): real MTCNN, the
bundled model, real FER+ Valid faces."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from fer_core.detect import Detection
from fer_core.model import load_model
from fer_core.recognizer import DEFAULT_MODEL_DIR
from fer_train.engine import majority_logits
from research.final_fit import evaluation_faces
from research.pipeline_eval import face_on_canvas, main, paired_paths, pasted_face, pipeline_eval

LIMIT = 80


def test_face_on_canvas_and_pasted_face():
    face = np.arange(48 * 48, dtype=np.uint8).reshape(48, 48)
    canvas, box = face_on_canvas(face, 100)
    assert canvas.size == (200, 200) and canvas.mode == "RGB" and box == (50.0, 50.0, 150.0, 150.0)
    pasted = np.asarray(canvas.crop(tuple(int(v) for v in box)).convert("L"))
    expected = np.asarray(Image.fromarray(face).resize((100, 100), Image.Resampling.BICUBIC))
    assert np.abs(pasted.astype(int) - expected).max() <= 1
    assert canvas.getpixel((5, 5)) == (128, 128, 128)
    with pytest.raises(ValueError, match="size must be >= 12"):
        face_on_canvas(face, 8)
    # the pasted face is the detection overlapping its square most, if by IoU >= MIN_IOU
    marks = np.zeros((5, 2), np.float32)
    exact, third = Detection(box, 0.99, marks), Detection((50.0, 50.0, 150.0, 100.0), 0.99, marks)  # IoU 1, 0.5
    elsewhere = Detection((150.0, 150.0, 200.0, 200.0), 0.95, marks)  # IoU 0
    assert pasted_face([elsewhere, third, exact], box) is exact
    assert pasted_face([elsewhere, third], box) is third
    assert pasted_face([Detection((0.0, 0.0, 10.0, 10.0), 0.9, marks)], (5.0, 0.0, 15.0, 10.0)) is None  # IoU 1/3
    assert pasted_face([elsewhere], box) is None and pasted_face([], box) is None


def test_pipeline_keeps_the_dataset_accuracy_and_the_crop_framing(ferplus):
    r = pipeline_eval(DEFAULT_MODEL_DIR, ferplus, limit=LIMIT, progress=False)
    faces = evaluation_faces(ferplus, "valid", limit=LIMIT)
    logits, labels = majority_logits(load_model(DEFAULT_MODEL_DIR), faces)
    # the dataset-crop path is the network fer_train.evaluate measures (one preprocessing module)
    assert r.n_images == len(labels)
    assert r.crop_accuracy_all == pytest.approx(float((logits.argmax(1) == labels).mean()), abs=1.01 / len(labels))
    assert 0.75 * r.n_images <= r.n_detected <= r.n_images  # MTCNN finds most upscaled FER+ faces
    # the bundled crop_margin makes the pipeline's crop about as large as the dataset's
    assert 0.9 < r.crop_side < 1.1
    crop, aligned, unaligned = r.paths
    assert [p.name for p in r.paths] == ["dataset crop", "pipeline, aligned", "pipeline, not aligned"]
    for path in (aligned, unaligned):
        assert path.accuracy > crop.accuracy - 0.1  # detection + alignment + cropping lose little
        assert path.balanced_accuracy is not None and 0 <= path.p_value <= 1
        assert len(path.recall) == 8 and all(0 <= v <= 1 for v in path.recall)
    # recall is that of the model's default decisions (balanced for the bundled model), per class
    assert r.default_balanced and r.labels[0] == "neutral" and sum(r.support) == r.n_detected
    present = [c for c, n in enumerate(r.support) if n > 0]
    for path in r.paths:
        assert np.average(path.recall, weights=r.support) == pytest.approx(path.balanced_accuracy)
        assert np.mean([path.recall[c] for c in present]) == pytest.approx(path.balanced_uar)
        # the discordant counts explain the accuracy difference face for face
        assert (path.only_this - path.only_crop) == round((path.accuracy - crop.accuracy) * r.n_detected)


def test_cli_prints_the_paths_and_refuses_a_bad_size(ferplus, capsys):
    assert main(["--data", str(ferplus), "--limit", "24"]) == 0
    out = capsys.readouterr().out
    assert "MTCNN found" in out and "pipeline, aligned" in out and "McNemar p" in out
    assert main(["--data", str(ferplus), "--limit", "24", "--size", "4"]) == 1
    assert "size must be >= 12" in capsys.readouterr().err
    assert main(["--data", str(ferplus), "--limit", "24", "--crop-margin", "-0.7"]) == 1
    assert "crop_margin must be from -0.5 to 2" in capsys.readouterr().err
    assert main(["--data", str(ferplus), "--limit", "4", "--size", "12"]) == 1  # MTCNN's floor: no face
    assert "MTCNN found none of the" in capsys.readouterr().err


def test_a_wider_crop_margin_is_measured_as_a_wider_crop(ferplus):
    tight = pipeline_eval(DEFAULT_MODEL_DIR, ferplus, limit=24, crop_margin=-0.05, progress=False)
    wide = pipeline_eval(DEFAULT_MODEL_DIR, ferplus, limit=24, crop_margin=0.2, progress=False)
    assert (tight.crop_margin, wide.crop_margin) == (-0.05, 0.2)
    assert wide.crop_side == pytest.approx(tight.crop_side * 1.2 / 0.95, rel=1e-6)
    assert wide.crop_accuracy_all == tight.crop_accuracy_all  # the dataset crops do not change


def test_two_models_compared_face_for_face(ferplus, tmp_path, capsys):
    wide = tmp_path / "wide"  # the bundled weights, cropping wider: a different model on the pipeline
    shutil.copytree(DEFAULT_MODEL_DIR, wide)
    config = json.loads((wide / "config.json").read_text())
    (wide / "config.json").write_text(json.dumps({**config, "crop_margin": 0.3}))
    this = pipeline_eval(DEFAULT_MODEL_DIR, ferplus, limit=LIMIT, progress=False)
    other = pipeline_eval(wide, ferplus, limit=LIMIT, progress=False)
    assert np.array_equal(this.detected, other.detected)  # MTCNN is deterministic: the same faces
    # so another model can be measured on the first one's detections, with the same result
    reused = pipeline_eval(wide, ferplus, limit=LIMIT, progress=False, detections_from=this)
    assert np.array_equal(reused.detected, other.detected) and reused.crop_side == other.crop_side
    assert [(p.accuracy, p.balanced_accuracy, p.recall) for p in reused.paths] == [
        (p.accuracy, p.balanced_accuracy, p.recall) for p in other.paths]
    with pytest.raises(ValueError, match="detections_from measured"):
        pipeline_eval(wide, ferplus, limit=LIMIT, size=96, progress=False, detections_from=this)
    pair = paired_paths(this, other)
    aligned, other_aligned = this.paths[1], other.paths[1]
    assert pair.n_faces == this.n_detected == len(aligned.right)
    assert (pair.accuracy, pair.other_accuracy) == (aligned.accuracy, other_aligned.accuracy)
    assert pair.only_this - pair.only_other == round((pair.accuracy - pair.other_accuracy) * pair.n_faces)
    assert pair.only_this + pair.only_other > 0  # the wider crop changes some decisions
    assert pair.balanced is not None and pair.balanced[0] == aligned.balanced_accuracy
    assert paired_paths(this, this).only_this == paired_paths(this, this).only_other == 0
    with pytest.raises(ValueError, match="different faces"):
        paired_paths(this, pipeline_eval(wide, ferplus, limit=LIMIT // 2, progress=False))
    with pytest.raises(ValueError, match="no path 'scan'"):
        paired_paths(this, other, path="scan")
    assert main(["--data", str(ferplus), "--limit", "24", "--against", str(wide)]) == 0
    out = capsys.readouterr().out
    assert f"against {wide} (crop_margin +0.300), pipeline, aligned, the " in out
    assert "balanced  accuracy" in out and "by the other only" in out

"""Knowledge distillation: teacher probabilities on real FER+ faces, target mixing, and a tiny real run."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from fer_core.model import load_model
from fer_core.recognizer import EmotionRecognizer
from fer_train.data import LabelledFaces, load_split
from fer_train.export import export
from fer_train.labels import vote_distribution
from research.distill import CACHE_NAME, set_teacher, teacher_pass_seconds, teacher_probabilities
from research.train import main as train_main
from tests.conftest import TINY_RUN as TINY

pytestmark = pytest.mark.usefixtures("torch_home")


@pytest.fixture(scope="module")
def faces(ferplus):
    return load_split(ferplus, "train", limit=40)


def test_teacher_probabilities_are_the_recognizers_flip_averaged_calibrated_output(faces, model_dir):
    probs = teacher_probabilities([model_dir], faces.images, batch_size=16)
    assert probs.dtype == np.float32 and probs.shape == (40, 8)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    rec = EmotionRecognizer(load_model(model_dir))
    crops = [Image.fromarray(face, mode="L") for face in faces.images]
    # teachers give the plain calibrated probabilities, whatever the model's default operating point
    p = rec.classify_crops(crops, balanced=False).astype(np.float64)
    p_flip = rec.classify_crops([ImageOps.mirror(c) for c in crops], balanced=False).astype(np.float64)
    # softmax(mean logits / T) == softmax(mean of log softmax(logits / T)): same preprocessing, same T
    log_mean = (np.log(p) + np.log(p_flip)) / 2
    expected = np.exp(log_mean) / np.exp(log_mean).sum(1, keepdims=True)
    np.testing.assert_allclose(probs, expected, atol=1e-4)


def test_an_ensemble_is_the_mean_of_its_teachers(faces, model_dir, random_model_dir):
    one = teacher_probabilities([model_dir], faces.images[:8])
    other = teacher_probabilities([random_model_dir], faces.images[:8])
    both = teacher_probabilities([model_dir, random_model_dir], faces.images[:8])
    np.testing.assert_allclose(both, (one + other) / 2, atol=1e-6)
    assert not np.allclose(one, other, atol=1e-3)


def test_teachers_must_predict_the_ferplus_labels_in_order(tmp_path, faces, random_model_dir):
    with pytest.raises(ValueError, match="at least one teacher"):
        teacher_probabilities([], faces.images)
    bad = tmp_path / "bad"
    shutil.copytree(random_model_dir, bad)
    config = json.loads((bad / "config.json").read_text())
    config["labels"] = config["labels"][::-1]
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="not the FER\\+ labels"):
        teacher_probabilities([bad], faces.images)


def test_targets_mix_votes_and_teacher(faces):
    data = LabelledFaces(faces, "crossentropy", lambda face: torch.zeros(3, 8, 8))
    rng = np.random.default_rng(0)
    teacher = rng.dirichlet(np.ones(8), size=len(data)).astype(np.float32)
    set_teacher(data, teacher, 0.3)
    kept = [v for v in faces.votes if vote_distribution(v, "crossentropy") is not None]
    for i in (0, 5, len(data) - 1):
        _, target, label = data[i]
        expected = 0.7 * vote_distribution(kept[i], "crossentropy") + 0.3 * teacher[i]
        np.testing.assert_allclose(target.numpy(), expected, atol=1e-6)
        assert label == int(vote_distribution(kept[i], "crossentropy").argmax())  # accuracy stays on the votes
    with pytest.raises(ValueError, match="shape"):
        set_teacher(data, teacher[:-1], 0.3)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        set_teacher(data, teacher, 1.5)


def test_distilled_run_caches_teachers_records_them_and_resumes(tmp_path, ferplus, model_dir, capsys):
    out = tmp_path / "kd"
    base = ["--data", str(ferplus), "--out", str(out), "--teacher", str(model_dir), "--distill-weight", "0.6",
            *TINY]
    assert train_main([*base, "--epochs", "2", "--stop-after-epoch", "1"]) == 0
    assert "distillation: 1 teacher(s), weight 0.6" in capsys.readouterr().out
    cache = out / CACHE_NAME
    n_train = json.loads((out / "args.json").read_text())["n_train"]
    with np.load(cache) as cached:
        assert cached["probs"].shape == (n_train, 8)
    seconds = teacher_pass_seconds(out)
    assert seconds is not None and seconds > 0
    stamp = cache.stat().st_mtime_ns
    recipe = json.loads((out / "best" / "config.json").read_text())["recipe"]
    assert recipe["teachers"] == [str(model_dir)] and recipe["distill_weight"] == 0.6
    assert train_main([*base, "--epochs", "2", "--resume"]) == 0
    assert cache.stat().st_mtime_ns == stamp  # reused, not recomputed
    export(out, tmp_path / "export", crop_margin=0.0, limit=100)
    card = (tmp_path / "export" / "README.md").read_text()
    assert "Knowledge distillation" in card and str(model_dir) in card
    # the training time counts the run and the teacher pass (the bundled teacher has no run beside it)
    run_minutes = json.loads((out / "metrics.json").read_text())[-1]["elapsed_s"] / 60
    exported = json.loads((tmp_path / "export" / "config.json").read_text())["recipe"]
    assert exported["train_minutes"] == round(run_minutes + seconds / 60, 1)


def test_distillation_rejects_multi_target_and_bad_weights(tmp_path, ferplus, model_dir, capsys):
    base = ["--data", str(ferplus), "--out", str(tmp_path / "x"), "--teacher", str(model_dir), "--epochs", "1",
            *TINY]
    assert train_main([*base, "--label-mode", "multi_target"]) == 1
    assert "not multi_target" in capsys.readouterr().err
    assert train_main([*base, "--distill-weight", "1.5"]) == 1
    assert "distill_weight must be in [0, 1]" in capsys.readouterr().err
    missing = tmp_path / "no_such_model"
    assert train_main([*base, "--teacher", str(missing)]) == 1
    assert str(missing) in capsys.readouterr().err

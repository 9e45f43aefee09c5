"""Balanced decisions (post-hoc logit adjustment): the documented formula, the argmax moving to
rare classes, config validation, and the switch in the recognizer and the CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from fer_core.config import ModelConfig
from fer_core.errors import ModelLoadError
from fer_core.model import EmotionNet, load_model
from fer_core.recognizer import EmotionRecognizer
from tests.conftest import CANVAS_CROPS, ROOT

#: FER+ Train class counts (crossentropy mode), add-one smoothed, as the training loop stores them.
COUNTS = np.array([10107, 7501, 3517, 3445, 2401, 170, 643, 163]) + 1
PRIOR = [float(c) for c in COUNTS / COUNTS.sum()]


def test_balanced_probabilities_follow_the_formula_and_favour_rare_classes():
    model = EmotionNet(ModelConfig(input_size=32, prior=PRIOR, tau=1.0, temperature=0.8))
    # neutral slightly ahead of disgust in the logits: plain says neutral, balanced says disgust
    logits = torch.tensor([[2.0, 0.0, 0.0, 0.0, 0.0, 1.5, 0.0, 0.0]])
    plain = model.probabilities(logits, balanced=False)
    balanced = model.probabilities(logits, balanced=True)
    assert plain.argmax().item() == 0 and balanced.argmax().item() == 5
    want = plain.numpy() / np.asarray(PRIOR) ** 1.0
    assert np.allclose(balanced.numpy(), want / want.sum(), atol=1e-6)
    assert torch.allclose(balanced.sum(1), torch.ones(1))
    # tau 0 is the plain operating point; the model's default follows config.balanced
    model.config.tau = 0.0
    assert torch.allclose(model.probabilities(logits, balanced=True), plain)
    model.config.tau, model.config.balanced = 0.5, True
    half = plain.numpy() / np.asarray(PRIOR) ** 0.5
    assert np.allclose(model.probabilities(logits).numpy(), half / half.sum(), atol=1e-6)


@pytest.mark.parametrize("change, message", [
    ({"prior": [0.5, 0.5]}, "'prior' must be"),
    ({"prior": [0.2] * 8}, "'prior' must be"),
    ({"prior": [0.0] + [1 / 7] * 7}, "'prior' must be"),
    ({"tau": -1}, "'tau' must be"),
    ({"balanced": True}, "'balanced' must be false when there is no 'prior'"),
    ({"balanced": "yes", "prior": PRIOR}, "'balanced' must be true or false"),
])
def test_bad_balance_settings_are_refused(change, message):
    with pytest.raises(ModelLoadError, match=message):
        ModelConfig.from_dict({"backbone": "mobilenet_v2", **change})


def test_recognizer_switch_and_model_without_prior(random_model_dir, ferplus, tmp_path):
    crops = [Image.open(ferplus / "FER2013Valid" / n) for n in CANVAS_CROPS]
    rec = EmotionRecognizer(load_model(random_model_dir))
    with pytest.raises(ValueError, match="class prior"):
        rec.classify_crops(crops, balanced=True)
    with pytest.raises(ValueError, match="class prior"):
        rec.predict(np.zeros((64, 64, 3), np.uint8), balanced=True)
    folder = tmp_path / "with_prior"
    shutil.copytree(random_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "prior": PRIOR, "tau": 1.0}))
    rec = EmotionRecognizer(load_model(folder))
    plain = rec.classify_crops(crops)  # config.balanced defaults to false
    balanced = rec.classify_crops(crops, balanced=True)
    want = plain / np.asarray(PRIOR)
    assert np.allclose(balanced, want / want.sum(1, keepdims=True), atol=1e-5)
    assert np.allclose(rec.classify_crops(crops, balanced=False), plain, atol=1e-6)


def test_cli_balanced_flag(random_model_dir, ferplus, tmp_path):
    crop = ferplus / "FER2013Valid" / CANVAS_CROPS[0]
    proc = subprocess.run([sys.executable, "-m", "fer_core", str(crop), "--crops", "--balanced", "--model",
                           str(random_model_dir)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "class prior" in proc.stderr
    folder = tmp_path / "with_prior"
    shutil.copytree(random_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "prior": PRIOR, "tau": 1.0, "balanced": True}))
    docs = {}
    for flag in ("--balanced", "--no-balanced"):
        proc = subprocess.run([sys.executable, "-m", "fer_core", str(crop), "--crops", "--json", flag, "--model",
                               str(folder)], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        docs[flag] = json.loads(proc.stdout)[0]["probs"]
    plain = np.array(list(docs["--no-balanced"].values()))
    want = plain / np.asarray(PRIOR)
    assert np.allclose(list(docs["--balanced"].values()), want / want.sum(), atol=1e-4)

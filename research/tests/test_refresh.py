"""python -m research.refresh: an exported folder re-calibrated, re-evaluated and its card re-rendered in place."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from fer_train.__main__ import main as train_main
from fer_train.export import export
from research.refresh import main as refresh_main
from tests.conftest import TINY_RUN as TINY

pytestmark = pytest.mark.usefixtures("torch_home")


def test_a_config_change_re_renders_the_card_and_leaves_the_weights(tmp_path, ferplus, capsys):
    run, out = tmp_path / "run", tmp_path / "export"
    assert train_main(["--data", str(ferplus), "--out", str(run), "--epochs", "1", *TINY]) == 0
    export(run, out, crop_margin=0.0, limit=300)
    weights = load_file(str(out / "model.safetensors"))
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "balanced": True, "tau": 0.5}))
    assert refresh_main([str(out), "--data", str(ferplus), "--limit", "300"]) == 0
    assert "Default in this model: balanced" in (out / "README.md").read_text()
    assert json.loads((out / "report.json").read_text())["balanced"]["tau"] == 0.5
    assert all(torch.equal(v, weights[k]) for k, v in load_file(str(out / "model.safetensors")).items())
    assert refresh_main([str(tmp_path / "none"), "--data", str(ferplus)]) == 1
    assert "config.json not found" in capsys.readouterr().err

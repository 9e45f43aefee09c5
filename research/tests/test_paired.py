"""``python -m research.paired``: two models face for face on the same FER+ faces, exact McNemar test;
a final fit is measured on its held-out fold alone."""

from __future__ import annotations

import json
import shutil

import pytest

from fer_train.evaluate import evaluate
from research.paired import main as paired_main
from research.paired import paired


def as_final_fit(source, folder, share):
    """A copy of a model folder whose recipe says it held out ``share`` of Valid (as ``--final-fit``)."""
    shutil.copytree(source, folder)
    config = json.loads((folder / "config.json").read_text())
    config["recipe"] = {**config.get("recipe", {}), "final_fit": share}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_a_final_fit_is_paired_on_its_fold(tmp_path, ferplus, model_dir, random_model_dir, capsys):
    final = as_final_fit(model_dir, tmp_path / "final", 0.25)
    report = evaluate(final, ferplus, "valid", out_dir=tmp_path / "eval", limit=128)
    vs_random = paired(random_model_dir, final, ferplus, limit=128)
    assert vs_random.n_images == report["n_images"] < 128 and vs_random.faces == "valid held-out fold (0.25)"
    assert vs_random.accuracy_b == pytest.approx(report["accuracy"])
    gap = (vs_random.accuracy_a - vs_random.accuracy_b) * report["n_images"]
    assert vs_random.only_a - vs_random.only_b == round(gap)
    assert 0.0 < vs_random.p_value <= 1.0
    same = paired(final, final, ferplus, limit=128)
    assert (same.only_a, same.only_b, same.p_value) == (0, 0, 1.0)
    assert paired_main([str(random_model_dir), str(final), "--data", str(ferplus), "--limit", "128"]) == 0
    assert "exact McNemar p = " in capsys.readouterr().out
    other = as_final_fit(model_dir, tmp_path / "other_fold", 0.5)  # another share: no face unseen by both
    assert paired_main([str(other), str(final), "--data", str(ferplus), "--limit", "128"]) == 1
    assert "different shares of Valid" in capsys.readouterr().err

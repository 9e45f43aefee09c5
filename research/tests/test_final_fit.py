"""A final fit (research.final_fit through python -m research.train): the held-out fold, the run on Train
plus the rest of Valid, and calibrate / evaluate / export measuring the model on its fold."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from fer_train.calibrate import calibrate
from fer_train.data import LabelledFaces, load_split
from fer_train.evaluate import evaluate
from research.final_fit import concat, holdout_mask
from research.train import main as train_main
from tests.conftest import TINY_RUN as TINY

pytestmark = pytest.mark.usefixtures("torch_home")


def test_holdout_fold_is_stratified_and_fixed(ferplus):
    valid = load_split(ferplus, "valid")
    votes = valid.votes
    mask = holdout_mask(votes, 0.2)
    assert mask.dtype == bool and mask.shape == (len(votes),)
    assert np.array_equal(mask, holdout_mask(votes, 0.2))  # the same fold every time (every seed of a recipe)
    assert not np.array_equal(mask, holdout_mask(votes, 0.2, seed=1))
    top = votes.argmax(1)
    for group in np.unique(top):  # each most-voted class keeps its share, rounded
        members = top == group
        assert mask[members].sum() == round(0.2 * members.sum())
    assert abs(mask.mean() - 0.2) < 0.01
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="in \\(0, 1\\)"):
            holdout_mask(votes, bad)
    joined = concat(valid.subset(np.flatnonzero(~mask)), valid.subset(np.flatnonzero(mask)))
    assert len(joined) == len(votes) and sorted(joined.names) == sorted(valid.names)


def test_final_fit_trains_on_valid_but_its_fold_and_exports_the_last_epoch(tmp_path, ferplus, capsys):
    out = tmp_path / "final"
    base = ["--data", str(ferplus), "--out", str(out), "--final-fit", "0.25", *TINY]
    assert train_main([*base, "--epochs", "2"]) == 0
    printed = capsys.readouterr().out
    fold = holdout_mask(load_split(ferplus, "valid", limit=128).votes, 0.25)
    assert f"training on Train + {int((~fold).sum())} Valid faces; {int(fold.sum())} Valid faces held out" in printed
    args = json.loads((out / "args.json").read_text())
    model = out / "last"  # the fixed schedule's last epoch is the model
    recipe = json.loads((model / "config.json").read_text())["recipe"]
    assert recipe["final_fit"] == 0.25 and recipe["last_epoch"] == 2
    plain = LabelledFaces(load_split(ferplus, "train", limit=192), "crossentropy", None)
    assert args["n_train"] > len(plain)  # Train plus three quarters of Valid
    assert torch.equal(load_file(str(model / "model.safetensors"))["net.classifier.1.weight"],
                       torch.load(out / "last.pt", weights_only=True)["model"]["net.classifier.1.weight"])
    # calibrate fits the temperature on the fold and writes it; evaluate only reads the model folder
    before = json.loads((model / "config.json").read_text())
    assert train_main(["calibrate", str(model), "--data", str(ferplus), "--limit", "128"]) == 0
    assert "temperature " in capsys.readouterr().out
    config = json.loads((model / "config.json").read_text())
    assert config["temperature"] != 1.0 and "held-out fold" in config["recipe"]["temperature_fitted_on"]
    before["recipe"]["temperature_fitted_on"] = config["recipe"]["temperature_fitted_on"]
    assert config == {**before, "temperature": config["temperature"]}  # nothing else changed
    stored = {p.name: p.read_bytes() for p in model.iterdir()}
    report = evaluate(model, ferplus, "valid", out_dir=tmp_path / "eval", limit=128)
    assert {p.name: p.read_bytes() for p in model.iterdir()} == stored  # read-only
    assert report["n_images"] == args["n_valid"] < fold.sum() + 1  # the fold alone, not the faces trained on
    assert report["split"] == "valid held-out fold (0.25)" and "held-out fold" in report["temperature_fitted_on"]
    assert report["temperature"] == config["temperature"]
    assert calibrate(model, ferplus, limit=128) == pytest.approx(config["temperature"])  # same fold
    # export takes the last epoch of a final fit and says so in the card
    assert train_main(["export", "--run", str(out), "--out", str(tmp_path / "export"), "--crop-margin", "0",
                          "--limit", "128"]) == 0
    exported = json.loads((tmp_path / "export" / "config.json").read_text())["recipe"]
    assert exported["last_epoch"] == 2 and "held out" in exported["data"]
    card = (tmp_path / "export" / "README.md").read_text()
    assert "final fit" in card and "FER+ Valid held-out fold" in card and "no selection" in card
    assert train_main([*base, "--epochs", "2", "--final-fit", "1.0"]) == 1
    assert "final_fit" in capsys.readouterr().err

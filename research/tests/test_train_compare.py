"""``python -m research.compare``: seeds of a recipe side by side, mean and spread."""

from __future__ import annotations

import json

import numpy as np
import pytest

from research.compare import compare, main, summarise_run


def write_run(folder, accs, uars, seed, epochs, final_fit=0.0):
    folder.mkdir(parents=True)
    rows = [{"epoch": i + 1, "valid_acc": a, "valid_uar": u, "elapsed_s": 60.0 * (i + 1)}
            for i, (a, u) in enumerate(zip(accs, uars))]
    (folder / "metrics.json").write_text(json.dumps(rows))
    (folder / "args.json").write_text(json.dumps({"seed": seed, "epochs": epochs, "final_fit": final_fit}))
    return folder


def test_best_epoch_mean_and_spread(tmp_path, capsys):
    a = write_run(tmp_path / "s0", [0.80, 0.86, 0.85], [0.6, 0.7, 0.72], 0, 3)
    b = write_run(tmp_path / "s1", [0.81, 0.84, 0.85], [0.6, 0.65, 0.69], 1, 4)
    ra, rb = summarise_run(a), summarise_run(b)
    assert (ra.epoch, ra.valid_acc, ra.valid_uar, ra.last_acc, ra.finished) == (2, 0.86, 0.7, 0.85, True)
    assert (rb.epoch, rb.valid_acc, rb.finished, rb.minutes) == (3, 0.85, False, 3.0)
    stats = compare([a, b])
    assert stats["valid_acc"]["mean"] == pytest.approx(0.855)
    assert stats["valid_acc"]["spread"] == pytest.approx(0.01)
    assert stats["valid_acc"]["std"] == pytest.approx(np.std([0.86, 0.85], ddof=1))
    assert stats["valid_uar"]["mean"] == pytest.approx(0.695)
    assert main([str(a), str(b)]) == 0
    printed = capsys.readouterr().out
    assert "in progress: 3/4 epochs" in printed and "0.8550" in printed and "spread" in printed


def test_final_fit_takes_the_last_epoch_and_bad_runs_are_named(tmp_path, capsys):
    f = write_run(tmp_path / "final", [0.80, 0.86, 0.85], [0.6, 0.7, 0.72], 0, 3, final_fit=0.2)
    assert summarise_run(f).epoch == 3 and summarise_run(f).valid_acc == 0.85
    (f / "args.json").write_text(json.dumps({"seed": 0, "epochs": 3, "extra": {"final_fit": 0.2}}))  # research.train
    assert summarise_run(f).epoch == 3
    assert main([str(f), str(tmp_path / "missing")]) == 1
    assert "missing: no metrics.json" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "metrics.json").write_text("[]")
    assert main([str(tmp_path / "empty")]) == 1
    assert "empty or malformed" in capsys.readouterr().err

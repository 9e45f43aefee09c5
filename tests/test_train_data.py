"""Reading FER+ in its two forms here: the FERPlus folder layout and the raw Kaggle CSV pair; other forms
through fer_train.data.READERS (the packed file is research/tests/test_pack.py), and the faces a model is
measured on."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from fer_core.config import ModelConfig
from fer_core.errors import InvalidArgumentError
from fer_core.labels import VOTE_COLUMNS
from fer_train import data as data_module
from fer_train.data import DatasetError, VoteSplit, load_split, measured_faces, read_raw_csv

USAGES = ["Training", "Training", "PublicTest", "PrivateTest", "Training", "PublicTest"]


def write_raw_pair(folder, n=6, drop_name_row=4):
    rng = np.random.default_rng(1)
    pixels = [rng.integers(0, 256, 48 * 48) for _ in range(n)]
    votes = [[i % 8 + 2 if j == i % 8 else 0 for j in range(10)] for i in range(n)]
    with (folder / "fer2013.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["emotion", "pixels", "Usage"])
        for i in range(n):
            w.writerow([0, " ".join(map(str, pixels[i])), USAGES[i]])
    with (folder / "fer2013new.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Usage", "Image name", *VOTE_COLUMNS])
        for i in range(n):
            name = "" if i == drop_name_row else f"fer{i:07d}.png"
            w.writerow([USAGES[i], name, *votes[i]])
    return pixels, votes


def test_raw_csv_pair(tmp_path):
    pixels, votes = write_raw_pair(tmp_path)
    train = load_split(tmp_path, "train")
    assert train.names == ["fer0000000.png", "fer0000001.png"]  # row 4 has no FER+ name: skipped
    assert np.array_equal(train.images[1], np.asarray(pixels[1], dtype=np.uint8).reshape(48, 48))
    assert train.votes[1].tolist() == votes[1]
    valid = load_split(tmp_path, "valid")
    assert valid.names == ["fer0000002.png", "fer0000005.png"]
    assert len(load_split(tmp_path, "test")) == 1


def test_raw_csv_mismatch(tmp_path):
    write_raw_pair(tmp_path)
    lines = (tmp_path / "fer2013new.csv").read_text().splitlines()
    (tmp_path / "fer2013new.csv").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(ValueError, match="rows"):
        read_raw_csv(tmp_path / "fer2013.csv", tmp_path / "fer2013new.csv", "train")


def test_ferplus_layout(ferplus):
    split = load_split(ferplus, "train", limit=50)
    assert len(split) == 50 and split.images.dtype == np.uint8 and split.votes.shape == (50, 10)
    assert split.names[0] == "fer0000000.png"
    assert split.votes[0].tolist() == [4, 0, 0, 1, 3, 2, 0, 0, 0, 0]


def test_missing_split(tmp_path):
    with pytest.raises(DatasetError, match="label.csv"):
        load_split(tmp_path, "test")


def test_a_registered_reader_and_measure_hook_are_used(tmp_path, ferplus, monkeypatch):
    # READERS: tried first, a reader answers for its own form (None: not mine)
    faces = VoteSplit(np.zeros((2, 48, 48), np.uint8), np.eye(2, 10, dtype=np.float32) * 5, ["a", "b"])
    seen = []

    def reader(path, split, limit):
        seen.append((path.name, split, limit))
        return faces if path.suffix == ".mine" else None

    monkeypatch.setattr(data_module, "READERS", [reader])
    assert load_split(tmp_path / "x.mine", "train", limit=3) is faces and seen == [("x.mine", "train", 3)]
    assert len(load_split(ferplus, "valid", limit=5)) == 5  # not its form: the folder as before
    # MEASURE_HOOKS: the faces a model is measured on, the whole split unless a hook picks others
    config = ModelConfig()
    whole, name = measured_faces(ferplus, "valid", config, limit=6)
    assert len(whole) == 6 and name == "valid"
    monkeypatch.setattr(data_module, "MEASURE_HOOKS", [
        lambda split_faces, cfg, split: (split_faces.subset([0, 1]), "two") if split == "valid" else None])
    picked, name = measured_faces(ferplus, "valid", config, limit=6)
    assert picked.names == whole.names[:2] and name == "two"
    assert measured_faces(ferplus, "train", config, limit=6)[1] == "train"  # a split the hook leaves


def test_a_final_fit_is_never_measured_on_the_valid_faces_it_trained_on(ferplus, monkeypatch):
    monkeypatch.setattr(data_module, "MEASURE_HOOKS", [])  # research.final_fit not plugged in
    final_fit = ModelConfig(recipe={"final_fit": 0.25})
    with pytest.raises(InvalidArgumentError, match="final fit.*research.train"):
        measured_faces(ferplus, "valid", final_fit, limit=6)
    assert measured_faces(ferplus, "train", final_fit, limit=6)[1] == "train"  # other splits are not Valid



def test_calibrate_needs_a_model_folder_it_can_write(tmp_path):
    from fer_core.errors import ModelLoadError
    from fer_train.calibrate import calibrate

    with pytest.raises(ModelLoadError, match="no such model folder"):
        calibrate("someone/on-the-hub", tmp_path)
    assert not (tmp_path / "someone").exists()

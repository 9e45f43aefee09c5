"""Reading FER+ in its three forms: the FERPlus folder layout, the raw Kaggle CSV pair, a packed file
(writing one is research/tests/test_pack.py)."""

from __future__ import annotations

import csv
import io
import lzma

import numpy as np
import pytest

from fer_core.labels import VOTE_COLUMNS
from fer_train.data import DatasetError, holdout_mask, load_split, read_raw_csv

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
    joined = valid.subset(np.flatnonzero(~mask)).concat(valid.subset(np.flatnonzero(mask)))
    assert len(joined) == len(votes) and sorted(joined.names) == sorted(valid.names)


def test_not_a_packed_file_is_a_clear_error(tmp_path):
    png = tmp_path / "face.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    not_npz = tmp_path / "text.xz"
    not_npz.write_bytes(lzma.compress(b"name,votes\n"))
    for path in (png, not_npz):
        with pytest.raises(DatasetError, match="is not a packed FER\\+ file"):
            load_split(path, "train")
    bad = tmp_path / "bad.npz.xz"
    raw = io.BytesIO()
    np.savez(raw, train_images=np.zeros((2, 32, 32), np.uint8), train_votes=np.zeros((2, 10), np.float32),
             train_names=np.asarray(["a", "b"]))
    bad.write_bytes(lzma.compress(raw.getvalue()))
    with pytest.raises(DatasetError, match="expected uint8 \\(2, 48, 48\\)"):
        load_split(bad, "train")
    good = tmp_path / "good.npz.xz"  # the same arrays at the right size read back as they are
    raw = io.BytesIO()
    faces = np.arange(2 * 48 * 48, dtype=np.uint32).reshape(2, 48, 48).astype(np.uint8)
    np.savez(raw, train_images=faces, train_votes=np.eye(2, 10, dtype=np.float32) * 5,
             train_names=np.asarray(["a", "b"]))
    good.write_bytes(lzma.compress(raw.getvalue()))
    split = load_split(good, "train")
    assert split.names == ["a", "b"] and np.array_equal(split.images, faces) and split.votes[1, 1] == 5
    assert load_split(good, "train", limit=1).names == ["a"]

"""``python -m research.pack``: FER+ as one packed file that reads back exactly as the folder it came from."""

from __future__ import annotations

import io
import lzma
import subprocess

import numpy as np
import pytest

from fer_train.data import DatasetError, load_split
from research.pack import main as pack_main
from research.pack import pack_splits
from research.train import main as train_main
from tests.conftest import TINY_RUN


def test_packed_file_reads_back_exactly_the_folder(ferplus, tmp_path, capsys):
    packed = tmp_path / "ferplus.npz.xz"
    assert pack_main(["--data", str(ferplus), "--out", str(packed), "--limit", "300"]) == 0
    assert f"packed train 300, valid 300 faces into {packed}" in capsys.readouterr().out
    for split in ("train", "valid"):
        folder, pack = load_split(ferplus, split, limit=300), load_split(packed, split)
        assert pack.names == folder.names and pack.votes.dtype == np.float32
        assert np.array_equal(pack.images, folder.images) and np.array_equal(pack.votes, folder.votes)
    assert load_split(packed, "valid", limit=7).names == load_split(ferplus, "valid", limit=7).names
    missing = "holds no complete 'test' split \\(missing test_images, test_votes, test_names; it holds \\['train'"
    with pytest.raises(DatasetError, match=missing):
        load_split(packed, "test")


def test_training_reads_a_packed_file(ferplus, tmp_path, torch_home, capsys):
    packed = tmp_path / "ferplus.npz.xz"
    pack_splits(ferplus, packed, ["train", "valid"], limit=192)
    assert train_main(["--data", str(packed), "--out", str(tmp_path / "run"), "--epochs", "1", *TINY_RUN]) == 0
    assert "train 192 images -> " in capsys.readouterr().out
    assert (tmp_path / "run" / "best" / "model.safetensors").is_file()


def test_pack_refuses_a_path_git_would_commit(ferplus, tmp_path):
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / ".gitignore").write_text("runs/\n")
    with pytest.raises(ValueError, match="never be committed"):
        pack_splits(ferplus, repo / "ferplus.npz.xz", ["valid"], limit=4)
    assert not (repo / "ferplus.npz.xz").exists()
    assert pack_splits(ferplus, repo / "runs" / "ferplus.npz.xz", ["valid"], limit=4) == {"valid": 4}
    with pytest.raises(ValueError, match="splits must be distinct"):
        pack_splits(ferplus, repo / "runs" / "x.npz.xz", ["valid", "valid"])


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

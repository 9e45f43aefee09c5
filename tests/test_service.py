"""app_ui.service helpers: the CSV of a batch, pruning of download folders."""

from __future__ import annotations

import csv
import io
import os
import time

import pytest

from app_ui.service import batch_folder, results_csv
from fer_core import LABELS


def test_results_csv_has_a_row_per_face_and_per_error():
    probs = {k: 1 / 8 for k in LABELS}
    face = {"box": [1, 2, 3, 4], "score": 0.99, "label": "neutral", "probs": probs}
    rows = list(csv.reader(io.StringIO(results_csv(
        [{"file": "a.jpg", "faces": [face, face]}, {"file": "b.txt", "error": "not an image"}], list(LABELS)))))
    assert rows[0][:8] == ["file", "face", "x1", "y1", "x2", "y2", "score", "label"] and rows[0][-1] == "error"
    assert [r[:2] for r in rows[1:]] == [["a.jpg", "1"], ["a.jpg", "2"], ["b.txt", ""]]
    assert rows[3][-1] == "not an image" and len(rows[1]) == len(rows[0])


def test_batch_folders_are_pruned(tmp_path):
    old = batch_folder(tmp_path)
    (old / "faces.csv").write_text("x")
    past = time.time() - 7200
    os.utime(old, (past, past))
    new = batch_folder(tmp_path)
    assert new.is_dir() and not old.exists()


def test_gr_api_files_must_come_from_the_upload_folder(tmp_path, monkeypatch):
    import gradio as gr

    from app_ui.blocks import uploaded_path

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "uploads"))
    inside = tmp_path / "uploads" / "abc" / "photo.jpg"
    inside.parent.mkdir(parents=True)
    inside.write_bytes(b"x")
    assert uploaded_path({"path": str(inside), "meta": {"_type": "gradio.FileData"}}) == str(inside)
    assert uploaded_path(None) is None and uploaded_path({"path": ""}) is None
    for outside in ("/etc/passwd", str(tmp_path / "uploads" / ".." / "secret.jpg")):
        with pytest.raises(gr.Error, match="must be uploaded"):
            uploaded_path({"path": outside})

"""The local engine: every file through :func:`~fer_core.corpus.work.process_file` in this process, with a
tqdm bar; the recognizer is loaded once."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .work import JobOptions, process_file


def run_local(paths: Sequence[Path], out_dir: Path, job: JobOptions, *, recognizer: Any = None,
              threads: int | None = None, progress: bool = True,
              on_record: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Process ``paths`` one by one in this process.

    Args:
        paths: the job's input files (:func:`~fer_core.corpus.inputs.expand_inputs`).
        out_dir: the job's output folder (``faces/`` and ``done/`` existing).
        job: the job's options.
        recognizer: an already loaded recognizer for ``job``'s model; ``None`` loads one.
        threads: ONNX Runtime threads when loading (``None``: the library's default).
        progress: show a tqdm bar (files).
        on_record: called with each file's record as soon as it is done.

    Returns:
        One record per path, in input order (see :func:`~fer_core.corpus.work.process_file`).

    Raises:
        ModelLoadError: the model cannot be loaded.
    """
    if recognizer is None:
        from ..recognizer import EmotionRecognizer

        recognizer = EmotionRecognizer.from_pretrained(job.model_id, revision=_hub_revision(job), threads=threads)
    records = []
    for path in tqdm(paths, desc="corpus", unit="file", disable=not progress):
        record = process_file(recognizer, path, out_dir, job)
        records.append(record)
        if on_record:
            on_record(record)
    return records


def _hub_revision(job: JobOptions) -> str | None:
    """The revision to load ``job``'s model at: its Hub commit, or ``None`` for a folder (``sha256:...``)."""
    return None if job.revision.startswith("sha256:") else job.revision

"""Corpus jobs: the recognizer over many images and videos, to a Parquet dataset, resumably.

``python -m fer_core.corpus INPUT... --out OUT_DIR [--engine auto|local|ray]`` (see docs/corpus.md), or
:func:`run_job`. Output: ``OUT_DIR/faces/`` (one Parquet part per input file with faces; columns in
:mod:`fer_core.corpus.schema`), ``OUT_DIR/errors.parquet`` and ``OUT_DIR/manifest.json``. Reading it back:
``pandas.read_parquet(OUT_DIR / "faces")``.

Ray (the ``scale`` extra) is imported only by the Ray engine.
"""

from __future__ import annotations

from .job import run_job

__all__ = ["run_job"]

"""Corpus jobs: the recognizer over many images and videos, to a Parquet dataset, resumably.

``python -m fer_core.corpus INPUT... --out OUT_DIR [--engine auto|local|ray]`` (see docs/corpus.md), or
:func:`run_job`. Output: ``OUT_DIR/faces/`` (one Parquet part per input file with faces; columns in
:mod:`fer_core.corpus.schema`), ``OUT_DIR/errors.parquet`` and ``OUT_DIR/manifest.json``. Reading it back:
``pandas.read_parquet(OUT_DIR / "faces")``.

Needs pyarrow (the ``scale`` extra: ``pip install 'fer-core[scale]'``); Ray, also in that extra, is imported
only by the Ray engine. This package itself imports neither, so ``python -m fer_core.corpus`` can say what to
install instead of failing on the import (:func:`require_pyarrow`).
"""

from __future__ import annotations

import importlib.util
from typing import Any

from ..errors import MissingDependencyError

__all__ = ["require_pyarrow", "run_job"]

#: The ``pip install`` line that adds what corpus jobs need (pyarrow; Ray for ``--engine ray``).
INSTALL_HINT = "pip install 'fer-core[scale]'"


def require_pyarrow() -> None:
    """Check that pyarrow is installed, without importing it.

    Raises:
        MissingDependencyError: pyarrow is missing; the message names it and :data:`INSTALL_HINT`.
    """
    if importlib.util.find_spec("pyarrow") is None:
        raise MissingDependencyError("corpus jobs need pyarrow (the scale extra), which is not installed: "
                                     f"{INSTALL_HINT}", name="pyarrow")


def __getattr__(name: str) -> Any:
    if name == "run_job":  # imported on first use: fer_core.corpus.job needs pyarrow
        from .job import run_job

        return run_job
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Where a model's files are: a local folder or a Hugging Face Hub snapshot. Torch-free.

Both inference back ends (:mod:`fer_core.classifier`: ONNX Runtime or torch) and
:func:`fer_core.model.load_model` resolve a model source here, so the file names and the Hub
download rules exist once.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .errors import ModelLoadError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
#: The ONNX export of the network (:mod:`fer_core.export_onnx`): input ``"input"``, output ``"logits"``.
ONNX_NAME = "model.onnx"
CARD_NAME = "README.md"

#: Folder of the trained default model shipped inside the package.
DEFAULT_MODEL_DIR: Path = Path(__file__).resolve().parent / "default_model"


def resolve_model_folder(source: str | os.PathLike, revision: str | None = None, *,
                         cache_dir: str | os.PathLike | None = None, local_files_only: bool = False,
                         token: str | bool | None = None,
                         files: Sequence[str] = (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME)) -> tuple[Path, str | None]:
    """The local folder holding a model's files: ``source`` itself when it is a folder, otherwise
    a snapshot of Hub repo ``source`` (only ``files``: by default ``config.json``,
    ``model.safetensors``, ``README.md``) downloaded with ``huggingface_hub.snapshot_download`` and
    cached (works offline from the cache; ``HF_ENDPOINT`` selects the server).

    Args:
        source: a folder, or a Hub repo id ``"user/name"``.
        revision: Hub branch, tag or commit (ignored for folders).
        cache_dir, local_files_only, token: passed to ``huggingface_hub.snapshot_download``.
        files: the file names to download from the Hub (a repo lacking one of them is not an error
            here; the loader that needs it reports it).

    Returns:
        ``(folder, commit)``: ``commit`` is the snapshot's commit hash, ``None`` for a folder.

    Raises:
        ModelLoadError: not a folder and not a valid repo id, or the Hub cannot give the repo.
    """
    if Path(source).is_dir():
        return Path(source), None
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    repo_id = str(source)
    try:
        path = snapshot_download(repo_id=repo_id, revision=revision, allow_patterns=list(files),
                                 cache_dir=cache_dir, local_files_only=local_files_only, token=token)
    except HFValidationError as exc:
        raise ModelLoadError(
            f"'{repo_id}' is neither an existing folder nor a valid Hub repo id ('user/name')"
        ) from exc
    except Exception as exc:  # network, auth, not found, offline without cache ...
        raise ModelLoadError(f"cannot get model '{repo_id}' from the Hub: {type(exc).__name__}: {exc}") from exc
    return Path(path), Path(path).name  # snapshot folders are named by commit hash

"""``python -m fer_train.push --model-dir DIR --repo-id USER/NAME [--private] [--revision REV] [--dry-run]``.

Uploads an exported model folder (``config.json``, ``model.safetensors``, ``model.onnx``, ``README.md``,
plots and reports) to the Hugging Face Hub with huggingface_hub (token from
``HF_TOKEN`` or ``hf auth login``; ``HF_ENDPOINT`` selects the server). ``--dry-run`` lists what
would be uploaded and touches nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from huggingface_hub import HfApi

from fer_core.config import ModelConfig
from fer_core.errors import ModelLoadError

#: Files of an exported folder that are uploaded (checkpoints and other stray files are not).
UPLOAD_PATTERNS = ["config.json", "model.safetensors", "model.onnx", "README.md", "*.png", "report.json",
                   "metrics.json"]


def files_to_upload(model_dir: Path) -> list[Path]:
    """The files of ``model_dir`` that :func:`push` uploads, sorted.

    Raises:
        ModelLoadError: ``config.json`` is invalid or ``model.safetensors`` / ``model.onnx`` (what
            ``fer_core`` runs by default) / ``README.md`` missing.
    """
    ModelConfig.from_file(model_dir / "config.json")
    for required in ("model.safetensors", "README.md"):
        if not (model_dir / required).is_file():
            raise ModelLoadError(f"{model_dir}: {required} missing; run python -m fer_train.export first")
    if not (model_dir / "model.onnx").is_file():
        raise ModelLoadError(f"{model_dir}: model.onnx missing (fer_core runs it by default); write it with "
                             f"python -m fer_core.export_onnx {model_dir}")
    return sorted({p for pattern in UPLOAD_PATTERNS for p in model_dir.glob(pattern) if p.is_file()})


def push(model_dir: str | Path, repo_id: str, private: bool = False, revision: str | None = None,
         dry_run: bool = False, commit_message: str = "Upload FER+ model") -> str | None:
    """Create the repo if needed and upload the folder; returns the commit URL (``None`` on dry run)."""
    model_dir = Path(model_dir)
    files = files_to_upload(model_dir)
    if dry_run:
        for f in files:
            print(f"would upload {f.name}  ({f.stat().st_size:,} bytes) -> {repo_id}"
                  + (f"@{revision}" if revision else ""))
        return None
    api = HfApi()
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    if revision:
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    info = api.upload_folder(folder_path=str(model_dir), repo_id=repo_id, revision=revision,
                             allow_patterns=[f.name for f in files], commit_message=commit_message)
    return str(info)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    p = argparse.ArgumentParser(prog="python -m fer_train.push", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", required=True)
    p.add_argument("--repo-id", required=True, help="USER/NAME")
    p.add_argument("--private", action="store_true")
    p.add_argument("--revision", default=None, help="branch to push to (created if missing)")
    p.add_argument("--dry-run", action="store_true", help="list the files, upload nothing")
    p.add_argument("--commit-message", default="Upload FER+ model")
    args = p.parse_args(argv)
    try:
        url = push(args.model_dir, args.repo_id, args.private, args.revision, args.dry_run, args.commit_message)
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # network / auth errors from the Hub
        print(f"error: upload to {args.repo_id} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if url:
        print(f"uploaded: {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

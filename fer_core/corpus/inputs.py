"""A corpus job's inputs: files, folders (recursive) and manifests expanded to a list of media files;
content hashing."""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from ..errors import InvalidArgumentError
from ..io import IMAGE_SUFFIXES
from ..video import VIDEO_SUFFIXES

#: Suffixes read as a manifest: one path per line (``.txt``, ``.lst``), or a CSV whose ``path`` column (else
#: its first column) holds the paths (``.csv``).
MANIFEST_SUFFIXES: frozenset[str] = frozenset({".txt", ".lst", ".csv"})
MEDIA_SUFFIXES: frozenset[str] = IMAGE_SUFFIXES | VIDEO_SUFFIXES
_CHUNK = 1 << 20


def media_kind(path: str | os.PathLike) -> str:
    """``"video"`` for a :data:`~fer_core.video.VIDEO_SUFFIXES` suffix (any case), else ``"image"``."""
    return "video" if Path(path).suffix.lower() in VIDEO_SUFFIXES else "image"


def read_manifest(path: Path) -> list[Path]:
    """The paths a manifest lists, relative ones taken from the manifest's folder.

    A ``.csv`` manifest uses its ``path`` column if its first row names one, else its first column
    (a first row that is not an existing file and not a media file name is taken as a header). Other
    manifests hold one path per line; blank lines and lines starting with ``#`` are skipped.

    Raises:
        InvalidArgumentError: the manifest cannot be read.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgumentError(f"manifest {str(path)!r} cannot be read: {exc}") from exc
    if path.suffix.lower() == ".csv":
        rows = [r for r in csv.reader(text.splitlines()) if r and r[0].strip()]
        column = 0
        if rows:
            header = [c.strip().lower() for c in rows[0]]
            if "path" in header:
                column, rows = header.index("path"), rows[1:]
            elif Path(rows[0][0]).suffix.lower() not in MEDIA_SUFFIXES and not (path.parent / rows[0][0]).exists():
                rows = rows[1:]
        entries = [r[column].strip() for r in rows if len(r) > column and r[column].strip()]
    else:
        entries = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [p if p.is_absolute() else path.parent / p for p in map(Path, entries)]


def expand_inputs(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand a job's inputs to the media files to process, absolute, without duplicates, in order.

    Args:
        inputs: files (an image or video, whatever its suffix, or a manifest: :data:`MANIFEST_SUFFIXES`),
            folders (every image and video file below, recursively, sorted; hidden files and folders are
            skipped), or paths that do not exist (kept: the job reports them as errors). A manifest's
            entries are expanded the same way, except that a manifest inside a manifest is a media file.

    Returns:
        Absolute paths (``Path.absolute``, symlinks not resolved), first occurrence kept.

    Raises:
        InvalidArgumentError: a manifest cannot be read.
    """
    seen: dict[Path, None] = {}

    def add(path: Path, manifests: bool) -> None:
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if not name.startswith(".") and Path(name).suffix.lower() in MEDIA_SUFFIXES:
                        seen.setdefault(Path(root, name).absolute(), None)
        elif manifests and path.suffix.lower() in MANIFEST_SUFFIXES and path.is_file():
            for entry in read_manifest(path):
                add(entry, manifests=False)
        else:
            seen.setdefault(path.absolute(), None)

    for item in inputs:
        add(Path(item), manifests=True)
    return list(seen)


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks.

    Raises:
        OSError: the file cannot be read (FileNotFoundError, IsADirectoryError, PermissionError, ...).
    """
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def path_hash(path: str | os.PathLike) -> str:
    """Short hex digest (16 chars) of a path's string, to name its part file."""
    return hashlib.sha256(str(path).encode("utf-8", "surrogatepass")).hexdigest()[:16]

"""``python -m research.pack --data DIR --out FILE``: FER+ splits packed into one xz-compressed file.

The FERPlus layout is about 32,000 small PNGs; a lent GPU machine receives a copy of the working
tree, capped at 64 MiB, and ``../shared`` does not travel with it. Packed, Train and Valid are one
file of about 50 MB (48x48 uint8 faces, the 10 vote counts and the image names of each split),
which travels as an ignored path named in the device tool's ``carry`` and is read back
(:func:`read_packed`) exactly as the folder it came from. Importing this module adds that reader
to :data:`fer_train.data.READERS`, so every ``--data`` option of ``python -m research.train``
(and of its ``calibrate``, ``evaluate``, ``export`` steps) takes a packed file.

FER2013's images are for research use and must never be committed: the output must be a path git
ignores (``runs/`` is), and this command refuses any other path inside a git work tree.
"""

from __future__ import annotations

import argparse
import io
import lzma
import subprocess
import zipfile
from pathlib import Path

import numpy as np

from fer_core.errors import InvalidArgumentError
from fer_core.labels import VOTE_COLUMNS
from fer_train import data as fer_data
from fer_train.data import FACE_SIZE, SPLIT_FOLDERS, DatasetError, VoteSplit, load_split


def read_packed(path: str | Path, split: str, limit: int | None = None) -> VoteSplit:
    """Read one split from a packed file (``python -m research.pack``).

    Args:
        path: the xz-compressed ``.npz`` file.
        split: ``train``, ``valid`` or ``test``.
        limit: keep only the first ``limit`` faces.

    Returns:
        The split, exactly as it was read from the folder or CSV form it was packed from.

    Raises:
        DatasetError: the file is not a packed FER+ file (not xz, not an ``.npz``, arrays missing
            or of the wrong shape or dtype), or it does not hold ``split``.
    """
    try:
        with lzma.open(path) as fh, np.load(io.BytesIO(fh.read()), allow_pickle=False) as arrays:
            keys = set(arrays.files)
            wanted = [f"{split}_images", f"{split}_votes", f"{split}_names"]
            missing = [k for k in wanted if k not in keys]
            if missing:
                held = sorted({k.rsplit("_", 1)[0] for k in keys})
                raise DatasetError(f"{path} holds no complete {split!r} split (missing {', '.join(missing)}; "
                                   f"it holds {held})")
            images, votes, names = (arrays[k] for k in wanted)
    except (lzma.LZMAError, EOFError, ValueError, OSError, zipfile.BadZipFile) as exc:
        if isinstance(exc, DatasetError):
            raise
        raise DatasetError(f"{path} is not a packed FER+ file (xz-compressed .npz): {exc}") from exc
    n = len(names)
    if (images.dtype != np.uint8 or images.shape != (n, FACE_SIZE, FACE_SIZE)
            or votes.shape != (n, len(VOTE_COLUMNS))):
        raise DatasetError(f"{path}: {split} arrays have shapes {images.shape} {images.dtype}, {votes.shape} "
                           f"for {n} names; expected uint8 ({n}, {FACE_SIZE}, {FACE_SIZE}) and ({n}, 10)")
    result = VoteSplit(images, votes.astype(np.float32), [str(name) for name in names])
    return result if limit is None else result.subset(range(min(limit, len(result))))


def packed_reader(path: Path, split: str, limit: int | None) -> VoteSplit | None:
    """The reader of :data:`fer_train.data.READERS`: :func:`read_packed` for a file, ``None`` for a folder."""
    return read_packed(path, split, limit=limit) if path.is_file() else None


if packed_reader not in fer_data.READERS:
    fer_data.READERS.append(packed_reader)


def _tracked_by_git(path: Path) -> bool:
    """True when ``path`` lies in a git work tree and git does not ignore it."""
    folder = path.resolve().parent
    while not folder.exists():  # the nearest folder that exists: git runs there
        folder = folder.parent
    try:
        ignored = subprocess.run(["git", "-C", str(folder), "check-ignore", "-q", str(path.resolve())],
                                 capture_output=True, check=False)
    except OSError:  # no git: nothing to protect
        return False
    return ignored.returncode == 1  # 0: ignored; 128: not in a work tree (or git failed)


def pack_splits(data: str | Path, out: str | Path, splits: list[str], limit: int | None = None,
                preset: int = 6) -> dict[str, int]:
    """Read ``splits`` from ``data`` and write them to ``out`` as one xz-compressed ``.npz``.

    Args:
        data: any form :func:`fer_train.data.load_split` reads (FERPlus folder, raw CSV pair, a pack).
        out: the file to write (replaced atomically if it exists).
        splits: names among ``train``, ``valid``, ``test``.
        limit: pack only the first ``limit`` faces of each split (for tests).
        preset: xz compression level, 0-9.

    Returns:
        Faces packed per split.

    Raises:
        InvalidArgumentError: an unknown or repeated split, or ``out`` lies in a git work tree
            and is not ignored (FER2013 images must not be committed).
        fer_train.data.DatasetError: a split cannot be read from ``data``.
    """
    out = Path(out)
    unknown = [s for s in splits if s not in SPLIT_FOLDERS]
    if unknown or not splits or len(set(splits)) != len(splits):
        raise InvalidArgumentError(f"splits must be distinct names among {sorted(SPLIT_FOLDERS)}, got {splits}")
    if _tracked_by_git(out):
        raise InvalidArgumentError(f"{out} is inside a git work tree and not ignored; FER2013 images must "
                                   "never be committed: write the pack under an ignored folder such as runs/")
    arrays: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for split in splits:
        faces = load_split(data, split, limit=limit)
        arrays[f"{split}_images"] = faces.images
        arrays[f"{split}_votes"] = faces.votes
        arrays[f"{split}_names"] = np.asarray(faces.names, dtype=str)
        counts[split] = len(faces)
    raw = io.BytesIO()
    np.savez(raw, **arrays)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    # A delta filter of one image row (48 bytes) before LZMA2 codes each pixel as its difference
    # from the pixel above: on FER faces 0.70 of the raw bytes, against 0.77 for LZMA2 alone.
    filters = [{"id": lzma.FILTER_DELTA, "dist": FACE_SIZE}, {"id": lzma.FILTER_LZMA2, "preset": preset}]
    partial.write_bytes(lzma.compress(raw.getvalue(), format=lzma.FORMAT_XZ, filters=filters))
    partial.replace(out)
    return counts


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the process exit status (2 for bad input, with the reason)."""
    p = argparse.ArgumentParser(prog="python -m research.pack", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="FER+ folder (FERPlus layout or raw CSV pair)")
    p.add_argument("--out", required=True, help="file to write, e.g. runs/ferplus.npz.xz (an ignored path)")
    p.add_argument("--splits", nargs="+", default=["train", "valid"], choices=sorted(SPLIT_FOLDERS))
    p.add_argument("--limit", type=int, default=None, help="only the first N faces of each split")
    args = p.parse_args(argv)
    try:
        counts = pack_splits(args.data, args.out, args.splits, limit=args.limit)
    except (InvalidArgumentError, ValueError) as exc:
        p.exit(2, f"error: {exc}\n")
    size = Path(args.out).stat().st_size
    faces = ", ".join(f"{split} {n:,}" for split, n in counts.items())
    print(f"packed {faces} faces into {args.out} ({size / 2**20:.1f} MiB); use it as --data {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

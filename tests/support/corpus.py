"""A test corpus of real faces for corpus jobs (tests/test_corpus.py, benchmarks/bench_corpus.py): FER+ Valid
crops pasted on grey canvases (0-4 faces each) in nested folders, a few broken images, and short clips
from tests/support/video_clips.py. Built at run time: no FER image is ever committed."""

from __future__ import annotations

import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from .video_clips import grey_clip, two_face_frames, write_two_face_clip, write_with_codec

#: FER+ Valid crops MTCNN finds at this tile size (tests/conftest.py CANVAS_CROPS), then more Valid crops.
KNOWN_FACES = ["fer0028642.png", "fer0028652.png", "fer0028643.png", "fer0028671.png", "fer0028657.png",
               "fer0028672.png"]
TILE, GAP = 128, 32


@dataclass
class Corpus:
    """What :func:`make_corpus` wrote.

    Attributes:
        root: the corpus folder (images under ``img/``, videos under ``video/``, ``extra.txt`` a manifest).
        images: the good images' paths; videos: the good videos' paths.
        broken: path -> the error type a corpus job must report for it.
        faces_pasted: path -> number of faces pasted on that canvas.
        duplicate: a path whose bytes equal those of ``images[0]`` (both must get their own rows).
    """

    root: Path
    images: list[Path] = field(default_factory=list)
    videos: list[Path] = field(default_factory=list)
    broken: dict[Path, str] = field(default_factory=dict)
    faces_pasted: dict[Path, int] = field(default_factory=dict)
    duplicate: Path | None = None

    @property
    def files(self) -> int:
        """All media files, good and broken."""
        return len(self.images) + len(self.videos) + len(self.broken)


def _canvas(faces: list[Image.Image], columns: int = 2) -> Image.Image:
    rows = max(1, (len(faces) + columns - 1) // columns)
    canvas = Image.new("RGB", (columns * (TILE + GAP) + GAP, rows * (TILE + GAP) + GAP), (128, 128, 128))
    for i, face in enumerate(faces):
        canvas.paste(face, (GAP + (i % columns) * (TILE + GAP), GAP + (i // columns) * (TILE + GAP)))
    return canvas


def make_corpus(ferplus: Path, root: Path, images: int = 160, videos: bool = True, seed: int = 0) -> Corpus:
    """Write a corpus under ``root`` (created).

    Args:
        ferplus: the FERPlus folder (``FER2013Valid/`` in it).
        root: where to write.
        images: good images (JPEG and PNG canvases of 0-4 FER+ faces, spread over ``img/a``, ``img/a/b``
            and ``img/c``; one more is a byte copy of the first, listed in :attr:`Corpus.duplicate`).
        videos: also three clips: a two-face H.264 MP4 (1 s), a faceless grey MP4 (0.5 s) and the two-face
            scene as MPEG-4 AVI (1 s), plus a truncated MP4 (broken).
        seed: the random layout's seed.

    Returns:
        A :class:`Corpus`. Broken files: 3 truncated JPEGs, 2 empty PNGs, 2 text files named .jpg
        (``InvalidImageError``), and with ``videos`` the truncated MP4 (``InvalidVideoError``).
    """
    rng = random.Random(seed)
    valid = ferplus / "FER2013Valid"
    pool = KNOWN_FACES + sorted(p.name for p in valid.glob("fer00287*.png"))[:24]
    tiles = {name: Image.open(valid / name).convert("RGB").resize((TILE, TILE), Image.Resampling.BICUBIC)
             for name in dict.fromkeys(pool)}
    corpus = Corpus(root)
    folders = [root / "img" / "a", root / "img" / "a" / "b", root / "img" / "c"]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    for i in range(images):
        n = rng.choice([0, 1, 1, 2, 2, 3, 4]) if i > 3 else 2 + i % 2  # the first ones (copied, rewritten) have faces
        faces = [tiles[rng.choice(pool if i > 3 else KNOWN_FACES)] for _ in range(n)]
        path = folders[i % 3] / f"canvas{i:04d}.{'png' if i % 4 == 0 else 'jpg'}"
        _canvas(faces).save(path, quality=92) if path.suffix == ".jpg" else _canvas(faces).save(path)
        corpus.images.append(path)
        corpus.faces_pasted[path] = n
    first = corpus.images[0]
    corpus.duplicate = root / "img" / "c" / f"copy_of_{first.name}"
    shutil.copyfile(first, corpus.duplicate)
    corpus.images.append(corpus.duplicate)
    corpus.faces_pasted[corpus.duplicate] = corpus.faces_pasted[first]
    bad = root / "img" / "bad"
    bad.mkdir()
    jpegs = [p for p in corpus.images[1:] if p.suffix == ".jpg"]
    for i in range(3):
        data = jpegs[i].read_bytes()
        (bad / f"truncated{i}.jpg").write_bytes(data[: len(data) // (3 + i)])
        corpus.broken[bad / f"truncated{i}.jpg"] = "InvalidImageError"
    for i in range(2):
        (bad / f"empty{i}.png").write_bytes(b"")
        corpus.broken[bad / f"empty{i}.png"] = "InvalidImageError"
        (bad / f"text{i}.jpg").write_text(f"not an image {i}\n")
        corpus.broken[bad / f"text{i}.jpg"] = "InvalidImageError"
    if videos:
        vid = root / "video"
        vid.mkdir()
        corpus.videos.append(write_two_face_clip(ferplus, vid / "two_faces.mp4", seconds=1.0))
        corpus.videos.append(grey_clip(vid / "grey.mp4", seconds=0.5))
        corpus.videos.append(write_with_codec(two_face_frames(ferplus, seconds=1.0), vid / "two_faces.avi", "mpeg4"))
        data = corpus.videos[0].read_bytes()
        (vid / "truncated.mp4").write_bytes(data[:200])
        corpus.broken[vid / "truncated.mp4"] = "InvalidVideoError"
    return corpus

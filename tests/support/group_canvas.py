"""Synthetic group photos made of real faces: small faces at known places, for recall tests and benchmarks.

A *group canvas* is a textured background photo (gravel, grass, coffee, a building: the no-face photos of
``tests/data/photos/``) with 20-30 real faces pasted on it at many small sizes (16-64 px face height by
default), each face's box known by construction. The faces are the public-domain astronaut
(``fer_app/examples/astronaut.jpg``, ``skimage.data.astronaut``), Grace Hopper
(``tests/data/photos/grace_hopper.jpg``) and FER+ Valid faces read at run time from
``$FER_SHARED/data/ferplus/FER2013Valid`` (never committed; without that folder only the two photos are
used, mirrored and re-lit). Nothing generated here is written to the repository.

>>> canvas = group_canvas((640, 480), n_faces=24, background="gravel.jpg", seed=0)
>>> canvas.image, canvas.faces   # RGB PIL image, [(x1, y1, x2, y2), ...] face boxes in canvas pixels

Used by ``benchmarks/recall.py`` (``--canvases``) and ``tests/test_group_recall.py``.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

ROOT = Path(__file__).resolve().parents[2]
PHOTOS = ROOT / "tests" / "data" / "photos"
ASTRONAUT = ROOT / "fer_app" / "examples" / "astronaut.jpg"
SHARED = Path(os.environ.get("FER_SHARED", ROOT.parent / "shared"))
FERPLUS_VALID = SHARED / "data" / "ferplus" / "FER2013Valid"

#: Face boxes of the two committed face photos (the hand box of ``faces.json`` for Grace Hopper; MTCNN's
#: box, checked by eye, for the astronaut), ``(x1, y1, x2, y2)`` pixels of the stored files.
PHOTO_FACES: dict[Path, tuple[int, int, int, int]] = {
    ASTRONAUT: (180, 59, 268, 176),
    PHOTOS / "grace_hopper.jpg": (172, 105, 352, 338),
}
#: Backgrounds without faces (``tests/data/photos/``), cycled by :func:`canvas_set`.
BACKGROUNDS: tuple[str, ...] = ("gravel.jpg", "grass.jpg", "coffee.jpg", "china.jpg")
#: The pasted patch of a photo face is its face box grown by this factor (hair, neck, some background).
CONTEXT: float = 1.5


@dataclass(frozen=True)
class FaceSource:
    """One real face to paste: ``image`` holds the face at ``box`` (``(x1, y1, x2, y2)`` pixels); the
    patch cut out is ``box`` grown by ``context`` (1.0: the box alone, as for a FER+ tile)."""

    name: str
    image: Image.Image
    box: tuple[float, float, float, float]
    context: float = 1.0


@dataclass
class GroupCanvas:
    """A generated group photo: ``image`` (RGB), ``faces`` (face boxes, canvas pixels, paste order),
    ``sources`` (the name of each face's source) and ``sizes`` (each face box's height, pixels)."""

    name: str
    image: Image.Image
    faces: list[tuple[float, float, float, float]] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)


def ferplus_names(folder: Path = FERPLUS_VALID, limit: int | None = None, seed: int = 0) -> list[str]:
    """FER+ image names of ``folder`` whose ``label.csv`` row has no "not a face" vote, shuffled with ``seed``
    (``limit``: the first that many)."""
    with (folder / "label.csv").open() as fh:
        names = [row[0] for row in csv.reader(fh) if row and float(row[-1]) == 0]
    rng = np.random.default_rng(seed)
    names = [names[i] for i in rng.permutation(len(names))]
    return names[:limit] if limit is not None else names


def face_sources(ferplus: int = 40, seed: int = 0, folder: Path = FERPLUS_VALID) -> list[FaceSource]:
    """The astronaut, Grace Hopper and up to ``ferplus`` FER+ Valid faces (none when ``folder`` is absent)."""
    sources = [FaceSource(path.stem, Image.open(path).convert("RGB"), box, CONTEXT)
               for path, box in PHOTO_FACES.items()]
    if ferplus and (folder / "label.csv").exists():
        for name in ferplus_names(folder, ferplus, seed):
            tile = Image.open(folder / name).convert("RGB")
            sources.append(FaceSource(name, tile, (0.0, 0.0, float(tile.width), float(tile.height))))
    return sources


def background(name: str, size: tuple[int, int]) -> Image.Image:
    """The photo ``tests/data/photos/<name>`` scaled to cover ``size`` and centre-cropped to it."""
    photo = Image.open(PHOTOS / name).convert("RGB")
    scale = max(size[0] / photo.width, size[1] / photo.height)
    w, h = math.ceil(photo.width * scale), math.ceil(photo.height * scale)
    photo = photo.resize((w, h), Image.Resampling.BICUBIC)
    left, top = (w - size[0]) // 2, (h - size[1]) // 2
    return photo.crop((left, top, left + size[0], top + size[1]))


def _patch(source: FaceSource, face_px: int, rng: np.random.Generator) -> tuple[Image.Image, tuple[float, ...]]:
    """The source's face scaled so its box is ``face_px`` high, with its context, randomly mirrored and
    re-lit; returns the patch and the face box in patch pixels."""
    x1, y1, x2, y2 = source.box
    cx, cy, half_w, half_h = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
    grow = source.context
    region = (cx - half_w * grow, cy - half_h * grow, cx + half_w * grow, cy + half_h * grow)
    region = (max(0.0, region[0]), max(0.0, region[1]),
              min(float(source.image.width), region[2]), min(float(source.image.height), region[3]))
    scale = face_px / (y2 - y1)
    out_w, out_h = max(1, round((region[2] - region[0]) * scale)), max(1, round((region[3] - region[1]) * scale))
    patch = source.image.resize((out_w, out_h), Image.Resampling.LANCZOS, box=region)
    box = [(x1 - region[0]) * scale, (y1 - region[1]) * scale, (x2 - region[0]) * scale, (y2 - region[1]) * scale]
    if rng.random() < 0.5:
        patch = patch.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        box = [out_w - box[2], box[1], out_w - box[0], box[3]]
    patch = ImageEnhance.Brightness(patch).enhance(float(rng.uniform(0.8, 1.2)))
    return patch, tuple(box)


def _feather(size: tuple[int, int], border: float = 0.06) -> Image.Image:
    """An ``L`` mask, opaque inside, fading to transparent over ``border`` of the shorter side at the edges."""
    w, h = size
    pad = max(1, round(min(w, h) * border))
    mask = Image.new("L", (w, h), 0)
    if w > 2 * pad and h > 2 * pad:
        mask.paste(255, (pad, pad, w - pad, h - pad))
        return mask.filter(ImageFilter.GaussianBlur(pad / 2))
    return Image.new("L", (w, h), 255)


def group_canvas(size: tuple[int, int] = (640, 480), n_faces: int = 24, face_sizes: tuple[int, int] = (16, 64),
                 background_name: str = "gravel.jpg", seed: int = 0,
                 sources: Sequence[FaceSource] | None = None, name: str | None = None) -> GroupCanvas:
    """One group canvas: ``n_faces`` faces, face heights spread evenly over ``face_sizes`` (inclusive,
    shuffled), one per cell of a grid, at a random place in their cell, on ``background_name``.

    Args:
        size: canvas ``(width, height)``.
        n_faces: faces pasted.
        face_sizes: smallest and largest face-box height, pixels.
        background_name: a photo of ``tests/data/photos/`` (see :data:`BACKGROUNDS`).
        seed: fixes the sizes, the faces chosen, mirroring, lighting and places.
        sources: the faces to draw from (default :func:`face_sources`), each used in turn after a shuffle.
        name: the canvas's name (default built from its parameters).
    """
    rng = np.random.default_rng(seed)
    sources = list(sources) if sources is not None else face_sources(seed=seed)
    width, height = size
    cols = math.ceil(math.sqrt(n_faces * width / height))
    rows = math.ceil(n_faces / cols)
    cell_w, cell_h = width // cols, height // rows
    heights = np.rint(np.linspace(face_sizes[0], face_sizes[1], n_faces)).astype(int)
    heights = heights[rng.permutation(n_faces)]
    order = [sources[i % len(sources)] for i in rng.permutation(max(n_faces, len(sources)))][:n_faces]
    cells = rng.permutation(cols * rows)[:n_faces]
    canvas = GroupCanvas(name or f"canvas_{width}x{height}_{background_name.split('.')[0]}_s{seed}",
                         background(background_name, size))
    for face_px, source, cell in zip(heights, order, cells):
        patch, box = _patch(source, int(face_px), rng)
        if patch.width > cell_w or patch.height > cell_h:  # keep every patch inside its cell
            fit = min(cell_w / patch.width, cell_h / patch.height)
            patch = patch.resize((max(1, int(patch.width * fit)), max(1, int(patch.height * fit))),
                                 Image.Resampling.LANCZOS)
            box = tuple(v * fit for v in box)
        col, row = divmod(int(cell), rows)
        x = col * cell_w + int(rng.integers(0, cell_w - patch.width + 1))
        y = row * cell_h + int(rng.integers(0, cell_h - patch.height + 1))
        canvas.image.paste(patch, (x, y), _feather(patch.size))
        canvas.faces.append((x + box[0], y + box[1], x + box[2], y + box[3]))
        canvas.sources.append(source.name)
        canvas.sizes.append(round(box[3] - box[1]))
    return canvas


def canvas_set(sources: Sequence[FaceSource] | None = None,
               face_sizes: tuple[int, int] = (16, 64)) -> list[GroupCanvas]:
    """The standard set: four 640x480 canvases of 24 faces and four 1600x1200 canvases of 30 faces, one
    per background of :data:`BACKGROUNDS` each (216 faces; seeds 0-7)."""
    sources = list(sources) if sources is not None else face_sources()
    out = []
    for i, bg in enumerate(BACKGROUNDS):
        out.append(group_canvas((640, 480), 24, face_sizes, bg, seed=i, sources=sources))
    for i, bg in enumerate(BACKGROUNDS):
        out.append(group_canvas((1600, 1200), 30, face_sizes, bg, seed=4 + i, sources=sources))
    return out

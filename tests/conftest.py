"""Shared fixtures: real photos, FER+ crops from ../shared, a small random model, a recognizer."""

from __future__ import annotations

import csv
import inspect
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fer_core.config import ModelConfig
from fer_core.model import EmotionNet, load_model
from fer_core.recognizer import DEFAULT_MODEL_DIR, EmotionRecognizer

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FER_SHARED", ROOT.parent / "shared"))
FERPLUS = SHARED / "data" / "ferplus"

#: FER+ Valid crops MTCNN finds when upscaled to 160x160 on a grey canvas (checked one by one;
#: see compose_canvas). Majority labels, in reading order: happiness, neutral, happiness, neutral,
#: happiness, neutral.
CANVAS_CROPS = ["fer0028642.png", "fer0028652.png", "fer0028643.png",
                "fer0028671.png", "fer0028657.png", "fer0028672.png"]
TILE, GAP = 160, 40
#: Options of the tiny real training runs (a few hundred FER+ faces, 64 px, 2 threads).
TINY_RUN = ["--limit-train", "192", "--limit-valid", "128", "--img-size", "64", "--batch-size", "32",
            "--threads", "2"]


def require_shared(path: Path) -> Path:
    """``path`` if it exists; otherwise skip, or fail loudly under CI (CI=true), naming the path."""
    if not path.exists():
        message = (f"shared data missing: {path} (FER_SHARED={SHARED}; the tests need ../shared beside the "
                   "checkout, or FER_SHARED pointing at a copy of it)")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def ferplus() -> Path:
    """The FERPlus layout folder (../shared/data/ferplus)."""
    return require_shared(FERPLUS / "FER2013Valid" / "label.csv").parents[1]


@pytest.fixture(scope="module")
def torch_home():
    """``TORCH_HOME`` pointed at ../shared/weights/torch (torchvision's genuine MobileNetV2 ImageNet
    file) for the tests of one module, restored afterwards."""
    home = SHARED / "weights" / "torch"
    require_shared(home / "hub" / "checkpoints" / "mobilenet_v2-b0353104.pth")
    old = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("TORCH_HOME")
    else:
        os.environ["TORCH_HOME"] = old


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """scikit-image's astronaut photo (public domain), uint8 (512, 512, 3): one smiling face
    near box (180, 63, 268, 173)."""
    from skimage import data

    return data.astronaut()


def compose_canvas(folder: Path, names: list[str], columns: int = 3) -> tuple[Image.Image, list[tuple]]:
    """Paste FER+ crops, upscaled to TILE px, on a grey canvas in a grid.

    Returns:
        The RGB canvas and each tile's ``(x1, y1, x2, y2)`` in canvas pixels, in paste order.
    """
    rows = (len(names) + columns - 1) // columns
    canvas = Image.new("RGB", (columns * (TILE + GAP) + GAP, rows * (TILE + GAP) + GAP), (128, 128, 128))
    tiles = []
    for i, name in enumerate(names):
        face = Image.open(folder / name).convert("RGB").resize((TILE, TILE), Image.Resampling.BICUBIC)
        x, y = GAP + (i % columns) * (TILE + GAP), GAP + (i // columns) * (TILE + GAP)
        canvas.paste(face, (x, y))
        tiles.append((x, y, x + TILE, y + TILE))
    return canvas, tiles


@pytest.fixture(scope="session")
def canvas(ferplus: Path) -> tuple[Image.Image, list[tuple]]:
    """A 640x440 canvas with six FER+ faces in a 3x2 grid, and the tiles' boxes."""
    return compose_canvas(ferplus / "FER2013Valid", CANVAS_CROPS)


@pytest.fixture(scope="session")
def ferplus_votes(ferplus: Path) -> dict[str, list[float]]:
    """Image name -> its 10 FER+ votes, for FER+ Valid."""
    with (ferplus / "FER2013Valid" / "label.csv").open() as fh:
        return {row[0]: [float(v) for v in row[2:]] for row in csv.reader(fh)}


@pytest.fixture(scope="session")
def random_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised MobileNetV2 model folder (config.json + model.safetensors)."""
    import torch

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("random_model")
    model = EmotionNet(ModelConfig(input_size=64))
    # Fill BatchNorm running statistics from a few random batches, so that the random network's
    # output depends on its input instead of saturating to a constant.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(4):
            model(torch.rand(16, 3, 64, 64) * 4 - 2)
    model.eval().save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The bundled default model (fer_core/default_model, in the repository and the wheel)."""
    return DEFAULT_MODEL_DIR


@pytest.fixture(scope="session")
def recognizer(model_dir: Path) -> EmotionRecognizer:
    """A recognizer on :func:`model_dir`, shared by the tests (loaded once)."""
    return EmotionRecognizer(load_model(model_dir), source=str(model_dir))


# --- Test tiers ---------------------------------------------------------------------------------------
# `make test` runs every test; `make test-fast` only the unit tier, -m "not slow and not browser and not
# postgres and not train". The markers (registered in pyproject.toml) are assigned here, not in the files:
#   browser   test_browser*.py (headless Chromium against a real server)
#   train     test_train_*.py, any test that runs a training (calls a train_main) or uses the ImageNet
#             weights to train from (the torch_home fixture)
#   postgres  tests on the throw-away PostgreSQL server (the `postgres` fixture, directly or through a
#             fixture parametrized "postgresql")
#   slow      tests that start a real server or child process (app_server, uvicorn in a thread, a CLI in
#             a subprocess) or build the whole app, themselves or through a fixture (REAL_PROCESS); tests
#             that use a fixture costing seconds (SLOW_FIXTURES); and those measured over ~1 s here (SLOW)
# A test file may still add a marker itself (@pytest.mark.slow); nothing here removes one.

#: Calls that start a real server or a child process, or build the whole app in process (Gradio Blocks,
#: migrations): a test whose function, or one of whose fixtures, contains one of them is slow.
REAL_PROCESS = re.compile(r"\b(app_server|postgres_server|uvicorn\.Server|subprocess\.(run|Popen|check_output|"
                          r"check_call)|run_cli|sync_playwright|create_app|build_blocks)\(")
#: Calls that run a (tiny, real) training.
TRAINING = re.compile(r"\btrain_main\(")
#: Fixtures that take seconds to make (videos encoded and analysed, every malformed input through the
#: model, a 3-label model's service): the tests that use them are slow.
SLOW_FIXTURES = {"clip", "analysis", "dense", "library_outcomes", "three_label_service", "twenty_faces"}
#: Tests measured at over ~1 s on the 2-core machine under load (``pytest --durations=0 -m "not slow and not
#: browser and not postgres and not train"``), mostly the real detector and model on full images, video,
#: matplotlib: "path::name", a parametrized test by its name without the brackets.
SLOW = {
    "tests/test_cli.py::test_cli_saliency_torch_copy_load_error_is_reported_once",
    "tests/test_align.py::test_aligned_crop_has_level_eyes",
    "tests/test_balanced.py::test_recognizer_switch_and_model_without_prior",
    "tests/test_detect.py::test_detect_batch_matches_one_by_one_across_sizes_and_chunks",
    "tests/test_detect.py::test_image_smaller_than_the_smallest_face_is_no_face_not_an_error",
    "tests/test_detect.py::test_large_image_is_downscaled_and_boxes_mapped_back",
    "tests/test_detect.py::test_threshold_and_min_face_size",
    "tests/test_draw.py::test_annotate_draws_boxes_in_label_colours",
    "tests/test_draw.py::test_probability_figure_has_one_panel_per_face",
    "tests/test_guard.py::test_stalled_and_slow_bodies_get_408",
    "tests/test_backends.py::test_photos_end_to_end",
    "tests/test_backends.py::test_same_detections_same_probabilities",
    "tests/test_backends.py::test_video_clip",
    "tests/test_model.py::test_fused_batchnorm_gives_the_same_logits",
    "tests/test_model.py::test_other_backbones_build",
    "tests/test_no_torch.py::test_app_without_torch_serves_a_prediction",
    "tests/test_no_torch.py::test_blocker_makes_torch_unimportable",
    "tests/test_no_torch.py::test_cli_without_torch_images_and_video",
    "tests/test_no_torch.py::test_fer_app_without_the_app_extra_says_what_to_install",
    "tests/test_no_torch.py::test_library_without_torch_astronaut_and_six_faces",
    "tests/test_no_torch.py::test_torch_backend_without_torch_names_the_extra",
    "tests/test_recognizer.py::test_alignment_switch_changes_only_the_crop",
    "tests/test_recognizer.py::test_bundled_default_model_agrees_with_ferplus_votes_on_the_canvas",
    "tests/test_recognizer.py::test_bundled_default_model_says_astronaut_is_happy",
    "tests/test_recognizer.py::test_max_faces_bounds_classification_and_reports_the_rest",
    "tests/test_recognizer.py::test_predict_astronaut",
    "tests/test_recognizer.py::test_predict_batch_matches_predict",
    "tests/test_recognizer.py::test_predict_canvas_six_faces",
    "tests/test_saliency.py::test_astronaut_map_shapes_ranges_target_and_determinism",
    "tests/test_saliency.py::test_batched_maps_equal_one_by_one_and_target_changes_the_map",
    "tests/test_saliency.py::test_every_backbone_has_a_default_layer_that_the_head_reads",
    "tests/test_saliency.py::test_overlay_and_files",
    "tests/test_service.py::test_explain_loads_one_torch_copy_across_threads_and_explains_the_onnx_faces",
    "tests/test_service.py::test_faces_over_the_caps_are_reported_per_file",
    "tests/test_video.py::test_bad_files_raise_invalid_video_error",
    "tests/test_video.py::test_no_face_is_an_empty_result",
    "tests/test_video.py::test_other_containers",
    "research/tests/test_convert_dlib.py::test_calibrated_batchnorm_keeps_the_function",
    "research/tests/test_convert_dlib.py::test_descriptor_equals_dlib_on_real_faces",
    "research/tests/test_convert_dlib.py::test_dlib_backbone_config_folding_and_minimum_size",
    "research/tests/test_pack.py::test_packed_file_reads_back_exactly_the_folder",
    "research/tests/test_paired.py::test_a_final_fit_is_paired_on_its_fold",
}


def _source(func) -> str:
    try:
        return inspect.getsource(func)
    except (OSError, TypeError):
        return ""


def _module_tiers(path: Path) -> set[str]:
    """The tiers of every test of a module, by its name."""
    tiers = set()
    if path.stem.startswith("test_browser"):
        tiers |= {"browser", "slow"}
    if path.stem.startswith("test_train_"):
        tiers.add("train")
    return tiers


def _tiers(item: pytest.Item) -> set[str]:
    path = Path(str(item.path))
    tiers = _module_tiers(path)
    sources = [_source(getattr(item, "function", None))]
    info = getattr(item, "_fixtureinfo", None)
    for name in getattr(item, "fixturenames", ()):
        if name == "postgres":
            tiers.add("postgres")
        if name == "torch_home":  # ImageNet weights to train from: a training module
            tiers.add("train")
        if name in SLOW_FIXTURES:
            tiers.add("slow")
        for fixturedef in (info.name2fixturedefs.get(name, ()) if info else ())[-1:]:
            where = Path(inspect.getsourcefile(fixturedef.func) or "/")
            if not where.is_relative_to(ROOT) or where.is_relative_to(ROOT / ".venv"):
                continue  # pytest's and plugins' own fixtures
            sources.append(_source(fixturedef.func))
    callspec = getattr(item, "callspec", None)
    if callspec and "postgresql" in [str(v) for v in callspec.params.values()]:
        tiers.add("postgres")
    if any(REAL_PROCESS.search(s) for s in sources):
        tiers.add("slow")
    if any(TRAINING.search(s) for s in sources):
        tiers |= {"train", "slow"}
    if f"{path.relative_to(ROOT).as_posix()}::{getattr(item, 'originalname', item.name)}" in SLOW:
        tiers.add("slow")
    return tiers


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its tiers (see above). Idempotent: research/tests/conftest.py star-imports
    this module, so the hook may run twice."""
    for item in items:
        for tier in sorted(_tiers(item)):
            if not item.get_closest_marker(tier):
                item.add_marker(tier)
    if not (config.option.file_or_dir or config.option.keyword or config.option.markexpr):  # the whole suite
        seen = {f"{Path(str(i.path)).relative_to(ROOT).as_posix()}::{getattr(i, 'originalname', i.name)}"
                for i in items}
        if stale := sorted(SLOW - seen):
            import warnings

            warnings.warn(pytest.PytestWarning(f"tests/conftest.py SLOW names tests that no longer exist: {stale}"),
                          stacklevel=1)


class _Marks:
    """A marker expression's matcher: which marker names a test would carry."""

    def __init__(self, names: set[str]) -> None:
        self.names = names

    def __call__(self, name: str, /, **kwargs: object) -> bool:
        return name in self.names


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Under ``-m``, skip importing a module whose tiers alone deselect every one of its tests (e.g.
    test_train_*.py for ``make test-fast``): seconds of imports saved. Only when no assignment of the
    expression's other names could select a test; otherwise collect as usual."""
    expression = config.getoption("markexpr", "")
    tiers = _module_tiers(Path(collection_path)) if collection_path.suffix == ".py" else set()
    if not expression or not tiers:
        return None
    try:
        from itertools import product

        from _pytest.mark.expression import Expression

        compiled = Expression.compile(expression)
        names = sorted(set(re.findall(r"[A-Za-z_][\w.]*", expression)) - {"and", "or", "not", "True", "False"} - tiers)
        if len(names) > 10:
            return None
        for values in product((False, True), repeat=len(names)):
            if compiled.evaluate(_Marks(tiers | {n for n, v in zip(names, values) if v})):
                return None
    except Exception:  # a private API of pytest's changed, or an expression this does not read: collect
        return None
    return True

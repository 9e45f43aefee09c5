"""`pip install .` works: the wheel declares its dependencies, the `fer` console script, the license
and the bundled model; and the declared ranges admit the pinned versions the app runs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib.metadata import version

from packaging.requirements import Requirement

from tests.conftest import ROOT


def test_wheel_has_dependencies_console_script_license_and_model(tmp_path):
    source = tmp_path / "src"  # a copy: pip builds in the source tree and would leave build/ in the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    for package in ("fer_core", "app_ui", "monitoring", "fer_train"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(source)],
                   check=True, capture_output=True, timeout=300)
    wheel = next(tmp_path.glob("fer_core-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        meta = zf.read(next(n for n in names if n.endswith("METADATA"))).decode()
        entry = zf.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "fer_core/default_model/model.safetensors" in names and "fer_core/default_model/config.json" in names
    assert any(n.endswith("licenses/LICENSE") for n in names) and "License-Expression: MIT" in meta
    assert "Requires-Dist: facenet-pytorch==2.5.3" in meta and "Requires-Dist: torch>=2.2" in meta
    assert "Requires-Python: <3.12,>=3.11" in meta
    assert "fer = fer_core.cli:main" in entry and "fer-app = app_ui.server:main" in entry
    assert "fer_train/model_card.md" in names and "monitoring/migrations/versions/0001_initial.py" in names
    assert "app_ui/examples/astronaut.jpg" in names and "monitoring/migrations/env.py" in names
    assert not any(n.startswith(("research/", "tests/", "train/", "benchmarks/")) for n in names)


def test_declared_ranges_admit_the_pinned_versions():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [Requirement(r) for r in project["dependencies"]] + [
        Requirement(r) for extra in project["optional-dependencies"].values() for r in extra]
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            req = Requirement(line)
            pins[req.name.lower().replace("_", "-")] = str(next(iter(req.specifier)).version)
    for req in declared:
        name = req.name.lower().replace("_", "-")
        if name in pins:
            assert req.specifier.contains(pins[name]), f"{req} excludes the pinned {name}=={pins[name]}"
            assert req.specifier.contains(version(req.name).split("+")[0]), f"{req} excludes the installed one"
    assert {r.name.lower().replace("_", "-") for r in declared} >= set(pins) - {"requests"}

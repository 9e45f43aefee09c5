"""`pip install .` works: the wheel declares its dependencies (torch only in the `torch` and `train` extras),
the `fer` console script, the license and the bundled model; the declared ranges admit the pinned versions the
app runs; and `pip install .[app]` into a fresh virtual environment without torch gives a `fer` and a `fer-app`
that serve, from any folder, on the files of the wheel alone (bundled model, examples, migrations)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from email.parser import Parser
from importlib.metadata import distribution, version
from pathlib import Path

import httpx
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import ROOT
from tests.support.launch import app_server

PACKAGES = ("fer_core", "fer_app", "fer_train")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The project's wheel, built from a copy of the source (pip builds in the source tree and would
    leave build/ in the checkout), with this environment's setuptools (no download)."""
    folder = tmp_path_factory.mktemp("wheel")
    source = folder / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                           str(folder), str(source)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return next(folder.glob("fer_core-*.whl"))


def key(req: Requirement) -> tuple[str, str, str, str]:
    return canonicalize_name(req.name), ",".join(sorted(req.extras)), str(req.specifier), str(req.marker or "")


def test_wheel_has_dependencies_console_script_license_and_model(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        meta = zf.read(next(n for n in names if n.endswith("METADATA"))).decode()
        entry = zf.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "fer_core/default_model/model.safetensors" in names and "fer_core/default_model/config.json" in names
    assert any(n.endswith("licenses/LICENSE") for n in names) and "License-Expression: MIT" in meta
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {key(Requirement(r)) for r in project["dependencies"]} | {
        key(Requirement(f'{r}; extra == "{extra}"')) for extra, reqs in project["optional-dependencies"].items()
        for r in reqs}
    assert {key(Requirement(r)) for r in Parser().parsestr(meta).get_all("Requires-Dist")} == declared
    requires = Parser().parsestr(meta).get_all("Requires-Dist")
    assert 'facenet-pytorch==2.5.3; extra == "torch"' in requires and "onnxruntime>=1.20" in requires
    torch_stack = {"torch", "torchvision", "facenet-pytorch", "safetensors", "scikit-learn"}
    assert not [r for r in requires if canonicalize_name(Requirement(r).name) in torch_stack and not Requirement(
        r).marker], "the base install (and so `pip install .[app]`) must not need torch"
    assert "Requires-Python: <3.12,>=3.11" in meta
    assert "fer = fer_core.cli:main" in entry and "fer-app = fer_app.server:main" in entry
    assert "fer_train/model_card.md" in names and "fer_app/monitoring/migrations/versions/0001_initial.py" in names
    assert "fer_app/examples/astronaut.jpg" in names and "fer_app/monitoring/migrations/env.py" in names
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


#: Distributions of the torch and train extras: hidden from the fresh venv of the install test.
TORCH_STACK = ("torch", "torchvision", "facenet-pytorch", "safetensors", "scikit-learn", "grad-cam", "ttach",
               "opencv-python-headless")


def site_without_torch(folder: Path) -> Path:
    """``folder`` filled with links to every entry of this environment's site-packages except the files of
    :data:`TORCH_STACK` (their packages and .dist-info folders): a package index that has everything but torch."""
    site = Path(sysconfig.get_path("purelib"))
    hidden = {"__pycache__"}
    for name in TORCH_STACK:
        hidden |= {Path(f).parts[0] for f in distribution(name).files or () if Path(f).parts[0] != ".."}
    assert {"torch", "torchvision", "facenet_pytorch", "safetensors", "sklearn"} <= hidden
    folder.mkdir()
    for entry in site.iterdir():
        if entry.name not in hidden:
            (folder / entry.name).symlink_to(entry)
    return folder


def test_pip_install_app_extra_gives_a_fer_app_that_serves_from_anywhere_without_torch(wheel, tmp_path):
    """The slim install shape: a fresh venv (from the base interpreter) sees this environment's packages
    except the torch stack through a .pth file, as an index without torch would provide them: `pip install
    --no-index wheel[app]` must find every declared dependency already satisfied, and install only the
    project. torch is then not importable there, yet its `fer` reads the astronaut, and its `fer-app`, run
    from an empty folder, migrates a new SQLite database, answers /health and serves a prediction."""
    venv = tmp_path / "venv"
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                  check=True, capture_output=True, text=True).stdout.strip())
    deps = site_without_torch(tmp_path / "deps")
    (purelib / "_fer_test_deps.pth").write_text(f"import site; site.addsitedir({str(deps)!r})\n")
    proc = subprocess.run([python, "-m", "pip", "install", "--no-index", "--no-cache-dir", f"{wheel}[app]"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    installed = [line.split()[2:] for line in proc.stdout.splitlines() if line.startswith("Successfully installed")]
    assert installed == [[f"fer-core-{wheel.name.split('-')[1]}"]], proc.stdout[-3000:]  # nothing else needed

    run = tmp_path / "run"  # not the checkout: the modules, model, examples and migrations come from the wheel
    run.mkdir()
    clean = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    where = subprocess.run([python, "-c", "import importlib.util, fer_core, fer_app, fer_app.monitoring; "
                            "print(*[importlib.util.find_spec(m) for m in ('torch', 'torchvision', 'facenet_pytorch', "
                            "'safetensors', 'sklearn')]); "
                            "print(fer_core.__file__, fer_app.__file__, fer_app.monitoring.__file__)"],
                           cwd=run, check=True, capture_output=True, text=True, env=clean)
    absent, files = where.stdout.strip().splitlines()
    assert absent.split() == ["None"] * 5, absent  # the torch stack is not installed there
    assert all(Path(f).is_relative_to(purelib) for f in files.split()), files
    fer = subprocess.run([venv / "bin" / "fer", str(ROOT / "fer_app" / "examples" / "astronaut.jpg"), "--json"],
                         cwd=run, capture_output=True, text=True, env=clean, timeout=300)
    assert fer.returncode == 0, fer.stderr[-3000:]
    assert [f["label"] for f in json.loads(fer.stdout)[0]["faces"]] == ["happiness"]
    database = run / "fer.db"
    with app_server(tmp_path / "app.log", command=[str(venv / "bin" / "fer-app")], cwd=run, PYTHONPATH="",
                    FER_MODEL="", FER_JWT_SECRET="install-test-Kq7Vw2Lp9Zx4Rt8Nm3Bc6Hd1Fg5Js0",
                    FER_DATABASE_URL=f"sqlite:///{database}", HF_HUB_OFFLINE="1") as url:
        health = httpx.get(f"{url}/health", timeout=30)
        assert health.status_code == 200 and health.json()["model"] == "bundled default", health.text
        page = httpx.get(f"{url}/", timeout=60)
        assert page.status_code == 200
        jpeg = (ROOT / "fer_app" / "examples" / "astronaut.jpg").read_bytes()
        r = httpx.post(f"{url}/api/predict", files={"file": ("astronaut.jpg", jpeg, "image/jpeg")}, timeout=120)
        assert r.status_code == 200 and [f["label"] for f in r.json()["faces"]] == ["happiness"], r.text
        maps = Path(f"/proc/{url.process.pid}/maps").read_text()
        assert "libonnxruntime" in maps and "libtorch" not in maps
    with sqlite3.connect(database) as db:  # the wheel's migrations ran
        assert db.execute("SELECT version_num FROM alembic_version").fetchone()
        assert {"users", "teams", "subjects"} <= {r[0] for r in db.execute("SELECT name FROM sqlite_master")}


def test_slim_requirements_are_the_pins_without_the_torch_stack():
    """scripts/install.sh --slim (the Dockerfile) installs requirements.txt without the torch stack's pins."""
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "slim_requirements.py")], capture_output=True,
                          text=True, check=True, timeout=60)
    slim = {canonicalize_name(Requirement(line).name) for line in proc.stdout.splitlines()}
    pinned = {canonicalize_name(Requirement(line).name) for line in (ROOT / "requirements.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    assert pinned - slim == set(TORCH_STACK)
    assert {"onnxruntime", "gradio", "av", "numpy", "requests"} <= slim

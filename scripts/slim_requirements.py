"""Print requirements.txt without the pins that only the ``torch`` and ``train`` extras need.

``python scripts/slim_requirements.py > slim.txt`` (standard library only, run from anywhere): the pinned
shape of ``pip install 'fer-core[app]'`` (inference on ONNX Runtime, the Space, monitoring), without torch,
torchvision, facenet-pytorch, safetensors or scikit-learn. Used by ``scripts/install.sh --slim`` (the
Dockerfile). A pin stays unless pyproject.toml names its package in the ``torch`` or ``train`` extra and
not in the base dependencies or the ``app`` extra (requirements.txt pins a few packages pyproject.toml
does not declare, e.g. requests; those stay).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def name(requirement: str) -> str:
    """The normalised package name of a requirement line (``"psycopg[binary]==3"`` -> ``"psycopg"``)."""
    return re.split(r"[\[<>=!~;\s]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def torch_only() -> set[str]:
    """Packages of the ``torch``/``train`` extras that neither the base dependencies nor ``app`` need."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return {name(r) for r in extras["torch"] + extras["train"]} - {
        name(r) for r in project["dependencies"] + extras["app"]}


def slim_lines() -> list[str]:
    """The pin lines of requirements.txt the slim install keeps."""
    drop = torch_only()
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#") and name(line) not in drop]


if __name__ == "__main__":
    print("\n".join(slim_lines()))

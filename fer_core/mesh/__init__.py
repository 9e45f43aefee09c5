"""MediaPipe FaceMesh in fer_core: 468 3-D face landmarks and a face-presence probability per detected face.

>>> from fer_core.mesh import FaceMesh
>>> out = FaceMesh(backend="onnx").run(image, detections)   # MeshOutput: mesh (N, 468, 3), face_prob (N,)

Modules: :mod:`~fer_core.mesh.net` (the network, torch), :mod:`~fer_core.mesh.crop` (MediaPipe's ROI,
numpy + Pillow), :mod:`~fer_core.mesh.runner` (:class:`FaceMesh`), :mod:`~fer_core.mesh.convert` and
:mod:`~fer_core.mesh.export` (regenerate the shipped weights). Names are imported lazily (PEP 562):
importing this package does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> the submodule that defines it.
_EXPORTS: dict[str, str] = {"FaceMesh": "runner", "MeshOutput": "runner", "FaceMeshNet": "net"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Put this folder first on ``PYTHONPATH`` and a Python child process runs as if torch were not installed.

Python imports ``sitecustomize`` at start-up; this one marks torch, torchvision and facenet_pytorch (and the
comma-separated modules of ``FER_BLOCK_MODULES``, when set: e.g. ``gradio`` for an install without the app
extra) as absent: ``sys.modules[name] = None``, so ``import torch`` raises ``ModuleNotFoundError`` and
``importlib.util.find_spec("torch")`` is ``None``, exactly as where the package is missing; nothing can
load it, since Python stops at the ``None`` before looking on disk (tests/test_no_torch.py).
"""

import os
import sys

BLOCKED = ("torch", "torchvision", "facenet_pytorch")

for _name in (*BLOCKED, *filter(None, os.environ.get("FER_BLOCK_MODULES", "").split(","))):
    sys.modules[_name.strip()] = None

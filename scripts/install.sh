#!/usr/bin/env bash
# The one install script (Makefile and Dockerfile): pinned requirements, then facenet-pytorch
# without its stale torch<2.3 pin. Usage: scripts/install.sh [--dev]   (uses the current `python`)
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --upgrade pip
python -m pip install --quiet -r requirements.txt
if [ "${1:-}" = "--dev" ]; then
  python -m pip install --quiet -r requirements-dev.txt
fi
python -m pip install --quiet --no-deps facenet-pytorch==2.6.0

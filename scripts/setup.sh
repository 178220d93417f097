#!/usr/bin/env bash
# Idempotent setup of a fresh machine: a virtual environment in .venv with every extra,
# pinned by constraints.txt (torch 2.13.0 CPU build; a loose pin would pull a CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt \
    -e '.[onnx,serve,nvidia,security,dev]'

#!/usr/bin/env bash
# Creates .venv in the repository root with torch and torchvision from PyPI (bench/requirements.txt),
# the interpreter `medkd bench` uses for its PyTorch reference by default. Safe to re-run.
# PYTHON picks the interpreter the venv is made from (default python3).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if [ ! -x .venv/bin/python ]; then
    "${PYTHON:-python3}" -m venv .venv
fi
.venv/bin/python -m pip install -r bench/requirements.txt
.venv/bin/python -c 'import torch, torchvision; print(f"torch {torch.__version__}, torchvision {torchvision.__version__} in {torch.__file__}")'

#!/usr/bin/env bash
# The test suites of medkd's models, losses and training on LibTorch's CPU backend (issue #5):
# builds with `--features tch` against the PyTorch 2.9.0 of .venv-torch29 (README, "LibTorch
# backend") and runs every test whose device is `medkd_models::test_device()` on LibTorch, against
# the same golden values as on `flex`. Tests of medkd's own `flex` kernels stay on `flex`.
#
#   python3 -m venv .venv-torch29 && .venv-torch29/bin/pip install torch==2.9.0   # once
#   tools/test_libtorch.sh [cargo test arguments]
set -euo pipefail
venv=${VENV:-.venv-torch29}
if [[ ! -x $venv/bin/python ]]; then
    echo "no $venv: python3 -m venv $venv && $venv/bin/pip install torch==2.9.0" >&2
    exit 2
fi
export PATH=$PWD/$venv/bin:$PATH LIBTORCH_USE_PYTORCH=1 MEDKD_TEST_DEVICE=libtorch
LD_LIBRARY_PATH=$("$venv/bin/python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH
cargo test -p medkd-models -p medkd-losses -p medkd-train --features medkd-train/tch "$@"

#!/usr/bin/env bash
# End to end: a run's ONNX export in the browser page, in headless Chromium (Debian's
# `chromium`), against `medkd predict` on the same image files. Writes OUT/page (the built
# page), OUT/expected.csv, OUT/screenshot.png and OUT/check.json.
#
#   tools/web/check_page.sh RUN OUT [--weights int8]
#
# MEDKD=binary (default target/debug/medkd); PYTHON with numpy, pillow, safetensors (default
# .venv/bin/python); node and npm. The check images are the first 32 test images as the model
# takes them (so the run's eval transforms must give 8-bit pixels, e.g. MedMNIST at its size).
set -euo pipefail
run=$1
out=$2
shift 2
medkd=${MEDKD:-target/debug/medkd}
python=${PYTHON:-.venv/bin/python}
here=$(dirname "$(realpath "$0")")
cache=${MEDKD_WEB_CACHE:-$HOME/.cache/medkd/web}
rm -rf "$out"
mkdir -p "$out"
"$medkd" export "$run" --format onnx --inputs test --out "$out/export" "$@"
"$here/build_page.sh" "$out/export" "$out/page"
[[ -d $cache/node_modules/puppeteer-core ]] || npm install --prefix "$cache" --no-audit --no-fund --ignore-scripts puppeteer-core@24 >&2
"$python" "$here/write_check_images.py" "$out/export/inputs_test.safetensors" "$out/page"
"$medkd" predict --run "$run" --out "$out/expected.csv" "$out"/page/check/*.png
NODE_PATH=$cache/node_modules node "$here/check_page.js" "$out/page" check/list.json "$out/expected.csv" "$out/screenshot.png" | tee "$out/check.json"

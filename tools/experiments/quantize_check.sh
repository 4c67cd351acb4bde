#!/usr/bin/env bash
# A run's ONNX export in float32 and its int8 twins, compared in onnxruntime by
# tools/export/quantized_check.py (size, balanced accuracy and AUC on the test split,
# single-image latency in paired rounds): weights-only int8 (`medkd export --weights int8`) and
# static int8 (tools/export/quantize_static.py, calibrated on 256 training images evenly spaced
# through the split). The figures go to results/export/NAME/quantized.json.
#
#   tools/experiments/quantize_check.sh RUN NAME
#
# MEDKD=binary (default target/debug/medkd); PYTHON=interpreter with onnxruntime, onnx,
# safetensors and scikit-learn (default .venv/bin/python).
set -euo pipefail
run=$1
name=$2
medkd=${MEDKD:-target/debug/medkd}
python=${PYTHON:-.venv/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$medkd" export "$run" --format onnx --inputs test --out "$work/float32"
"$medkd" export "$run" --format onnx --weights int8 --out "$work/int8"
"$medkd" export "$run" --format onnx --inputs train --inputs-max 256 --out "$work/calibration"
"$python" tools/export/quantize_static.py "$work/float32" "$work/calibration/inputs_train.safetensors" "$work/static_int8"
mkdir -p "results/export/$name"
"$python" tools/export/quantized_check.py "$run" "$work/float32" "$work/int8" "$work/static_int8" --json "results/export/$name/quantized.json"

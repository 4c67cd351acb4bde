#!/usr/bin/env bash
# A run's ONNX export with float32 and with int8 weights, compared in onnxruntime by
# tools/export/quantized_check.py (size, balanced accuracy and AUC on the test split,
# single-image latency in paired rounds); the figures go to results/export/NAME/quantized.json.
#
#   tools/experiments/quantize_check.sh RUN NAME
#
# MEDKD=binary (default target/debug/medkd); PYTHON=interpreter with onnxruntime, safetensors
# and scikit-learn (default .venv/bin/python).
set -euo pipefail
run=$1
name=$2
medkd=${MEDKD:-target/debug/medkd}
python=${PYTHON:-.venv/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$medkd" export "$run" --format onnx --inputs test --out "$work/float32"
"$medkd" export "$run" --format onnx --weights int8 --out "$work/int8"
mkdir -p "results/export/$name"
"$python" tools/export/quantized_check.py "$run" "$work/float32" "$work/int8" --json "results/export/$name/quantized.json"

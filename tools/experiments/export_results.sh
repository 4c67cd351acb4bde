#!/usr/bin/env bash
# One run's exports, checked and measured for the results page (BENCHMARKS.md, "Exports"):
#   1. ONNX (onnxruntime) and torchvision (PyTorch) exports against `medkd predict --split
#      test` on every test image, with a float64 PyTorch reference (tools/export/check_export.py);
#   2. the float32 ONNX export against its int8 twins in onnxruntime: weights-only int8
#      (`medkd export --weights int8`) and static int8 (tools/export/quantize_static.py,
#      calibrated on 256 training images evenly spaced through the split): size, balanced
#      accuracy, AUC, single-image latency in paired rounds (tools/export/quantized_check.py).
# model.json, check.json and quantized.json are kept in results/export/NAME; the exports
# themselves (tens of MB) go to a temporary folder.
#
#   tools/experiments/export_results.sh RUN NAME
#
# MEDKD=binary (default target/debug/medkd); PYTHON=interpreter with onnxruntime, onnx, torch,
# torchvision, safetensors and scikit-learn (default .venv/bin/python).
set -euo pipefail
run=$1
name=$2
medkd=${MEDKD:-target/debug/medkd}
python=${PYTHON:-.venv/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
kept=results/export/$name
"$medkd" export "$run" --format onnx --inputs test --out "$work/float32"
"$medkd" export "$run" --format torchvision --out "$work/torchvision"
"$medkd" export "$run" --format onnx --weights int8 --out "$work/int8"
"$medkd" export "$run" --format onnx --inputs train --inputs-max 256 --out "$work/calibration"
"$python" tools/export/quantize_static.py "$work/float32" "$work/calibration/inputs_train.safetensors" "$work/static_int8"
"$medkd" predict --run "$run" --split test --out "$work/predict_test.csv"
mkdir -p "$kept"
cp "$work/float32/model.json" "$kept/model.json"
status=0
"$python" tools/export/check_export.py "$work/predict_test.csv" "$work/float32" "$work/torchvision" --json "$kept/check.json" || status=$?
"$python" tools/export/quantized_check.py "$run" "$work/float32" "$work/int8" "$work/static_int8" --json "$kept/quantized.json"
echo "kept $kept"
exit $status

#!/usr/bin/env bash
# medkd export of a finished run to ONNX and to torchvision format, each checked in its own
# runtime (onnxruntime, PyTorch) against `medkd predict --split test` on every test image
# (tools/export/check_export.py). The figures and model.json are kept in results/export/NAME.
#
#   tools/experiments/export_check.sh RUN NAME
#
# MEDKD=binary (default target/debug/medkd); PYTHON=interpreter with onnxruntime, torch,
# torchvision and safetensors (default .venv/bin/python). The exports themselves go to a
# temporary folder: tens of MB, not kept.
set -euo pipefail
run=$1
name=$2
medkd=${MEDKD:-target/debug/medkd}
python=${PYTHON:-.venv/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$medkd" export "$run" --format onnx --inputs test --out "$work/onnx"
"$medkd" export "$run" --format torchvision --out "$work/torchvision"
"$medkd" predict --run "$run" --split test --out "$work/predict_test.csv"
kept=results/export/$name
mkdir -p "$kept"
cp "$work/onnx/model.json" "$kept/model.json"
"$python" tools/export/check_export.py "$work/predict_test.csv" "$work/onnx" "$work/torchvision" --json "$kept/check.json"
echo "kept $kept"

#!/usr/bin/env bash
# Builds the static in-browser classifier for a medkd ONNX export: the page (index.html, app.js),
# the export's model.onnx and model.json, and onnxruntime-web's WebAssembly runtime, vendored from
# the npm registry (pinned below) into OUT. Serve OUT with any static file server (the page
# fetches its files, which browsers refuse from file://); it needs no network after that.
#
#   tools/web/build_page.sh EXPORT_DIR OUT
#
# npm packages are kept in $MEDKD_WEB_CACHE (default ~/.cache/medkd/web).
set -euo pipefail
export_dir=$1
out=$2
ORT_WEB=1.23.2
cache=${MEDKD_WEB_CACHE:-$HOME/.cache/medkd/web}
here=$(dirname "$(realpath "$0")")
[[ -f $export_dir/model.onnx && -f $export_dir/model.json ]] || { echo "$export_dir: no model.onnx and model.json (medkd export --format onnx)" >&2; exit 2; }
dist=$cache/node_modules/onnxruntime-web/dist
if [[ ! -f $dist/ort.wasm.min.js ]] || ! grep -q "\"version\": \"$ORT_WEB\"" "$cache/node_modules/onnxruntime-web/package.json"; then
    npm install --prefix "$cache" --no-audit --no-fund --ignore-scripts "onnxruntime-web@$ORT_WEB" >&2
fi
mkdir -p "$out"
cp "$here/index.html" "$here/app.js" "$export_dir/model.onnx" "$export_dir/model.json" "$out/"
cp "$dist/ort.wasm.min.js" "$dist/ort-wasm-simd-threaded.wasm" "$dist/ort-wasm-simd-threaded.mjs" "$out/"
echo "page in $out (onnxruntime-web $ORT_WEB); serve it, e.g. python3 -m http.server -d $out"

#!/usr/bin/env bash
# Teacher-output cache benchmark: the epoch time of 3-teacher KD against 1-teacher KD, both with
# the cache (no random train transform, logits-only KD). Trains a small teacher on the shipped
# BreastMNIST file first; prints each run's mean epoch time after the first (the epoch that
# fills the cache) and the ratio. Usage, from the repository root:
#   bash bench/teacher_cache.sh [MEDKD_BINARY]   (default: cargo run --)
set -euo pipefail
medkd=(${1:-cargo run -q --})
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

base='seed = 0
[data]
format = "medmnist"
path = "data/breastmnist.npz"
channels = 3
[model]
arch = "resnet18"
[train]
epochs = 4
batch_size = 64
optimizer = { kind = "adam", lr = 0.001 }
[[loss]]
kind = "cross_entropy"'
echo "$base" > "$work/teacher.toml"
"${medkd[@]}" train --quiet --config "$work/teacher.toml" --set train.epochs=1 --out "$work/teacher" > /dev/null 2>&1

for k in 1 3; do
  { echo "$base"; echo '[[loss]]
kind = "kd"
temperature = 4.0'; for _ in $(seq "$k"); do echo "[[teacher]]
run = \"$work/teacher\""; done; } > "$work/kd$k.toml"
  "${medkd[@]}" distill --quiet --config "$work/kd$k.toml" --out "$work/kd$k" > /dev/null 2>&1
done

python3 - "$work" <<'PY'
import json, sys
def epoch_seconds(run):
    walls = [json.loads(line)["wall_seconds"] for line in open(f"{sys.argv[1]}/{run}/metrics.jsonl")]
    after_first = [b - a for a, b in zip(walls, walls[1:])]
    return sum(after_first) / len(after_first)
cached = json.load(open(f"{sys.argv[1]}/kd3/summary.json"))["teacher_cache"]
one, three = epoch_seconds("kd1"), epoch_seconds("kd3")
print(f"teacher cache on: {cached}")
print(f"1-teacher KD epoch: {one:.2f} s; 3-teacher KD epoch: {three:.2f} s; ratio {three / one:.3f}")
PY

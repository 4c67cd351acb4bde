#!/usr/bin/env bash
# Time to accuracy on BreastMNIST (issue #31): the README demo (configs/demo/breastmnist.toml)
# trained by medkd and by the same recipe in plain PyTorch (bench/time_to_accuracy.py), seed by
# seed, each in turn on the same machine. For each run: the first epoch whose validation AUC
# reaches TARGET and the seconds from the start of training to the end of that epoch's
# validation (medkd's also include writing its checkpoints). Writes $OUT/time_to_accuracy.json.
#
#   bench/time_to_accuracy.sh TARGET [SEED...]      (default seeds 0 1 2)
#   MEDKD=binary (default target/release/medkd), PYTHON=python with torch (default .venv/bin/python),
#   OUT=folder (default runs/time_to_accuracy), THREADS=threads for both (default 2)
set -euo pipefail
target=${1:?usage: bench/time_to_accuracy.sh TARGET [SEED...]}
shift
seeds=("$@")
[[ ${#seeds[@]} -gt 0 ]] || seeds=(0 1 2)
medkd=${MEDKD:-target/release/medkd}
python=${PYTHON:-.venv/bin/python}
out=${OUT:-runs/time_to_accuracy}
threads=${THREADS:-2}
mkdir -p "$out"
for seed in "${seeds[@]}"; do
    rm -rf "$out/medkd_s$seed"
    RAYON_NUM_THREADS=$threads "$medkd" train --quiet --config configs/demo/breastmnist.toml --set "seed=$seed" --out "$out/medkd_s$seed" > "$out/medkd_s$seed.log" 2>&1
    "$python" bench/time_to_accuracy.py data/breastmnist.npz --seed "$seed" --threads "$threads" > "$out/pytorch_s$seed.jsonl"
done
python3 - "$target" "$out" "$threads" "${seeds[@]}" <<'PY'
import json, statistics, sys
target, out, threads, seeds = float(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4:]
def epochs(path, auc):
    return [(e["epoch"], auc(e), e["wall_seconds"]) for e in map(json.loads, open(path))]
runs = {
    "medkd": {s: epochs(f"{out}/medkd_s{s}/metrics.jsonl", lambda e: e["val"]["auc"]) for s in seeds},
    "pytorch": {s: epochs(f"{out}/pytorch_s{s}.jsonl", lambda e: e["val_auc"]) for s in seeds},
}
report = {"target_val_auc": target, "threads": threads, "seeds": seeds, "runs": {}}
for tool, by_seed in runs.items():
    rows = {}
    for seed, log in by_seed.items():
        reached = next(((epoch, seconds) for epoch, auc, seconds in log if auc >= target), None)
        rows[seed] = {"epoch": reached and reached[0] + 1, "seconds": reached and reached[1],
                      "seconds_per_epoch": log[-1][2] / len(log), "best_val_auc": max(auc for _, auc, _ in log)}
        print(f"{tool:8} seed {seed}: " + (f"val AUC {target} after epoch {reached[0] + 1}, {reached[1]:.1f} s" if reached else f"never reached {target} (best {rows[seed]['best_val_auc']:.3f})")
              + f"; {rows[seed]['seconds_per_epoch']:.2f} s per epoch")
    report["runs"][tool] = rows
json.dump(report, open(f"{out}/time_to_accuracy.json", "w"), indent=1)
PY

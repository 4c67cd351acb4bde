#!/usr/bin/env bash
# The long-tail tables (BENCHMARKS.md, issue #27): for one dataset and seed, a student per
# long-tail loss and relational subsets KD (RSKD) with cross-entropy and with a plug-in loss.
#
#   tools/experiments/longtail.sh ham10000|retinamnist SEED [ROW...]
#   e.g. tools/experiments/longtail.sh ham10000 0            (every row)
#        tools/experiments/longtail.sh retinamnist 1 ce balanced_softmax rskd_ce rskd_balanced_softmax
#
# Rows: ce focal class_balanced balanced_softmax ldam_drw rskd_ce rskd_balanced_softmax. Run
# folders go to runs/longtail/<dataset>_s<seed>/<row> (OUT=DIR for another root); a started run is
# resumed, a finished one skipped. An rskd_<loss> row trains its subset teachers and its student
# with <loss> (the student adds `subset_kd`): RSKD added to that long-tail method, compared with
# the <loss> row. A finished row's small files are copied to results/longtail/<dataset>_s<seed>/<row>
# by keep_run.py (RESULTS=DIR for another root); a kept row is not run again.
# `medkd compare` prints the tables from the kept files (BENCHMARKS.md gives the command).
set -euo pipefail
dataset=$1 seed=$2
shift 2
medkd=${MEDKD:-target/debug/medkd}
case $dataset in
    ham10000) student=configs/longtail/ham10000_mobilenetv2_64.toml rskd=configs/longtail/ham10000_rskd.toml drw=7 ;;
    retinamnist) student=configs/longtail/retinamnist_resnet18_28.toml rskd=configs/longtail/retinamnist_rskd.toml drw=14 ;;
    *) echo "dataset must be ham10000 or retinamnist, got '$dataset'" >&2; exit 2 ;;
esac
rows=("$@")
[[ ${#rows[@]} -gt 0 ]] || rows=(ce focal class_balanced balanced_softmax ldam_drw rskd_ce rskd_balanced_softmax)
out=${OUT:-runs/longtail}/${dataset}_s$seed
kept=${RESULTS:-results/longtail}/${dataset}_s$seed
mkdir -p "$out" "$kept"

# The loss terms of each row; DRW re-weights from 70% of the epochs on.
loss_of() {
    case $1 in
        ce) echo '[{ kind = "cross_entropy" }]' ;;
        focal) echo '[{ kind = "focal", gamma = 2.0 }]' ;;
        class_balanced) echo '[{ kind = "class_balanced", beta = 0.999 }]' ;;
        balanced_softmax) echo '[{ kind = "balanced_softmax" }]' ;;
        ldam_drw) echo "[{ kind = \"ldam\", max_margin = 0.5, scale = 30.0, drw_epoch = $drw }]" ;;
        *) echo "unknown row '$1'" >&2; exit 2 ;;
    esac
}

keep() { python3 "$(dirname "$0")/keep_run.py" "$out/$1" "$kept/$1"; }

for row in "${rows[@]}"; do
    [[ -d $kept/$row ]] && { echo "kept: $kept/$row"; continue; }
    case $row in
        rskd_*)
            plugin=$(loss_of "${row#rskd_}")
            loss="[${plugin#[}"
            loss="${loss%]}, { kind = \"subset_kd\", temperature = 4.0 }]"
            folder=$out/$row
            if [[ ! -f $folder/rskd.json ]]; then
                if [[ -f $folder/rskd.toml ]]; then
                    "$medkd" rskd --quiet --resume "$folder"
                else
                    "$medkd" rskd --quiet --config "$rskd" --set "seed=$seed" --set "loss=$loss" --set "rskd.teacher_loss=$plugin" --out "$folder"
                fi
            fi
            ;;
        *)
            folder=$out/$row
            if [[ ! -f $folder/summary.json ]]; then
                if [[ -f $folder/config.toml ]]; then
                    "$medkd" train --quiet --resume "$folder"
                else
                    "$medkd" train --quiet --config "$student" --set "seed=$seed" --set "loss=$(loss_of "$row")" --out "$folder"
                fi
            fi
            ;;
    esac
    keep "$row"
    echo "done: $folder, kept in $kept/$row"
done

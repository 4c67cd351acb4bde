#!/usr/bin/env bash
# Pretrained against from-scratch EfficientNet-Lite0 on HAM10000 (BENCHMARKS.md, issue #33): for
# each SEED, configs/ham10000/efficientnet_lite0_{pretrained,scratch}.toml with `seed = SEED`
# (the split stays the configs' seeded one).
#
#   tools/experiments/pretrained.sh ROW SEED...     ROW: pretrained, scratch or resnet18_64
#
# resnet18_64 is the page's ResNet-18 64 px recipe (configs/ham10000/resnet18.toml) on the same
# split, the baseline the pretrained student is measured against.
#
# Needs the ImageNet weights once: medkd weights download efficientnet_lite0. Run folders go to
# runs/pretrained/<row>_s<seed> (OUT=DIR for another root); a started run is resumed, a finished
# one skipped. Small files of a finished run are kept in results/pretrained/<row>_s<seed>
# (RESULTS=DIR) by keep_run.py.
set -euo pipefail
row=$1
shift
case $row in
    pretrained | scratch) config=configs/ham10000/efficientnet_lite0_$row.toml ;;
    resnet18_64) config=configs/ham10000/resnet18.toml ;;
    *) echo "row must be pretrained, scratch or resnet18_64, got '$row'" >&2; exit 2 ;;
esac
medkd=${MEDKD:-target/debug/medkd}
out=${OUT:-runs/pretrained}
kept=${RESULTS:-results/pretrained}
mkdir -p "$out" "$kept"
for seed in "$@"; do
    folder=$out/${row}_s$seed
    [[ -d $kept/${row}_s$seed ]] && { echo "kept: $kept/${row}_s$seed"; continue; }
    if [[ ! -f $folder/summary.json ]]; then
        if [[ -f $folder/config.toml ]]; then
            "$medkd" train --quiet --resume "$folder"
        else
            "$medkd" train --quiet --config "$config" --set "seed=$seed" --out "$folder"
        fi
    fi
    python3 "$(dirname "$0")/keep_run.py" "$folder" "$kept/${row}_s$seed"
    echo "done: $folder"
done

#!/usr/bin/env bash
# Every PneumoniaMNIST cell of the RoS-KD table (BENCHMARKS.md, issue #4): 40%, 20% and 0%
# symmetric and 20% asymmetric (pneumonia read as normal) label noise, seeds 0-2, each into
# runs/roskd_<cell>_s<seed> through roskd_table.sh. Finished runs are skipped, so repeating the
# command resumes the campaign.
#
#   MEDKD=target/debug/medkd tools/experiments/roskd_cells.sh [--set key=value]...
set -euo pipefail
here=$(dirname "$0")
for cell in sym40 sym20 sym0 asym20; do
    for seed in 0 1 2; do
        case $cell in
            sym40) noise="{ kind = \"symmetric\", rate = 0.4, seed = $seed }" ;;
            sym20) noise="{ kind = \"symmetric\", rate = 0.2, seed = $seed }" ;;
            sym0) noise="{ kind = \"symmetric\", rate = 0.0, seed = $seed }" ;;
            asym20) noise="{ kind = \"asymmetric\", rate = 0.2, pairs = [[\"pneumonia\", \"normal\"]], seed = $seed }" ;;
        esac
        "$here/roskd_table.sh" "runs/roskd_${cell}_s$seed" "$seed" "$noise" "$@"
    done
done

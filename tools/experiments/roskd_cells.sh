#!/usr/bin/env bash
# Every cell of the RoS-KD table (BENCHMARKS.md, issue #4) on PneumoniaMNIST, or on HAM10000 with
# DATASET=ham10000: 40%, 20% and 0% symmetric and 20% asymmetric label noise, seeds 0-2, each
# into runs/roskd_<cell>_s<seed> (HAM10000: runs/roskd_ham_<cell>_s<seed>) through
# roskd_table.sh. Asymmetric noise flips clinically confusable classes: pneumonia read as normal;
# on HAM10000 melanoma as nevus, keratosis as melanoma, actinic keratosis as BCC and BCC as
# keratosis. Finished runs are skipped and cells kept in results/roskd/ are not run again, so
# repeating the command resumes the campaign, in a later session too once results/ is committed.
# JOBS=N runs N cells at a time (on a GPU, where one cell leaves it mostly idle), each logging
# to runs/<cell folder>.log.
#
# CELLS="sym40 ..." runs only those noise settings; PRETRAINED=1 (see roskd_table.sh) the
# ImageNet-pretrained networks, into runs/roskd_pt_<cell>_s<seed> (HAM10000: roskd_ham_pt_...).
#
#   MEDKD=target/debug/medkd [DATASET=ham10000] [JOBS=1] [CELLS="sym40 sym20 sym0 asym20"] [PRETRAINED=0] tools/experiments/roskd_cells.sh [--set key=value]...
set -euo pipefail
here=$(dirname "$0")
jobs=${JOBS:-1}
[[ $jobs =~ ^[1-9][0-9]*$ ]] || { echo "JOBS must be a whole number of cells at a time (1 or more), got '$jobs'" >&2; exit 2; }
case ${DATASET:-pneumoniamnist} in
    pneumoniamnist) prefix=roskd pairs='[["pneumonia", "normal"]]' ;;
    ham10000) prefix=roskd_ham pairs='[["mel", "nv"], ["bkl", "mel"], ["akiec", "bcc"], ["bcc", "bkl"]]' ;;
    *) echo "DATASET must be pneumoniamnist or ham10000, got '$DATASET'" >&2; exit 2 ;;
esac
[[ ${PRETRAINED:-0} == 1 ]] && prefix=${prefix}_pt
cells=${CELLS:-sym40 sym20 sym0 asym20}
for cell in $cells; do
    [[ $cell =~ ^(sym40|sym20|sym0|asym20)$ ]] || { echo "CELLS: unknown cell '$cell' (sym40, sym20, sym0, asym20)" >&2; exit 2; }
done
mkdir -p runs
failed=0
for cell in $cells; do
    for seed in 0 1 2; do
        case $cell in
            sym40) noise="{ kind = \"symmetric\", rate = 0.4, seed = $seed }" ;;
            sym20) noise="{ kind = \"symmetric\", rate = 0.2, seed = $seed }" ;;
            sym0) noise="{ kind = \"symmetric\", rate = 0.0, seed = $seed }" ;;
            asym20) noise="{ kind = \"asymmetric\", rate = 0.2, pairs = $pairs, seed = $seed }" ;;
        esac
        out="runs/${prefix}_${cell}_s$seed"
        if ((jobs == 1)); then
            "$here/roskd_table.sh" "$out" "$seed" "$noise" "$@"
            continue
        fi
        while (($(jobs -rp | wc -l) >= jobs)); do wait -n || failed=1; done
        "$here/roskd_table.sh" "$out" "$seed" "$noise" "$@" > "$out.log" 2>&1 &
    done
done
while (($(jobs -rp | wc -l) > 0)); do wait -n || failed=1; done
exit $failed

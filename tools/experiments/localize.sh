#!/usr/bin/env bash
# The localization table (BENCHMARKS.md, "Lesion localization and hard-to-learn samples", issue
# #29) on ISIC 2018 with configs/localize/isic2018_resnet18.toml:
#   1. base: the plain box regressor, seeds 0-4 (seeds 0-2 are the table's baseline; all five
#      are the population that `medkd prune` mines);
#   2. prune: the population pruned at 0.3/0.5/0.7/0.9 on the training split, HTL = most models
#      disagree with their pruned selves at sparsity 0.7 (box IoU < 0.5). 0.7 was chosen from this
#      curve on the training split: at 0.5 each model flags 0-7 of 1,406 images, at 0.7 123-259;
#   3. htl: seeds 0-2 trained again with that fixed HTL set weighted 1 + beta = 3;
#   4. htl_adaptive: seeds 0-2 with the HTL set refreshed from the model being trained every 3
#      epochs (pruned at 0.7, IoU < 0.5), weighted 3;
#   5. semi, semi_htl, semi_labelled_only: semi-supervised, 30% of the training images keep their
#      box ([method.semi] with its defaults, one labelled set for all seeds; 20 epochs): the EMA teacher's
#      confidence-filtered pseudo-boxes for the rest, seeds 0-2, with adaptive HTL attention as in
#      step 4, and the 30% alone (weight = 0: the same steps without pseudo-boxes); SEEDS="0"
#      runs one seed of these steps;
#   6. ham_base, ham_prune: the same box regressor on HAM10000 (configs/localize/ham10000_resnet18.toml,
#      seeds 0-2) and its HTL set, for the demographic analysis (tools/experiments/htl_groups.py);
#   7. weak, weak_htl: weakly supervised, on HAM10000's diagnoses alone
#      (configs/localize/ham10000_weak_efficientnet_lite0.toml: Grad-CAM boxes), and with adaptive
#      HTL attention (the pruned classifier's CAM box moves: IoU < 0.5 at sparsity 0.5, every 2
#      epochs, weighted 3); SEEDS as in step 5;
#   8. ph2_scratch, ph2_scratch_htl, ph2_ft, ph2_ft_htl: PH2 by seeded 5-fold cross-validation
#      (configs/localize/ph2_resnet18.toml), fold k run with seed k so that `medkd compare` pairs the
#      rows fold by fold: from scratch, and fine-tuned from the ISIC model base_s<k> (step 1) at a
#      tenth of the learning rate; each without and with adaptive HTL attention as in step 4.
# Run folders go to runs/localize (OUT=DIR for another root); a started run is resumed, a finished
# one skipped. Finished runs' small files are copied to results/localize (RESULTS=DIR) by
# keep_run.py, with prune's htl.csv, scores.csv and prune.json.
#
#   tools/experiments/localize.sh [STEP...]     (steps: base prune htl htl_adaptive semi semi_htl
#                                                semi_labelled_only ham_base ham_prune weak weak_htl
#                                                ph2_scratch ph2_scratch_htl ph2_ft ph2_ft_htl;
#                                                default all)
set -euo pipefail
medkd=${MEDKD:-target/debug/medkd}
config=configs/localize/isic2018_resnet18.toml
out=${OUT:-runs/localize}
kept=${RESULTS:-results/localize}
steps=("$@")
[[ ${#steps[@]} -gt 0 ]] || steps=(base prune htl htl_adaptive semi semi_htl semi_labelled_only ham_base ham_prune weak weak_htl ph2_scratch ph2_scratch_htl ph2_ft ph2_ft_htl)
seeds=${SEEDS:-0 1 2}
semi='semi = { labelled = 0.3 }'
labelled_only='semi = { labelled = 0.3, weight = 0.0 }'
adaptive='htl = { refresh_epochs = 3, sparsity = 0.7, agreement = 0.5, beta = 2.0 }'
mkdir -p "$out" "$kept"

# train ROW SEED [--set ...]: one run, resumed if started, kept when finished.
train() {
    local row=$1 seed=$2
    shift 2
    local folder=$out/${row}_s$seed
    [[ -d $kept/${row}_s$seed ]] && { echo "kept: $kept/${row}_s$seed"; return; }
    if [[ ! -f $folder/summary.json ]]; then
        if [[ -f $folder/checkpoints/last.json ]]; then
            "$medkd" train --quiet --resume "$folder"
        else
            rm -rf "$folder"
            "$medkd" train --quiet --config "$config" --set "seed=$seed" "$@" --out "$folder"
        fi
    fi
    python3 "$(dirname "$0")/keep_run.py" "$folder" "$kept/${row}_s$seed"
}

# ph2 ROW: the five folds of a PH2 row (step 8).
ph2() {
    local row=$1 fold
    for fold in 0 1 2 3 4; do
        local set=(--set "data.split.fold=$fold")
        [[ $row == ph2_ft* ]] && set+=(--set "model.pretrained=\"$(realpath "$out")/base_s$fold/checkpoints/best.safetensors\"" --set train.optimizer.lr=0.0001)
        [[ $row == *_htl ]] && set+=(--set "method={ kind = \"localize\", $adaptive }")
        config=configs/localize/ph2_resnet18.toml train "$row" "$fold" "${set[@]}"
    done
}

for step in "${steps[@]}"; do
    case $step in
        base) for seed in 0 1 2 3 4; do train base "$seed"; done ;;
        prune)
            "$medkd" prune "$out"/base_s{0,1,2,3,4} --sparsity 0.3,0.5,0.7,0.9 --htl-sparsity 0.7 --agreement 0.5 --out "$out/prune"
            mkdir -p "$kept/prune"
            cp "$out"/prune/{htl.csv,scores.csv,prune.json} "$kept/prune/"
            ;;
        htl)
            for seed in 0 1 2; do
                train htl "$seed" --set "method={ kind = \"localize\", htl = { file = \"$PWD/$kept/prune/htl.csv\", beta = 2.0 } }"
            done
            ;;
        htl_adaptive)
            for seed in 0 1 2; do
                train htl_adaptive "$seed" --set "method={ kind = \"localize\", $adaptive }"
            done
            ;;
        semi) for seed in $seeds; do train semi "$seed" --set train.epochs=20 --set "method={ kind = \"localize\", $semi }"; done ;;
        semi_htl)
            for seed in $seeds; do
                train semi_htl "$seed" --set train.epochs=20 --set "method={ kind = \"localize\", $semi, $adaptive }"
            done
            ;;
        semi_labelled_only)
            for seed in $seeds; do
                train semi_labelled_only "$seed" --set train.epochs=20 --set "method={ kind = \"localize\", $labelled_only }"
            done
            ;;
        ham_base) for seed in 0 1 2; do config=configs/localize/ham10000_resnet18.toml train ham_base "$seed"; done ;;
        ham_prune)
            "$medkd" prune "$out"/ham_base_s{0,1,2} --sparsity 0.3,0.5,0.7,0.9 --htl-sparsity 0.7 --agreement 0.5 --out "$out/ham_prune"
            mkdir -p "$kept/ham_prune"
            cp "$out"/ham_prune/{htl.csv,scores.csv,prune.json} "$kept/ham_prune/"
            ;;
        weak) for seed in $seeds; do config=configs/localize/ham10000_weak_efficientnet_lite0.toml train weak "$seed"; done ;;
        weak_htl)
            for seed in $seeds; do
                config=configs/localize/ham10000_weak_efficientnet_lite0.toml train weak_htl "$seed" --set \
                    'method={ kind = "localize", weak = { cam_threshold = 0.2 }, htl = { refresh_epochs = 2, sparsity = 0.5, agreement = 0.5, beta = 2.0 } }'
            done
            ;;
        ph2_scratch | ph2_scratch_htl | ph2_ft | ph2_ft_htl) ph2 "$step" ;;
        *) echo "unknown step '$step'" >&2; exit 2 ;;
    esac
done

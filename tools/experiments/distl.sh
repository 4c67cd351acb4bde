#!/usr/bin/env bash
# DISTL on PneumoniaMNIST (BENCHMARKS.md, "DISTL: self-training rounds on PneumoniaMNIST", issue
# #28) with configs/distl/pneumoniamnist_vit_tiny_patch4.toml:
#   1. rounds: `medkd distl` per seed s (run seed s, split seed s: each seed its own labelled 10%
#      and folds): round 0 on the labelled part, rounds 1-3 adding one unlabelled fold each, and
#      the supervised baselines supervised1-3 on the same images with labels;
#   2. no_dino, no_correction, hard: ablations on seed 0 (lambda = 0; no correction pass; hard
#      pseudo-labels), rounds 1-3 (ABLATION_ROUNDS=N for rounds 1-N) without baselines. Their round 0 is the same run as step 1's
#      (a supervised stage, which none of the ablated keys touch), so it is copied from there;
#   3. dino: DINO pre-training on the training images, labels unused
#      (configs/distl/pneumoniamnist_dino_vit_tiny_patch4.toml), then linear probes on the
#      labelled 10% over its weights and over random ones (configs/distl/pneumoniamnist_linear_probe.toml),
#      normalized as the pre-training was, and the same frozen backbones scored by 20-NN
#      (`medkd eval --knn 20`, kept as knn_sS.txt); per seed s in SEEDS the labelled 10% is split
#      seed s's and the random weights seed s's (one pre-training run, seed 0).
# Run folders go to runs/distl (OUT=DIR for another root); a started run is resumed, a finished
# one skipped. Finished runs' JSON, TOML and test predictions are copied to results/distl
# (RESULTS=DIR); `tools/experiments/distl.sh keep NAME...` copies what runs/distl/NAME has finished
# so far.
#
#   tools/experiments/distl.sh [STEP...]     (steps: rounds no_dino no_correction hard dino; default all)
#   tools/experiments/distl.sh keep NAME...
set -euo pipefail
medkd=${MEDKD:-target/release/medkd}
config=configs/distl/pneumoniamnist_vit_tiny_patch4.toml
out=${OUT:-runs/distl}
kept=${RESULTS:-results/distl}
steps=("$@")
[[ ${#steps[@]} -gt 0 ]] || steps=(rounds no_dino no_correction hard dino)
seeds=${SEEDS:-0 1 2}
mkdir -p "$out" "$kept"

# keep FOLDER NAME: copies a finished run's (or staged run's) small files, and each stage's
# predictions/test.csv, to $kept/NAME.
keep() {
    local folder=$1 name=$2
    rm -rf "${kept:?}/$name"
    python3 "$(dirname "$0")/keep_run.py" "$folder" "$kept/$name"
    for predictions in "$folder"/*/predictions/test.csv "$folder"/predictions/test.csv; do
        [[ -f $predictions ]] || continue
        local relative=${predictions#"$folder"/}
        mkdir -p "$kept/$name/$(dirname "$relative")"
        cp "$predictions" "$kept/$name/$relative"
    done
}

# stage COMMAND NAME DONE STARTED [ARG...]: `medkd COMMAND ARG... --out $out/NAME`, unless
# $out/NAME/DONE shows it finished; resumed where $out/NAME/STARTED shows it started; kept when
# finished (a kept folder without DONE holds the finished stages of a DISTL run still going).
stage() {
    local command=$1 name=$2 done=$3 started=$4
    shift 4
    local folder=$out/$name
    [[ -f $kept/$name/$done ]] && { echo "kept: $kept/$name"; return; }
    if [[ ! -f $folder/$done ]]; then
        if [[ -f $folder/$started ]]; then
            "$medkd" "$command" --quiet --resume "$folder"
        else
            # A run folder that never finished an epoch starts over (a DISTL folder may hold a copied round 0).
            [[ $command == train ]] && rm -rf "$folder"
            "$medkd" "$command" --quiet "$@" --out "$folder"
        fi
    fi
    keep "$folder" "$name"
}

# distl NAME SEED [--set ...]: one DISTL run (run seed and split seed SEED).
distl() {
    local name=$1 seed=$2
    shift 2
    stage distl "$name" distl.json distl.toml --config "$config" --set "seed=$seed" --set "method.split_seed=$seed" "$@"
}

# train NAME CONFIG [--set ...]: one run.
train() {
    local name=$1 run_config=$2
    shift 2
    stage train "$name" summary.json checkpoints/last.json --config "$run_config" "$@"
}

# ablation NAME KEY=VALUE: seed 0's rounds 1-3 with one key changed, from seed 0's round 0.
ablation() {
    local name=$1 set=$2
    [[ -f $out/s0/round0/summary.json ]] || { echo "ablation $name needs $out/s0/round0 (step rounds)" >&2; exit 1; }
    if [[ ! -e $out/$name/round0 ]]; then
        mkdir -p "$out/$name"
        cp -r "$out/s0/round0" "$out/$name/round0"
    fi
    distl "$name" 0 --set "$set" --set distl.baselines=false --set "distl.rounds=${ABLATION_ROUNDS:-3}"
}

if [[ ${steps[0]} == keep ]]; then
    for name in "${steps[@]:1}"; do keep "$out/$name" "$name"; done
    exit
fi

for step in "${steps[@]}"; do
    case $step in
        rounds) for seed in $seeds; do distl "s$seed" "$seed"; done ;;
        no_dino) ablation no_dino method.lambda=0.0 ;;
        no_correction) ablation no_correction method.correction_every=0 ;;
        hard) ablation hard 'method.pseudo_labels="hard"' ;;
        dino)
            # DINO_EPOCHS=N pre-trains for N epochs instead of the config's 5, as dinoN_s0,
            # probed as probe_dinoN_sS and kept as knnN_sS.txt.
            epochs=${DINO_EPOCHS:-5}
            tag=$([[ $epochs == 5 ]] || echo "$epochs")
            train "dino${tag}_s0" configs/distl/pneumoniamnist_dino_vit_tiny_patch4.toml --set "train.epochs=$epochs"
            normalize=$(python3 -c "import json,sys; n=json.load(open(sys.argv[1]))['normalization']; print('data.normalize={ kind = \"custom\", mean = %s, std = %s }' % (n['mean'], n['std']))" "$out/dino${tag}_s0/summary.json")
            probe=configs/distl/pneumoniamnist_linear_probe.toml
            for seed in $seeds; do
                labelled=(--set "seed=$seed" --set "data.train_subset={ ratio = 0.1, seed = $seed }")
                train "probe_dino${tag}_s$seed" "$probe" "${labelled[@]}" --set "$normalize" --set "model.pretrained=\"$(realpath "$out")/dino${tag}_s0/checkpoints/best.safetensors\""
                # The 20-NN comparison below reads the random probe's weights, which kept files lack:
                # train it again (same seed, same result) when its run folder is gone.
                [[ -f $out/probe_random_s$seed/summary.json ]] || rm -rf "${kept:?}/probe_random_s$seed"
                train "probe_random_s$seed" "$probe" "${labelled[@]}" --set "$normalize"
                # The same backbones scored by 20-NN with the labelled 10% as the memory bank.
                "$medkd" eval --run "$out/probe_dino${tag}_s$seed" --knn 20 --against "$out/probe_random_s$seed" > "$kept/knn${tag}_s$seed.txt"
            done
            ;;
        *) echo "unknown step $step" >&2; exit 2 ;;
    esac
done

#!/usr/bin/env bash
# One row group of the RoS-KD comparison (BENCHMARKS.md): on PneumoniaMNIST (or HAM10000 with
# DATASET=ham10000) with the given label noise and seed, a ResNet-18 trained on the noisy labels
# alone, single-teacher KD (a ResNet-50 trained on the whole noisy split), mean multi-teacher KD
# (RoS-KD's three subset teachers) and RoS-KD itself; then FGSM and PGD-10 at 2/255 and 8/255 on
# every student.
#
#   [DATASET=ham10000] [PRETRAINED=1] tools/experiments/roskd_table.sh OUT SEED NOISE [--set key=value]...
#   e.g. tools/experiments/roskd_table.sh runs/roskd_sym40_s0 0 '{ kind = "symmetric", rate = 0.4, seed = 0 }' --set train.epochs=5
#
# PRETRAINED=1 (issue #33) starts every network from ImageNet weights, the backbone at 0.3 of the
# head's rate: EfficientNet-Lite0 students, an EfficientNet-Lite2 single teacher, and Lite2, Lite1
# and Lite0 as RoS-KD's three teachers (`medkd weights download` each first); cells are kept in
# results/roskd_pretrained.
#
# Extra --set overrides apply to every run. Finished runs are skipped, so the script resumes.
# A finished cell's small files (configs, metrics logs, summaries, attack reports; no weights,
# no CSVs, which its seeds remake) are copied to results/roskd/<cell> by keep_run.py
# (RESULTS=DIR for another root), which is committed: run folders are not sure to outlive a
# session's machine, and the tables in BENCHMARKS.md are printed from results/ by
# `medkd compare`. A kept cell is not run again.
set -euo pipefail
out=$1 seed=$2 noise=$3
shift 3
medkd=${MEDKD:-target/debug/medkd}
pretrained=${PRETRAINED:-0}
[[ $pretrained == 0 || $pretrained == 1 ]] || { echo "PRETRAINED must be 0 or 1, got '$pretrained'" >&2; exit 2; }
if ((pretrained)); then default_kept=results/roskd_pretrained; else default_kept=results/roskd; fi
kept=${RESULTS:-$default_kept}/$(basename "$out")
[[ -d $kept ]] && { echo "kept: $kept"; exit 0; }
# Every run sees the images resized (PneumoniaMNIST's 28 px to 32 px, the smallest size
# DenseNet-121's ImageNet stem takes; HAM10000 to 64 px) without random augmentation, so the KD
# students read cached teacher outputs.
select=()
case ${DATASET:-pneumoniamnist} in
    pneumoniamnist)
        student=configs/medmnist/pneumoniamnist_resnet18_28.toml side=32
        roskd=configs/roskd/pneumoniamnist_resnet18_28.toml kd=configs/roskd/pneumoniamnist_kd_baseline.toml ;;
    ham10000)
        # resnet18.toml keeps the checkpoint of best balanced accuracy; here every student and
        # teacher is selected as the RoS-KD configs select theirs, on validation macro-F1.
        student=configs/ham10000/resnet18.toml side=64 select=(--set train.select_metric=macro_f1)
        roskd=configs/roskd/ham10000_resnet18_64.toml kd=configs/roskd/ham10000_kd_baseline.toml ;;
    *) echo "DATASET must be pneumoniamnist or ham10000, got '$DATASET'" >&2; exit 2 ;;
esac
resize="[{ op = \"resize\", size = [$side, $side] }]"
networks=() single_teacher=resnet50
if ((pretrained)); then
    networks=(--set 'model={ arch = "efficientnet_lite0", pretrained = "imagenet", pretrained_skip = ["_fc."] }'
        --set 'train.finetune={ backbone_lr_scale = 0.3 }')
    single_teacher=efficientnet_lite2
fi
common=(--set "seed=$seed" --set "data.label_noise=$noise" --set "data.train_transforms=$resize" --set "data.eval_transforms=$resize" "${select[@]}" "${networks[@]}" "$@")

run() { # NAME COMMAND... : runs unless NAME/summary.json exists
    local name=$1
    shift
    [[ -f $out/$name/summary.json ]] && return
    [[ -f $out/$name/config.toml ]] && { $medkd "$1" --quiet --resume "$out/$name"; return; }
    "$medkd" "$@" --quiet --out "$out/$name"
}

mkdir -p "$out"
run noisy_student train --config "$student" "${common[@]}"
run single_teacher train --config "$student" "${common[@]}" --set "model.arch=$single_teacher"
if [[ ! -f $out/roskd/roskd.json ]]; then
    if [[ -f $out/roskd/roskd.toml ]]; then
        $medkd roskd --quiet --resume "$out/roskd"
    else
        subset_teachers=()
        ((pretrained)) && subset_teachers=(--set 'roskd.teacher=[{ arch = "efficientnet_lite2" }, { arch = "efficientnet_lite1" }, { arch = "efficientnet_lite0" }]')
        $medkd roskd --quiet --config "$roskd" "${common[@]}" "${subset_teachers[@]}" --out "$out/roskd"
    fi
fi
teachers=$(ls -d "$out"/roskd/teachers/*/ | sed 's#/$##' | awk '{printf "%s{ run = \"%s\" }", (NR > 1 ? ", " : ""), $0}')
run single_teacher_kd distill --config "$kd" "${common[@]}" \
    --set "teacher=[{ run = \"$out/single_teacher\" }]"
run mean_kd distill --config "$kd" "${common[@]}" --set "teacher=[$teachers]"

for student in noisy_student single_teacher_kd mean_kd roskd/student; do
    for attack in fgsm pgd; do
        [[ -f $out/$student/attack_$attack.json ]] && continue
        $medkd attack --run "$out/$student" --attack $attack --eps 2/255,8/255 > /dev/null
        mv "$out/$student/attack.json" "$out/$student/attack_$attack.json"
    done
done
python3 "$(dirname "$0")/keep_run.py" "$out" "$kept"
echo "done: $out, kept in $kept"

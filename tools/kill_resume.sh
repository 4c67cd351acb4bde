#!/usr/bin/env bash
# Resume, proven: trains a config once uninterrupted, then again while killing it with SIGKILL
# KILLS times, resuming after each kill, and compares every best.safetensors of the two runs
# tensor by tensor. Each kill comes a random time after the (re)start, uniform in
# [0.5 s, 3 x uninterrupted time / KILLS], so the kills spread over the whole run: steps,
# evaluation, checkpoint writes, an SSKD head stage, a staged plan's change of stage.
#
#   tools/kill_resume.sh train|distill|roskd|rskd CONFIG KILLS OUT [--set key=value]...
#   e.g. tools/kill_resume.sh train configs/demo/breastmnist.toml 20 runs/kill_demo --set train.epochs=4 --set train.checkpoint_every_seconds=0
#   (checkpoints after every epoch: with the default, a kill within the first minute restarts
#   from the start)
#
# Prints one line per kill (seconds after the start, whether the process was still running, the
# epoch lines logged so far) and the comparison; exits 1 if any tensor differs. MEDKD=binary (default target/debug/medkd).
set -euo pipefail
mode=$1 config=$2 kills=$3 out=$4
shift 4
medkd=${MEDKD:-target/debug/medkd}
rm -rf "$out" && mkdir -p "$out"

start=$(date +%s.%N)
"$medkd" "$mode" --quiet --config "$config" "$@" --out "$out/reference" > /dev/null 2>&1
wall=$(python3 -c "print(round($(date +%s.%N) - $start, 2))")
echo "uninterrupted: $wall s"
# What marks a started run: its resolved config, or a plan's file.
case $mode in roskd | rskd) marker=$mode.toml ;; *) marker=config.toml ;; esac

survived=0
for ((k = 1; k <= kills; k++)); do
    # Killed before it wrote its config: nothing to resume, start again.
    [[ -f $out/killed/$marker ]] || rm -rf "$out/killed"
    if [[ -d $out/killed ]]; then
        "$medkd" "$mode" --quiet --resume "$out/killed" > /dev/null 2>&1 &
    else
        "$medkd" "$mode" --quiet --config "$config" "$@" --out "$out/killed" > /dev/null 2>&1 &
    fi
    pid=$!
    moment=$(python3 -c "import random; print(round(random.uniform(0.5, max(1.0, 3 * $wall / $kills)), 2))")
    sleep "$moment"
    if kill -9 "$pid" 2> /dev/null; then
        wait "$pid" 2> /dev/null || true
        survived=$((survived + 1))
        logged=$(find "$out/killed" -name metrics.jsonl -exec cat {} + | wc -l)
        echo "kill $k: at $moment s, running: killed ($logged epoch lines logged so far)"
    else
        wait "$pid" 2> /dev/null || true
        echo "kill $k: at $moment s, the run had finished"
    fi
done
"$medkd" "$mode" --quiet --resume "$out/killed" > /dev/null 2>&1

status=0
while IFS= read -r best; do
    relative=${best#"$out/reference/"}
    if python3 "$(dirname "$0")/same_tensors.py" "$best" "$out/killed/$relative" > /dev/null; then
        echo "identical: $relative"
    else
        echo "DIFFERENT: $relative"
        status=1
    fi
done < <(find "$out/reference" -name best.safetensors | sort)
echo "kills that interrupted a running process: $survived of $kills"
exit $status

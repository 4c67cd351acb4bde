#!/usr/bin/env bash
# Soaks the fuzz tests (crates/medkd/tests/fuzz.rs: npz, CSV datasets, image decoding, config
# parsing with --set, .pth/.safetensors loading, run-folder JSON) for MINUTES minutes: rounds of
# CASES cases per test (default 1000), each round with fresh random inputs, until the time is up.
# Prints the cases tried, the rounds and every failing round's output (a panic shows its minimal
# input; turn it into a named regression case in fuzz.rs).
#
#   tools/fuzz.sh MINUTES [CASES]
set -euo pipefail
minutes=${1:?usage: tools/fuzz.sh MINUTES [CASES]}
cases=${2:-1000}
tests=6
cargo test -p medkd --test fuzz --no-run --quiet
deadline=$(( $(date +%s) + minutes * 60 ))
rounds=0 failed=0 started=$(date +%s)
while (( $(date +%s) < deadline )); do
    if ! log=$(PROPTEST_CASES=$cases cargo test -p medkd --test fuzz --quiet 2>&1); then
        failed=$((failed + 1))
        echo "$log" | grep -E "panicked|minimal failing input|Test failed" -A3 || echo "$log" | tail -n 30
    fi
    rounds=$((rounds + 1))
done
elapsed=$(( $(date +%s) - started ))
echo "fuzz soak: $rounds rounds x $tests tests x $cases cases = $((rounds * tests * cases)) cases in $((elapsed / 60)) min $((elapsed % 60)) s; failing rounds: $failed"

#!/usr/bin/env python3
"""The pretrained-against-scratch table of BENCHMARKS.md (issue #33) from the kept runs of
tools/experiments/pretrained.sh: per row, the test metrics' mean ± sample std (ddof = 1) over
the seeds, the ECE after temperature scaling, the temperature, the range of wall seconds per
epoch (a range: the runs shared the cores with varying other work), then the paired difference
pretrained − scratch per seed.

    python3 tools/experiments/pretrained_table.py [RESULTS]      (default results/pretrained)
"""
import json
import pathlib
import statistics
import sys

ROWS = ["pretrained", "pretrained_x0.1", "scratch"]
COLUMNS = [
    ("balanced acc", lambda s: s["test"]["balanced_acc"]),
    ("macro AUC", lambda s: s["test"]["auc"]),
    ("macro-F1", lambda s: s["test"]["macro_f1"]),
    ("accuracy", lambda s: s["test"]["acc"]),
    ("ECE", lambda s: s["calibration"]["test_ece_before"]),
    ("ECE at T", lambda s: s["calibration"]["test_ece_after"]),
    ("T", lambda s: s["calibration"]["temperature"]),
    ("s / epoch", lambda s: s["wall_seconds"] / s["epochs_run"]),
]


def cell(values, digits=3, spread=True):
    if len(values) > 1 and not spread:
        return f"{min(values):.0f}-{max(values):.0f}"
    if len(values) > 1:
        return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"
    return f"{values[0]:.{digits}f} (1 seed)" if values else "–"


def main():
    results = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "results/pretrained")
    runs, machines = {}, set()
    for path in sorted(results.glob("*_s*/summary.json")):
        row, seed = path.parent.name.rsplit("_s", 1)
        s = json.loads(path.read_text())
        runs[row, int(seed)] = s
        machine = s["medkd"].get("machine") or {}
        machines.add(f"binary {s['medkd'].get('commit')}, {machine.get('cpu_model')} ({machine.get('simd')}, {machine.get('threads')} thread)")
    seeds = sorted({seed for _, seed in runs})
    print("| row | seeds | " + " | ".join(name for name, _ in COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    for row in ROWS:
        kept = [seed for seed in seeds if (row, seed) in runs]
        if kept:
            cells = [cell([get(runs[row, s]) for s in kept], spread=name != "s / epoch") for name, get in COLUMNS]
            print(f"| {row} | {','.join(map(str, kept))} | " + " | ".join(cells) + " |")
    both = [s for s in seeds if ("pretrained", s) in runs and ("scratch", s) in runs]
    if both:
        print()
        print("| pretrained − scratch | seeds | " + " | ".join(name for name, _ in COLUMNS[:5]) + " |")
        print("|---|---|" + "---|" * 5)
        cells = []
        for _, get in COLUMNS[:5]:
            diffs = [get(runs["pretrained", s]) - get(runs["scratch", s]) for s in both]
            cells.append(cell(diffs))
        print(f"| | {','.join(map(str, both))} | " + " | ".join(cells) + " |")
    print()
    print("Made by: " + "; ".join(sorted(machines)))


if __name__ == "__main__":
    main()

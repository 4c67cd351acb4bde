#!/usr/bin/env python3
"""The long-tail tables of BENCHMARKS.md from the kept runs of tools/experiments/longtail.sh:
per row, the test metrics' mean ± sample std (ddof = 1) over the seeds kept, then the paired
differences (per seed, the same split and seed) of each row against cross-entropy and of each
RSKD row against the loss it plugs into.

    python3 tools/experiments/longtail_table.py [RESULTS]        (default results/longtail)
"""
import json
import pathlib
import statistics
import sys

ROWS = ["ce", "focal", "class_balanced", "balanced_softmax", "ldam_drw", "rskd_ce", "rskd_balanced_softmax"]
METRICS = ["acc", "balanced_acc", "macro_f1", "auc", "many_recall", "medium_recall", "few_recall"]
HEADERS = ["accuracy", "balanced acc", "macro-F1", "macro AUC", "many recall", "medium recall", "few recall"]
PAIRS = [(row, "ce") for row in ROWS[1:]] + [("rskd_balanced_softmax", "balanced_softmax")]


def summary(run):
    """A kept row's student summary: the run's own, or an RSKD plan's student."""
    for path in (run / "summary.json", run / "student" / "summary.json"):
        if path.is_file():
            return json.loads(path.read_text())
    return None


def cell(values):
    if len(values) > 1:
        return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"
    return f"{values[0]:.3f} (1 seed)" if values else "–"


def table(dataset, results):
    seeds = sorted(int(p.name.rsplit("_s", 1)[1]) for p in results.glob(f"{dataset}_s*") if p.is_dir())
    runs = {}  # (row, seed) -> test metrics
    machines = set()
    for seed in seeds:
        for row in ROWS:
            s = summary(results / f"{dataset}_s{seed}" / row)
            if s is not None:
                runs[row, seed] = s["test"]
                machine = s["medkd"].get("machine") or {}
                machines.add(f"binary {s['medkd'].get('commit')}, {machine.get('cpu_model')} ({machine.get('simd')})")
    if not runs:
        return ""
    lines = [f"### {dataset}", "", "| row | seeds | " + " | ".join(HEADERS) + " |", "|---|---|" + "---|" * len(HEADERS)]
    for row in ROWS:
        kept = [seed for seed in seeds if (row, seed) in runs]
        if kept:
            cells = [cell([runs[row, s][m] for s in kept if runs[row, s].get(m) is not None]) for m in METRICS]
            lines.append(f"| {row} | {','.join(map(str, kept))} | " + " | ".join(cells) + " |")
    lines += ["", "Paired differences (row − reference, per seed; mean ± std, and seeds where the row is higher):", ""]
    lines += ["| row − reference | seeds | " + " | ".join(HEADERS) + " |", "|---|---|" + "---|" * len(HEADERS)]
    for row, reference in PAIRS:
        both = [s for s in seeds if (row, s) in runs and (reference, s) in runs]
        if not both:
            continue
        cells = []
        for m in METRICS:
            diffs = [runs[row, s][m] - runs[reference, s][m] for s in both if runs[row, s].get(m) is not None and runs[reference, s].get(m) is not None]
            higher = sum(d > 0 for d in diffs)
            spread = f" ± {statistics.stdev(diffs):.3f}" if len(diffs) > 1 else ""
            cells.append(f"{statistics.mean(diffs):+.3f}{spread} ({higher}/{len(diffs)})" if diffs else "–")
        lines.append(f"| {row} − {reference} | {','.join(map(str, both))} | " + " | ".join(cells) + " |")
    lines += ["", "Made by: " + "; ".join(sorted(machines)), ""]
    return "\n".join(lines)


def main():
    results = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "results/longtail")
    if not results.is_dir():
        sys.exit(f"{results}: no such folder\n{__doc__}")
    print("\n".join(t for t in (table(d, results) for d in ("ham10000", "retinamnist")) if t))


if __name__ == "__main__":
    main()

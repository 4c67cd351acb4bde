#!/usr/bin/env python3
"""Test IoU by lesion group: joins each localization run's predictions/test.csv with the
dataset's labels.csv by image id and averages the IoU per quartile of a numeric column (lesion
area by default; quartiles of the test images), then per row (a run folder's name without its
_s<seed> suffix) as mean ± std over its runs. Shows where attending to hard-to-learn images
gains or loses.

    python3 tools/experiments/iou_by_group.py LABELS_CSV RUN... [--id image] [--column lesion_area_frac] --json OUT.json
"""

import argparse
import csv
import json
import re
import statistics
from pathlib import Path


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("labels_csv", type=Path)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--id", default="image")
    parser.add_argument("--column", default="lesion_area_frac")
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    with open(args.labels_csv, newline="") as f:
        value = {row[args.id]: float(row[args.column]) for row in csv.DictReader(f)}
    per_run = {}
    for run in args.runs:
        with open(run / "predictions" / "test.csv", newline="") as f:
            per_run[run] = [(value[r["image"]], float(r["iou"])) for r in csv.DictReader(f)]
    # Quartile edges of the test images (every run has the same test split).
    values = sorted(v for v, _ in next(iter(per_run.values())))
    edges = [values[len(values) * q // 4] for q in (1, 2, 3)]
    quartile = lambda v: sum(v >= e for e in edges)
    names = [f"Q1 (< {edges[0]:.3g})", f"Q2 (< {edges[1]:.3g})", f"Q3 (< {edges[2]:.3g})", f"Q4 (>= {edges[2]:.3g})"]
    rows = {}
    for run, pairs in per_run.items():
        means = [statistics.mean(iou for v, iou in pairs if quartile(v) == q) for q in range(4)]
        rows.setdefault(re.sub(r"_s\d+$", "", run.name), []).append(means)
    print(f"| row | runs | {' | '.join(names)} |\n|---|---|{'---|' * 4}")
    table = {}
    for row, runs in rows.items():
        cells = [(statistics.mean(m[q] for m in runs), statistics.stdev(m[q] for m in runs) if len(runs) > 1 else 0.0) for q in range(4)]
        table[row] = {"runs": len(runs), "quartiles": names, "mean_iou": cells}
        cell = (lambda m, s: f"{m:.3f} ± {s:.3f}") if len(runs) > 1 else (lambda m, s: f"{m:.3f} (1 run)")
        print(f"| {row} | {len(runs)} | {' | '.join(cell(m, s) for m, s in cells)} |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"column": args.column, "edges": edges, "rows": table}, indent=1) + "\n")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Who is hard to learn? Joins `medkd prune`'s htl.csv with a dataset's labels.csv by image id and,
for each grouping column, compares the hard-to-learn (HTL) images with the whole scored split:
count and share of each group among HTL and among all images, the HTL rate per group, and a
chi-square test of independence between group and HTL status (scipy.stats.chi2_contingency on the
group x {HTL, not HTL} table; groups with fewer than 5 expected HTL images are pooled into
"other" first, as the test's approximation needs). A numeric column is cut into quartiles of the
scored split (`--quartiles COLUMN`).

    .venv/bin/python tools/experiments/htl_groups.py HTL_CSV LABELS_CSV --id image \\
        [--column NAME]... [--quartiles NAME]... --json OUT.json

Prints a Markdown table per column."""

import argparse
import csv
import json
from pathlib import Path

import numpy as np
from scipy.stats import chi2_contingency


def quartile_labels(values):
    """Quartile names of numeric strings; an empty value is "unknown"."""
    known = [float(v) for v in values if v != ""]
    edges = np.quantile(known, [0.25, 0.5, 0.75])
    names = [f"Q1 (<= {edges[0]:.3g})", f"Q2 (<= {edges[1]:.3g})", f"Q3 (<= {edges[2]:.3g})", f"Q4 (> {edges[2]:.3g})"]
    return [names[int(np.searchsorted(edges, float(v), side="left"))] if v != "" else "unknown" for v in values]


def analyse(groups, htl):
    names = sorted(set(groups))
    htl_counts = {g: sum(1 for x, h in zip(groups, htl) if x == g and h) for g in names}
    all_counts = {g: groups.count(g) for g in names}
    n, n_htl = len(groups), sum(htl)
    # Pool groups too small for the chi-square approximation (expected HTL count < 5).
    pooled = {g: (g if all_counts[g] * n_htl / n >= 5 else "other") for g in names}
    keys = sorted(set(pooled.values()))
    table = np.array([[sum(htl_counts[g] for g in names if pooled[g] == k), sum(all_counts[g] - htl_counts[g] for g in names if pooled[g] == k)] for k in keys])
    if len(keys) > 1 and table.sum(axis=0).min() > 0:
        chi2, p, dof, _ = chi2_contingency(table)
    else:
        chi2, p, dof = float("nan"), float("nan"), 0
    rows = [
        {"group": g, "all": all_counts[g], "htl": htl_counts[g], "share_all": all_counts[g] / n, "share_htl": htl_counts[g] / max(n_htl, 1), "htl_rate": htl_counts[g] / all_counts[g]}
        for g in names
    ]
    return {"images": n, "htl": n_htl, "rows": rows, "chi2": float(chi2), "dof": int(dof), "p": float(p), "tested_groups": keys}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("htl_csv", type=Path)
    parser.add_argument("labels_csv", type=Path)
    parser.add_argument("--id", default="image", help="the labels.csv column holding the image id")
    parser.add_argument("--column", action="append", default=[])
    parser.add_argument("--quartiles", action="append", default=[])
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    with open(args.labels_csv, newline="") as f:
        labels = {row[args.id]: row for row in csv.DictReader(f)}
    with open(args.htl_csv, newline="") as f:
        scored = [(labels[row["image"]], row["htl"] == "1") for row in csv.DictReader(f)]
    htl = [h for _, h in scored]
    results = {}
    for column in args.column:
        results[column] = analyse([row[column] or "unknown" for row, _ in scored], htl)
    for column in args.quartiles:
        results[f"{column} (quartiles)"] = analyse(quartile_labels([row[column] for row, _ in scored]), htl)
    for name, r in results.items():
        print(f"\n**{name}** ({r['htl']} HTL of {r['images']}; chi-square {r['chi2']:.2f}, dof {r['dof']}, p = {r['p']:.3g})\n")
        print("| group | images | HTL | share of all | share of HTL | HTL rate |\n|---|---|---|---|---|---|")
        for row in r["rows"]:
            print(f"| {row['group']} | {row['all']} | {row['htl']} | {row['share_all']:.3f} | {row['share_htl']:.3f} | {row['htl_rate']:.3f} |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"htl_csv": str(args.htl_csv), "labels_csv": str(args.labels_csv), "columns": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()

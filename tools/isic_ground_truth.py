#!/usr/bin/env python3
"""Ground truth in the ISIC challenge layout (`image,<class 1>,...`, one-hot) for a split of a
medkd run whose split medkd made (its split.csv), so the official scorer can read it beside
`medkd predict --split`:

    medkd predict --run RUN --split test --out predictions.csv
    python3 tools/isic_ground_truth.py RUN test > truth.csv
    isic-challenge-scoring classification truth.csv predictions.csv

Image names lose their file extension, as `medkd predict` writes them; the class columns are
the run's classes in the run's order (summary.json `class_names`).
"""
import csv
import json
import pathlib
import sys


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    run, split = pathlib.Path(sys.argv[1]), sys.argv[2]
    classes = json.loads((run / "summary.json").read_text())["class_names"]
    table = run / "split.csv"
    if not table.is_file():
        sys.exit(f"{table}: no such file (only runs whose split medkd made have one)")
    out = csv.writer(sys.stdout)
    out.writerow(["image"] + classes)
    for row in csv.DictReader(table.open(newline="")):
        if row["split"] == split:
            stem = row["image"].rsplit(".", 1)[0] if "." in row["image"] else row["image"]
            out.writerow([stem] + ["1.0" if row["label"] == c else "0.0" for c in classes])


if __name__ == "__main__":
    main()

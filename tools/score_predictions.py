#!/usr/bin/env python3
"""Scores a `medkd predict --split test` CSV with scikit-learn and compares it with the run's
summary.json: an independent check that predict's output and the run's reported metrics agree.

    medkd predict --run RUN --split test --out RUN/preds.csv
    .venv/bin/python tools/score_predictions.py RUN RUN/preds.csv

Labels come from the run's own data: the test split of a MedMNIST npz (rows are indexed by the
`image` column), or split.csv for sets that medkd split itself (rows matched by image id).
Single-label tasks only (binary, multi-class, ordinal). Exits 1 when a metric differs by more
than 1e-6.
"""

import csv
import json
import sys
import tomllib
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score


def read_predictions(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    if header[0] != "image":
        sys.exit(f"{path}: first column is {header[0]!r}, expected 'image'")
    ids = [r[0] for r in body]
    probs = np.array([[float(v) for v in r[1:]] for r in body], dtype=np.float64)
    return header[1:], ids, probs


def test_labels(run, ids, class_names):
    config = tomllib.loads((run / "config.toml").read_text())
    data = config["data"]
    if data["format"] == "medmnist":
        labels = np.load(data["path"])["test_labels"].reshape(-1)
        return labels[[int(i) for i in ids]]
    # split.csv names each sample's class; the predictions' columns give the class order.
    with open(run / "split.csv", newline="") as f:
        rows = {r["image"]: r for r in csv.DictReader(f) if r["split"] == "test"}
    return np.array([class_names.index(rows[i]["label"]) for i in ids])


def sklearn_metrics(labels, probs):
    k = probs.shape[1]
    predicted = probs.argmax(axis=1)
    if k == 2:
        auc = roc_auc_score(labels, probs[:, 1])
    else:
        auc = roc_auc_score(labels, probs, multi_class="ovr", average="macro", labels=list(range(k)))
    return {
        "acc": accuracy_score(labels, predicted),
        "balanced_acc": balanced_accuracy_score(labels, predicted),
        "macro_f1": f1_score(labels, predicted, average="macro", labels=list(range(k)), zero_division=0),
        "auc": auc,
    }


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    run, preds = Path(sys.argv[1]), Path(sys.argv[2])
    class_names, ids, probs = read_predictions(preds)
    labels = test_labels(run, ids, class_names)
    summary = json.loads((run / "summary.json").read_text())["test"]
    worst = 0.0
    print(f"{'metric':<14}{'scikit-learn':>14}{'summary.json':>14}")
    for name, value in sklearn_metrics(labels, probs).items():
        reported = summary[name]
        worst = max(worst, abs(value - reported))
        print(f"{name:<14}{value:>14.6f}{reported:>14.6f}")
    print(f"largest difference {worst:.2e} over {len(ids)} test samples")
    sys.exit(0 if worst <= 1e-6 else 1)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Golden values for the plots of `medkd report`, computed by scikit-learn from the predictions
of a real run (the README demo, BreastMNIST, kept in crates/medkd-report/tests/fixtures/demo_run).

For each class, one against the rest on the test split: roc_curve (drop_intermediate=True, its
default), precision_recall_curve and average_precision_score; and the confusion matrix of the
argmax. Writes crates/medkd-report/tests/golden/demo_curves.json; the first ROC threshold
(+inf) is written as null.

Run from the repository root: .venv/bin/python tools/golden/report_curves_golden.py
"""

import csv
import json
import math
import pathlib

import numpy as np
import sklearn
from sklearn.metrics import average_precision_score, confusion_matrix, precision_recall_curve, roc_curve

ROOT = pathlib.Path(__file__).resolve().parents[2]
RUN = ROOT / "crates" / "medkd-report" / "tests" / "fixtures" / "demo_run"
OUT = ROOT / "crates" / "medkd-report" / "tests" / "golden" / "demo_curves.json"


def finite(values):
    return [None if math.isinf(v) else float(v) for v in values]


def main():
    with open(RUN / "predictions" / "test.csv", newline="") as f:
        rows = list(csv.reader(f))
    classes = rows[0][2:]
    labels = np.array([classes.index(r[1]) for r in rows[1:]])
    probs = np.array([[float(p) for p in r[2:]] for r in rows[1:]])
    out = {"sklearn": sklearn.__version__, "classes": classes, "roc": [], "pr": []}
    for c, name in enumerate(classes):
        positive = (labels == c).astype(int)
        fpr, tpr, thr = roc_curve(positive, probs[:, c])
        out["roc"].append({"class": name, "fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": finite(thr)})
        precision, recall, thr = precision_recall_curve(positive, probs[:, c])
        out["pr"].append(
            {
                "class": name,
                "precision": precision.tolist(),
                "recall": recall.tolist(),
                "thresholds": thr.tolist(),
                "average_precision": float(average_precision_score(positive, probs[:, c])),
            }
        )
    out["confusion"] = confusion_matrix(labels, probs.argmax(axis=1), labels=list(range(len(classes)))).tolist()
    OUT.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()

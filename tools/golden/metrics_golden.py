#!/usr/bin/env python3
"""Golden values for medkd-eval, computed independently with numpy and scikit-learn.

Run from the repository root:

    .venv/bin/python tools/golden/metrics_golden.py

It rewrites crates/medkd-eval/tests/golden/metrics.json, which `cargo test -p medkd-eval`
(tests/golden.rs) checks the Rust metrics against to 1e-6. The cases are seeded, so rerunning
with the same numpy/scikit-learn gives the same file.

Probabilities are rounded to float32 before any metric is computed, and written as the exact
float64 value of that float32, so Rust and Python evaluate bit-identical inputs.
"""

import json
import warnings
from pathlib import Path

import numpy as np
import sklearn
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
)

SEED = 20240611
ECE_BINS = 15
THRESHOLD = 0.5
OUT = Path(__file__).resolve().parents[2] / "crates/medkd-eval/tests/golden/metrics.json"


def softmax(logits):
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def auc_or_none(positive, scores):
    """ROC-AUC of one class vs the rest; None when only one of the two occurs."""
    positive = np.asarray(positive, dtype=int)
    if positive.min() == positive.max():
        return None
    return float(roc_auc_score(positive, scores.astype(np.float64)))


def mean_defined(values):
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


def ece(probs, labels):
    """15 equal-width bins (b/15, (b+1)/15] on the max probability; the first bin includes 0."""
    conf = probs.max(axis=1).astype(np.float64)
    correct = probs.argmax(axis=1) == labels
    edges = np.arange(ECE_BINS + 1) / float(ECE_BINS)
    total = 0.0
    for b in range(ECE_BINS):
        in_bin = (conf > edges[b]) & (conf <= edges[b + 1])
        if b == 0:
            in_bin |= conf == 0.0
        if in_bin.any():
            total += in_bin.mean() * abs(correct[in_bin].mean() - conf[in_bin].mean())
    return float(total)


def per_class_rows(names, precision, recall, f1, support, aucs):
    return [
        {
            "name": name,
            "precision": float(p),
            "recall": float(r),
            "f1": float(f),
            "support": int(s),
            "auc": auc,
        }
        for name, p, r, f, s, auc in zip(names, precision, recall, f1, support, aucs)
    ]


def single_label_case(name, class_names, probs, labels):
    k = len(class_names)
    probs = probs.astype(np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    pred = probs.argmax(axis=1)
    all_classes = list(range(k))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, pred, labels=all_classes, zero_division=0
    )
    aucs = [auc_or_none(labels == c, probs[:, c]) for c in all_classes]
    if k == 2:
        auc = float(roc_auc_score(labels, probs[:, 1].astype(np.float64)))
        assert auc == aucs[1]
    else:
        auc = mean_defined(aucs)
        if all(a is not None for a in aucs):
            # Cross-check the hand-rolled macro one-vs-rest mean against sklearn's own.
            ovr = roc_auc_score(labels, probs.astype(np.float64), multi_class="ovr", labels=all_classes)
            assert abs(ovr - auc) < 1e-12, (ovr, auc)
    expected = {
        "n": len(labels),
        "accuracy": float(accuracy_score(labels, pred)),
        "balanced_accuracy": float(balanced_accuracy_score(labels, pred)),
        "macro_f1": float(f1_score(labels, pred, labels=all_classes, average="macro", zero_division=0)),
        "auc": auc,
        "ece": ece(probs, labels),
        "per_class": per_class_rows(class_names, precision, recall, f1, support, aucs),
        "confusion": confusion_matrix(labels, pred, labels=all_classes).tolist(),
    }
    return {
        "name": name,
        "kind": "single_label",
        "num_classes": k,
        "class_names": class_names,
        "probs": [float(p) for p in probs.ravel()],
        "labels": labels.tolist(),
        "expected": expected,
    }


def multi_label_case(name, label_names, probs, targets):
    probs = probs.astype(np.float32)
    targets = np.asarray(targets, dtype=np.uint8)
    pred = (probs >= THRESHOLD).astype(np.uint8)
    precision, recall, f1, support = precision_recall_fscore_support(targets, pred, zero_division=0)
    aucs = [auc_or_none(targets[:, j], probs[:, j]) for j in range(len(label_names))]
    expected = {
        "n": len(targets),
        "subset_accuracy": float(accuracy_score(targets, pred)),
        "macro_f1": float(f1_score(targets, pred, average="macro", zero_division=0)),
        "micro_f1": float(f1_score(targets, pred, average="micro", zero_division=0)),
        "macro_auc": mean_defined(aucs),
        "per_label": per_class_rows(label_names, precision, recall, f1, support, aucs),
    }
    return {
        "name": name,
        "kind": "multi_label",
        "num_labels": len(label_names),
        "label_names": label_names,
        "probs": [float(p) for p in probs.ravel()],
        "targets": targets.ravel().tolist(),
        "expected": expected,
    }


def binary_with_ties(rng):
    n = 200
    labels = (rng.random(n) < 0.35).astype(np.int64)
    p1 = 1.0 / (1.0 + np.exp(-(1.5 * (2 * labels - 1) + rng.normal(0.0, 1.5, n))))
    p1 = np.round(p1, 2)  # coarse scores: many tied thresholds
    p1[:6] = [0.5, 0.5, 0.0, 1.0, 1.0, 0.0]  # argmax ties and extreme confidences
    p1 = p1.astype(np.float32)
    probs = np.stack([np.float32(1.0) - p1, p1], axis=1)
    return single_label_case("binary_ties", ["normal", "pneumonia"], probs, labels)


def multiclass(rng, name, class_names, frequencies, n, tie_fraction):
    k = len(class_names)
    labels = rng.choice(k, size=n, p=frequencies)
    logits = rng.normal(0.0, 1.0, (n, k)) + 1.8 * np.eye(k)[labels]
    probs = softmax(logits)
    # Round some rows coarsely so AUCs see tied scores and argmax sees tied maxima.
    tied = rng.random(n) < tie_fraction
    probs[tied] = np.round(probs[tied], 1)
    return single_label_case(name, class_names, probs, labels)


def multi_label(rng):
    n = 150
    names = ["effusion", "edema", "nodule", "hernia"]
    rates = np.array([0.5, 0.3, 0.1, 0.0])  # "hernia" never occurs: its AUC is undefined
    targets = (rng.random((n, len(names))) < rates).astype(np.uint8)
    logits = 1.5 * (2.0 * targets - 1.0) + rng.normal(0.0, 1.5, targets.shape)
    probs = np.round(1.0 / (1.0 + np.exp(-logits)), 2)
    probs[:4, 0] = THRESHOLD  # exactly on the threshold counts as present
    return multi_label_case("multi_label_k4", names, probs, targets)


def main():
    warnings.simplefilter("ignore")  # sklearn warns about classes missing from y_true/y_pred
    rng = np.random.default_rng(SEED)
    cases = [
        binary_with_ties(rng),
        multiclass(
            rng,
            "multiclass_k5_rare",
            ["normal", "benign", "malignant", "cyst", "calcification"],
            [0.4, 0.3, 0.2, 0.07, 0.03],
            n=300,
            tie_fraction=0.0,
        ),
        multiclass(
            rng,
            "multiclass_k7_missing_class",
            ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"],
            [0.1, 0.15, 0.2, 0.05, 0.0, 0.45, 0.05],  # "mel" never in y_true
            n=300,
            tie_fraction=0.3,
        ),
        multi_label(rng),
    ]
    golden = {
        "generator": "tools/golden/metrics_golden.py",
        "seed": SEED,
        "numpy": np.__version__,
        "scikit_learn": sklearn.__version__,
        "cases": cases,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(golden, separators=(",", ":")) + "\n")
    print(f"wrote {len(cases)} cases to {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()

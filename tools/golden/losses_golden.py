"""Golden values for medkd-losses, computed once with PyTorch (the independent reference).

Run from the repo root:  .venv/bin/python tools/golden/losses_golden.py
Writes crates/medkd-losses/tests/golden/losses.json; the Rust test compares to 1e-5.
"""
import json
import pathlib

import numpy as np
import torch
import torch.nn.functional as F

rng = np.random.default_rng(20261122)
cases = []


def f32(a):
    return np.asarray(a, dtype=np.float32)


for n, k, smoothing, weighted in [(16, 5, 0.0, False), (16, 5, 0.1, False), (33, 7, 0.0, True), (33, 7, 0.2, True), (8, 2, 0.05, True)]:
    logits = f32(rng.normal(0, 2.5, size=(n, k)))
    labels = rng.integers(0, k, size=n)
    weights = f32(rng.uniform(0.2, 5.0, size=k)) if weighted else None
    loss = F.cross_entropy(
        torch.from_numpy(logits),
        torch.from_numpy(labels),
        weight=None if weights is None else torch.from_numpy(weights),
        label_smoothing=smoothing,
    )
    cases.append({
        "kind": "cross_entropy",
        "logits": logits.ravel().tolist(), "n": n, "k": k,
        "labels": labels.tolist(),
        "class_weights": None if weights is None else weights.tolist(),
        "label_smoothing": smoothing,
        "expected": float(loss),
    })

for n, k in [(12, 4), (5, 14)]:
    logits = f32(rng.normal(0, 3.0, size=(n, k)))
    targets = f32(rng.integers(0, 2, size=(n, k)))
    loss = F.binary_cross_entropy_with_logits(torch.from_numpy(logits), torch.from_numpy(targets))
    cases.append({
        "kind": "bce",
        "logits": logits.ravel().tolist(), "n": n, "k": k,
        "targets": targets.ravel().tolist(),
        "expected": float(loss),
    })

# Per-sample weights (HTL attention): sum_i s_i * loss_i / sum_i w[y_i] (n without class weights).
for n, k, weighted, smoothing in [(9, 7, False, 0.0), (9, 7, True, 0.1)]:
    logits = f32(rng.normal(0, 2.5, size=(n, k)))
    labels = rng.integers(0, k, size=n)
    weights = f32(rng.uniform(0.2, 5.0, size=k)) if weighted else None
    samples = f32(rng.choice([0.0, 1.0, 3.0], size=n))
    per_sample = F.cross_entropy(
        torch.from_numpy(logits),
        torch.from_numpy(labels),
        weight=None if weights is None else torch.from_numpy(weights),
        label_smoothing=smoothing,
        reduction="none",
    )
    divisor = float(n) if weights is None else float(weights[labels].sum())
    cases.append({
        "kind": "cross_entropy",
        "logits": logits.ravel().tolist(), "n": n, "k": k,
        "labels": labels.tolist(),
        "class_weights": None if weights is None else weights.tolist(),
        "label_smoothing": smoothing,
        "sample_weights": samples.tolist(),
        "expected": float((per_sample * torch.from_numpy(samples)).sum() / divisor),
    })

out = pathlib.Path("crates/medkd-losses/tests/golden/losses.json")
out.write_text(json.dumps({"torch_version": torch.__version__, "cases": cases}, indent=1))
print(f"wrote {len(cases)} cases to {out}")

#!/usr/bin/env python3
"""Golden values for medkd-eval's box metrics, computed with torchvision.ops.box_iou.

Run from the repository root:

    .venv/bin/python tools/golden/box_metrics_golden.py

It rewrites crates/medkd-eval/tests/golden/boxes.json, which `cargo test -p medkd-eval`
(tests/boxes.rs) checks to 1e-6. The boxes are seeded, float32, and written as the exact float64
value of each float32, so Rust and Python read the same inputs. Cases: random valid boxes
(overlapping, nested, disjoint), plus shared edges and identical boxes."""

import json
from pathlib import Path

import numpy as np
import torch
import torchvision
from torchvision.ops import box_iou


def random_boxes(rng, n):
    corners = rng.uniform(0.0, 1.0, size=(n, 2, 2)).astype(np.float32)
    low, high = corners.min(axis=1), corners.max(axis=1)
    high = np.maximum(high, low + np.float32(1e-3))
    return np.concatenate([low, high], axis=1).astype(np.float32)


def main():
    rng = np.random.default_rng(2026)
    truth = random_boxes(rng, 40)
    # Predictions near the truth (jittered), so all IoU ranges occur.
    predicted = np.clip(truth + rng.normal(0.0, 0.08, size=truth.shape).astype(np.float32), 0.0, 1.0)
    predicted = np.concatenate([np.minimum(predicted[:, :2], predicted[:, 2:] - 1e-3), predicted[:, 2:]], axis=1).astype(np.float32)
    special_truth = np.array([[0.1, 0.1, 0.5, 0.5], [0.1, 0.1, 0.5, 0.5], [0.0, 0.0, 1.0, 1.0], [0.2, 0.2, 0.4, 0.4]], np.float32)
    special_pred = np.array([[0.1, 0.1, 0.5, 0.5], [0.5, 0.1, 0.9, 0.5], [0.25, 0.25, 0.75, 0.75], [0.6, 0.6, 0.8, 0.8]], np.float32)
    truth = np.concatenate([truth, special_truth])
    predicted = np.concatenate([predicted, special_pred])
    iou = box_iou(torch.from_numpy(predicted).double(), torch.from_numpy(truth).double()).diagonal().numpy()
    out = {
        "generator": f"torchvision {torchvision.__version__} box_iou (float64 on float32 inputs)",
        "predicted": predicted.astype(np.float64).tolist(),
        "truth": truth.astype(np.float64).tolist(),
        "iou": iou.tolist(),
        "mean_iou": float(iou.mean()),
        "acc_at_50": float((iou >= 0.5).mean()),
        "acc_at_75": float((iou >= 0.75).mean()),
    }
    path = Path("crates/medkd-eval/tests/golden/boxes.json")
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}: {len(iou)} boxes, mean IoU {out['mean_iou']:.4f}")


if __name__ == "__main__":
    main()

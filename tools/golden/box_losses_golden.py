#!/usr/bin/env python3
"""Golden values for medkd-losses' box terms (`box_l1`, `giou`), computed with PyTorch and
torchvision.ops.

Run from the repository root:

    .venv/bin/python tools/golden/box_losses_golden.py

It rewrites crates/medkd-losses/tests/golden/boxes.json, which `cargo test -p medkd-losses`
(tests/box_golden.rs) checks. Per case: raw head outputs [N, 4] (seeded, float32), true boxes,
per-sample weights; the decoded boxes (sigmoid, then torchvision's box_convert from cxcywh to
xyxy), the per-box L1 (summed over coordinates) and 1 - GIoU (generalized_box_iou_loss,
reduction="none"), the two weighted means, and the gradient of the weighted GIoU + L1 sum
with respect to the head outputs. Cases: random boxes, a prediction disjoint from its box, one
inside it, and one almost equal to it (exact ties in min/max have more than one valid gradient:
PyTorch splits it, burn does not)."""

import json
from pathlib import Path

import numpy as np
import torch
import torchvision
from torchvision.ops import box_convert, generalized_box_iou_loss


def random_boxes(rng, n):
    corners = rng.uniform(0.0, 1.0, size=(n, 2, 2)).astype(np.float32)
    low, high = corners.min(axis=1), corners.max(axis=1)
    high = np.maximum(high, low + np.float32(0.02))
    return np.concatenate([low, high], axis=1).astype(np.float32)


def logit(p):
    return np.log(p / (1.0 - p)).astype(np.float32)


def case(outputs, truth, weights):
    out = torch.tensor(outputs, requires_grad=True)
    boxes = box_convert(torch.sigmoid(out), "cxcywh", "xyxy")
    t = torch.tensor(truth)
    w = torch.tensor(weights)
    l1 = (boxes - t).abs().sum(dim=1)
    giou = generalized_box_iou_loss(boxes, t, reduction="none")
    l1_mean, giou_mean = (w * l1).mean(), (w * giou).mean()
    (l1_mean + giou_mean).backward()
    exact = lambda a: [float(v) for v in np.asarray(a, dtype=np.float32).ravel()]
    return {
        "n": len(truth),
        "outputs": exact(outputs),
        "truth": exact(truth),
        "weights": exact(weights),
        "decoded": exact(boxes.detach().numpy()),
        "l1": exact(l1.detach().numpy()),
        "giou": exact(giou.detach().numpy()),
        "l1_mean": l1_mean.item(),
        "giou_mean": giou_mean.item(),
        "grad": exact(out.grad.numpy()),
    }


def main():
    rng = np.random.default_rng(2026)
    cases = []
    n = 12
    outputs = rng.normal(0.0, 1.5, size=(n, 4)).astype(np.float32)
    weights = np.where(rng.uniform(size=n) < 0.3, 3.0, 1.0).astype(np.float32)
    cases.append(case(outputs, random_boxes(rng, n), weights))
    # Disjoint (prediction top-left, box bottom-right), nested (prediction inside), almost equal.
    truth = np.array([[0.6, 0.6, 0.9, 0.95], [0.1, 0.2, 0.8, 0.9], [0.25, 0.25, 0.75, 0.5]], dtype=np.float32)
    centre_size = np.array([[0.15, 0.2, 0.1, 0.2], [0.45, 0.55, 0.2, 0.3], [0.503, 0.377, 0.49, 0.244]], dtype=np.float32)
    cases.append(case(logit(centre_size), truth, np.ones(3, dtype=np.float32)))
    path = Path("crates/medkd-losses/tests/golden/boxes.json")
    path.write_text(json.dumps({"torch": torch.__version__, "torchvision": torchvision.__version__, "cases": cases}, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

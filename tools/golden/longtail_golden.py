"""Golden values for the long-tail loss terms (focal, class_balanced, balanced_softmax, ldam),
computed once with PyTorch from the papers' formulas and the authors' code.

Run from the repo root:  .venv/bin/python tools/golden/longtail_golden.py
Writes crates/medkd-losses/tests/golden/longtail.json; crates/medkd-losses/tests/longtail_golden.rs
builds each case's `spec` as a `[[loss]]` term with the case's training class counts and compares
its value on the case's logits and labels, and its gradient in the logits, to 1e-5 relative.
"""
import json
import pathlib

import numpy as np
import torch
import torch.nn.functional as F

rng = np.random.default_rng(20270127)
cases = []


def f32(a):
    return np.asarray(a, dtype=np.float32)


def batch(n, k, spread=2.5):
    logits = f32(rng.normal(0, spread, size=(n, k)))
    labels = rng.integers(0, k, size=n)
    return logits, labels


def add(spec, counts, logits, labels, loss, x, epoch=0):
    """`loss` computed from `x`, the float64 leaf made of `logits` by `t`: also records its gradient."""
    (grad,) = torch.autograd.grad(loss, x)
    n, k = logits.shape
    cases.append({
        "spec": spec,
        "class_counts": [int(c) for c in counts],
        "n": n, "k": k,
        "logits": logits.ravel().tolist(),
        "labels": labels.tolist(),
        "epoch": epoch,
        "expected": float(loss.detach()),
        "grad": grad.ravel().tolist(),
    })


def t(a, grad=False):
    return torch.from_numpy(np.asarray(a)).double().requires_grad_(grad)


# Focal loss, Lin et al. 2017: FL = -alpha_t (1 - p_t)^gamma log p_t, mean over the batch.
def focal_ref(x, labels, gamma, alpha=None):
    y = torch.from_numpy(labels)
    log_pt = F.log_softmax(x, dim=1).gather(1, y[:, None]).squeeze(1)
    pt = log_pt.exp()
    alpha_t = torch.ones_like(pt) if alpha is None else t(alpha)[y]
    return (-alpha_t * (1 - pt) ** gamma * log_pt).mean()


# Class-balanced weights, Cui et al. 2019 (their reference code's normalization).
def cb_weights(counts, beta):
    effective_num = 1.0 - np.power(beta, np.asarray(counts, dtype=np.float64))
    weights = (1.0 - beta) / effective_num
    return weights / np.sum(weights) * len(counts)


# LDAMLoss from Cao et al.'s code (kaidic/LDAM-DRW, losses.py), device-agnostic.
class LDAMLoss(torch.nn.Module):
    def __init__(self, cls_num_list, max_m=0.5, weight=None, s=30):
        super().__init__()
        m_list = 1.0 / np.sqrt(np.sqrt(cls_num_list))
        m_list = m_list * (max_m / np.max(m_list))
        self.m_list = torch.tensor(m_list, dtype=torch.float64)
        assert s > 0
        self.s = s
        self.weight = weight

    def forward(self, x, target):
        index = torch.zeros_like(x, dtype=torch.uint8)
        index.scatter_(1, target.data.view(-1, 1), 1)
        index_float = index.type(torch.float64)
        batch_m = torch.matmul(self.m_list[None, :], index_float.transpose(0, 1))
        batch_m = batch_m.view((-1, 1))
        x_m = x - batch_m
        output = torch.where(index.bool(), x_m, x)
        return F.cross_entropy(self.s * output, target, weight=self.weight)


# The DRW weights of the authors' train.py: betas = [0, 0.9999], idx = epoch // drw_epoch.
def drw_weights(counts, epoch, drw_epoch):
    beta = [0, 0.9999][min(epoch // drw_epoch, 1)]
    return torch.tensor(cb_weights(counts, beta), dtype=torch.float64)


counts5 = [600, 150, 40, 9, 3]
counts7 = [6705, 1113, 1099, 514, 327, 142, 115]  # HAM10000's full class counts

for gamma, alpha in [(0.0, None), (0.5, None), (1.0, None), (2.0, None), (5.0, None), (2.0, [0.25, 0.5, 1.0, 2.0, 4.0]), (0.0, [1.0, 0.3, 2.5, 0.7, 1.9])]:
    logits, labels = batch(24, 5)
    x = t(logits, grad=True)
    loss = focal_ref(x, labels, gamma, alpha)
    if gamma == 0.0 and alpha is None:
        assert abs(float(loss.detach()) - float(F.cross_entropy(t(logits), torch.from_numpy(labels)))) < 1e-12
    spec = {"kind": "focal", "gamma": gamma}
    if alpha is not None:
        spec["alpha"] = alpha
    add(spec, counts5, logits, labels, loss, x)
logits, labels = batch(17, 7, spread=6.0)  # confident predictions: (1 - p_t) near 0 for many rows
x = t(logits, grad=True)
add({"kind": "focal"}, counts7, logits, labels, focal_ref(x, labels, 2.0), x)

for beta, counts in [(0.0, counts5), (0.9, counts5), (0.99, counts5), (0.999, counts7), (0.9999, counts7), (None, counts7)]:
    logits, labels = batch(32, len(counts))
    weights = t(cb_weights(counts, 0.999 if beta is None else beta))
    x = t(logits, grad=True)
    loss = F.cross_entropy(x, torch.from_numpy(labels), weight=weights)
    spec = {"kind": "class_balanced"} if beta is None else {"kind": "class_balanced", "beta": beta}
    add(spec, counts, logits, labels, loss, x)

# Balanced softmax (Ren et al. 2020's code adds log(sample_per_class)), scaled by tau as logit
# adjustment (Menon et al. 2021): the constant log(N) cancels in the softmax.
for tau, counts in [(0.0, counts5), (0.5, counts5), (1.0, counts5), (2.0, counts7), (None, counts7)]:
    logits, labels = batch(20, len(counts))
    x = t(logits, grad=True)
    adjusted = x + (1.0 if tau is None else tau) * t(counts).log()[None, :]
    loss = F.cross_entropy(adjusted, torch.from_numpy(labels))
    spec = {"kind": "balanced_softmax"} if tau is None else {"kind": "balanced_softmax", "tau": tau}
    add(spec, counts, logits, labels, loss, x)

for spec, counts, epochs in [
    ({"kind": "ldam"}, counts5, [0]),
    ({"kind": "ldam", "max_margin": 0.3, "scale": 10.0}, counts7, [0]),
    ({"kind": "ldam", "drw_epoch": 3}, counts5, [0, 2, 3, 7]),
    ({"kind": "ldam", "max_margin": 0.8, "scale": 16.0, "drw_epoch": 1}, counts7, [0, 1]),
]:
    for epoch in epochs:
        logits, labels = batch(16, len(counts), spread=1.0)
        weight = drw_weights(counts, epoch, spec["drw_epoch"]) if "drw_epoch" in spec else None
        loss = LDAMLoss(counts, max_m=spec.get("max_margin", 0.5), weight=weight, s=spec.get("scale", 30.0))
        x = t(logits, grad=True)
        add(spec, counts, logits, labels, loss(x, torch.from_numpy(labels)), x, epoch=epoch)

out = pathlib.Path("crates/medkd-losses/tests/golden/longtail.json")
out.write_text(json.dumps({"torch_version": torch.__version__, "cases": cases}, indent=1))
print(f"wrote {len(cases)} cases to {out}")

"""Golden values for medkd-losses' distillation terms, computed once with PyTorch.

Each reference is written the way the method's reference implementation writes it, so the Rust
code (which computes the same quantities differently: chunked, clamped before sqrt, ...) is
checked against an independent formulation.

Run from the repo root:  .venv/bin/python tools/golden/kd_golden.py
Writes crates/medkd-losses/tests/golden/kd.json; the Rust test compares to 1e-5.
"""
import json
import pathlib

import numpy as np
import torch
import torch.nn.functional as F

rng = np.random.default_rng(20261123)
cases = []


def inputs(scale, *shape):
    """Seeded values rounded to float32, then held (exactly) in float64 so the reference is
    computed without float32 rounding; JSON gets those exact values."""
    return torch.from_numpy(rng.normal(0, scale, size=shape).astype(np.float32).astype(np.float64))


def flat(t):
    return t.detach().double().ravel().tolist()


def kd_kl(zs, zt, temperature):
    # Hinton et al. 2015, as in RepDistiller's DistillKL.
    return F.kl_div(F.log_softmax(zs / temperature, 1), F.softmax(zt / temperature, 1), reduction="batchmean") * temperature**2


def kd_bce(zs, zt, temperature):
    return F.binary_cross_entropy_with_logits(zs / temperature, torch.sigmoid(zt / temperature))


def at(x):
    # Zagoruyko & Komodakis 2017, szagoruyko/attention-transfer utils.py.
    return F.normalize(x.pow(2).mean(1).view(x.size(0), -1))


def attention_transfer(s, t):
    return (at(s) - at(t)).pow(2).mean()


def channel_gram_rmse(s, t):
    # SSD-KD's cr_dist: sqrt(mse(gram(s), gram(t))) with gram normalized by C*H*W.
    def gram(f):
        n, c, h, w = f.shape
        f = f.view(n, c, h * w)
        return f.bmm(f.transpose(1, 2)).div(c * h * w)

    return F.mse_loss(gram(s), gram(t)).sqrt()


def pdist(e, eps=1e-12):
    # lenscloth/RKD metric/utils.py.
    e_square = e.pow(2).sum(dim=1)
    prod = e @ e.t()
    res = (e_square.unsqueeze(1) + e_square.unsqueeze(0) - 2 * prod).clamp(min=eps).sqrt()
    res = res.clone()
    res[range(len(e)), range(len(e))] = 0
    return res


def rkd_distance(s, t):
    # lenscloth/RKD metric/loss.py RkdDistance.
    t_d = pdist(t)
    t_d = t_d / t_d[t_d > 0].mean()
    d = pdist(s)
    d = d / d[d > 0].mean()
    return F.smooth_l1_loss(d, t_d)


def rkd_angle(s, t):
    # lenscloth/RKD metric/loss.py RKdAngle.
    def angles(e):
        ed = e.unsqueeze(0) - e.unsqueeze(1)
        ed = F.normalize(ed, p=2, dim=2)
        return torch.bmm(ed, ed.transpose(1, 2)).view(-1)

    return F.smooth_l1_loss(angles(s), angles(t))


def case(kind, student, teacher, expected, **extra):
    cases.append({
        "kind": kind,
        "student_shape": list(student.shape), "student": flat(student),
        "teacher_shape": list(teacher.shape), "teacher": flat(teacher),
        "expected": expected.item(),
        **extra,
    })


for n, k, scale, temperature in [(5, 4, 2.0, 4.0), (7, 3, 1.0, 1.0), (4, 6, 20.0, 2.0)]:
    zs, zt = inputs(scale, n, k).requires_grad_(), inputs(scale, n, k)
    loss = kd_kl(zs, zt, temperature)
    (grad,) = torch.autograd.grad(loss, zs)
    case("kd_kl", zs, zt, loss, temperature=temperature, student_grad=flat(grad))
    case("kd_bce", zs, zt, kd_bce(zs, zt, temperature), temperature=temperature)

for n, cs, ct, h, w in [(5, 6, 8, 3, 3), (2, 3, 3, 4, 2)]:
    s, t = inputs(1.0, n, cs, h, w), inputs(1.0, n, ct, h, w)
    case("attention_transfer", s, t, attention_transfer(s, t))

for n, c, h, w in [(5, 6, 3, 3), (3, 4, 2, 5)]:
    s, t = inputs(1.0, n, c, h, w), inputs(1.5, n, c, h, w)
    case("hint_mse", s, t, F.mse_loss(s, t))
    case("channel_gram_rmse", s, t, channel_gram_rmse(s, t))

for n, cs, ct in [(5, 6, 8), (7, 4, 4)]:
    s, t = inputs(1.0, n, cs), inputs(3.0, n, ct)
    case("rkd_distance", s, t, rkd_distance(s, t))
    case("rkd_angle", s, t, rkd_angle(s, t))

# Maps with fewer positions than channels (medkd computes these through H*W x H*W products), with
# the student's gradient.
for n, c, h, w in [(3, 12, 2, 2), (2, 9, 1, 2)]:
    s, t = inputs(1.0, n, c, h, w).requires_grad_(), inputs(1.5, n, c, h, w)
    loss = channel_gram_rmse(s, t)
    (grad,) = torch.autograd.grad(loss, s)
    case("channel_gram_rmse", s, t, loss, student_grad=flat(grad))

# RKD angle with the student's gradient (medkd computes the cosines from Gram matrices), on
# distinct rows and with a row repeated in both embeddings, whose zero differences normalize to 0.
for n, cs, ct, repeat in [(6, 5, 7, False), (6, 4, 3, True)]:
    s, t = inputs(1.0, n, cs), inputs(2.0, n, ct)
    if repeat:
        s[4], t[4] = s[1], t[1]
    s.requires_grad_()
    loss = rkd_angle(s, t)
    (grad,) = torch.autograd.grad(loss, s)
    case("rkd_angle", s, t, loss, student_grad=flat(grad))

out = pathlib.Path("crates/medkd-losses/tests/golden/kd.json")
out.write_text(json.dumps({"torch_version": torch.__version__, "cases": cases}, indent=1))
print(f"wrote {len(cases)} cases to {out}")

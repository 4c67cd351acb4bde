"""Golden values for medkd-losses' SSKD rotation terms, computed once with PyTorch, written the
way xuguodong03/SSKD (student.py, teacher.py) writes them: views by torch.rot90, similarity by
F.cosine_similarity on expanded tensors, error-level ranking by argsort.

Run from the repo root:  .venv/bin/python tools/golden/sskd_golden.py
Writes crates/medkd-losses/tests/golden/sskd.json; the Rust test compares to 1e-5.
"""
import json
import pathlib

import numpy as np
import torch
import torch.nn.functional as F

rng = np.random.default_rng(20261122)
cases = []


def inputs(scale, *shape):
    """Seeded float32 values held exactly in float64, as kd_golden.py does."""
    return torch.from_numpy(rng.normal(0, scale, size=shape).astype(np.float32).astype(np.float64))


def flat(t):
    return t.detach().double().ravel().tolist()


def views(x):
    # SSKD's dataset yields [x, rot90, rot180, rot270] per image; the loop views them (-1, c, h, w).
    b, c, h, w = x.shape
    return torch.stack([torch.rot90(x, k, (2, 3)) for k in range(4)], 1).view(-1, c, h, w)


def rank_filter(knowledge, target, ratio):
    # SSKD student.py's error-level ranking (argsort made stable, so ties keep row order).
    rank = torch.argsort(knowledge, dim=1, descending=True)
    rank = torch.argmax(torch.eq(rank, target.unsqueeze(1)).long(), dim=1)
    index = torch.argsort(rank, stable=True)
    wrong_num = torch.nonzero(rank, as_tuple=True)[0].numel()
    correct_num = len(target) - wrong_num
    index = index[: correct_num + int(wrong_num * ratio)]
    return torch.sort(index)[0]


def index_split(batch):
    nor_index = (torch.arange(4 * batch) % 4 == 0)
    return nor_index, ~nor_index


def kd_rotated(s_logit, t_logit, target, temperature, ratio):
    batch = len(target)
    _, aug_index = index_split(batch)
    aug_knowledge = F.softmax(t_logit[aug_index] / temperature, dim=1)
    aug_target = target.unsqueeze(1).expand(-1, 3).contiguous().view(-1)
    keep = rank_filter(aug_knowledge, aug_target, ratio)
    loss = F.kl_div(F.log_softmax(s_logit[aug_index][keep] / temperature, dim=1), aug_knowledge[keep], reduction="batchmean")
    return loss * temperature * temperature, keep


def similarity(feat, batch):
    nor_index, aug_index = index_split(batch)
    nor_feat = feat[nor_index].unsqueeze(2).expand(-1, -1, 3 * batch).transpose(0, 2)
    aug_feat = feat[aug_index].unsqueeze(2).expand(-1, -1, 1 * batch)
    return F.cosine_similarity(aug_feat, nor_feat, dim=1)


def similarity_kd(s_feat, t_feat, temperature, ratio):
    batch = s_feat.shape[0] // 4
    s_simi, t_simi = similarity(s_feat, batch), similarity(t_feat, batch).detach()
    aug_target = torch.arange(batch).unsqueeze(1).expand(-1, 3).contiguous().view(-1)
    keep = rank_filter(t_simi, aug_target, ratio)
    log_simi = F.log_softmax(s_simi / temperature, dim=1)
    simi_knowledge = F.softmax(t_simi / temperature, dim=1)
    return F.kl_div(log_simi[keep], simi_knowledge[keep], reduction="batchmean") * temperature * temperature, keep


def rotation_contrastive(feat):
    # SSKD teacher.py: F.cross_entropy(simi, target) with the own-image target.
    batch = feat.shape[0] // 4
    target = torch.arange(batch).unsqueeze(1).expand(-1, 3).contiguous().view(-1)
    return F.cross_entropy(similarity(feat, batch), target)


for shape in [(2, 3, 4, 4), (1, 1, 5, 5)]:
    x = inputs(1.0, *shape)
    cases.append({"kind": "rotations", "input_shape": list(shape), "input": flat(x), "expected": flat(views(x))})

for batch, classes, scale, temperature, ratio in [(4, 3, 2.0, 4.0, 1.0), (5, 4, 3.0, 4.0, 0.5), (3, 5, 1.0, 2.0, 0.0)]:
    zs, zt = inputs(scale, 4 * batch, classes).requires_grad_(), inputs(scale, 4 * batch, classes)
    target = torch.from_numpy(rng.integers(0, classes, size=batch))
    loss, keep = kd_rotated(zs, zt, target, temperature, ratio)
    (grad,) = torch.autograd.grad(loss, zs)
    cases.append({
        "kind": "kd_rotated", "rows": 4 * batch, "cols": classes, "student": flat(zs), "teacher": flat(zt),
        "targets": target.tolist(), "temperature": temperature, "ratio": ratio,
        "kept": keep.tolist(), "expected": loss.item(), "student_grad": flat(grad),
    })

for batch, ds, dt, temperature, ratio in [(4, 6, 8, 0.5, 0.75), (6, 5, 5, 0.5, 0.25), (3, 4, 7, 1.0, 1.0)]:
    ps, pt = inputs(1.0, 4 * batch, ds).requires_grad_(), inputs(1.0, 4 * batch, dt)
    # Make the teacher's rotated views resemble their own image, so some rows rank correctly.
    pt = pt + 1.5 * pt[torch.arange(4 * batch) // 4 * 4]
    loss, keep = similarity_kd(ps, pt, temperature, ratio)
    (grad,) = torch.autograd.grad(loss, ps)
    cases.append({
        "kind": "similarity_kd", "batch": batch, "student_dim": ds, "teacher_dim": dt, "student": flat(ps),
        "teacher": flat(pt), "temperature": temperature, "ratio": ratio, "kept": keep.tolist(),
        "expected": loss.item(), "student_grad": flat(grad),
    })
    cases.append({
        "kind": "rotation_contrastive", "batch": batch, "dim": dt, "input": flat(pt),
        "expected": rotation_contrastive(pt).item(),
    })

out = pathlib.Path("crates/medkd-losses/tests/golden/sskd.json")
out.write_text(json.dumps({"torch_version": torch.__version__, "cases": cases}, indent=1))
print(f"wrote {len(cases)} cases to {out}")

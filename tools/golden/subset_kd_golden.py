"""Golden values for the `subset_kd` loss term (relational subsets KD, Ju et al. 2021), computed
once with PyTorch from the formula, independently of medkd's way of computing it.

Run from the repo root:  .venv/bin/python tools/golden/subset_kd_golden.py
Writes crates/medkd-losses/tests/golden/subset_kd.json; crates/medkd-losses/tests/subset_kd_golden.rs
builds each case's `spec` as a `[[loss]]` term with the case's student classes, training counts
and teachers' class names, and compares its value on the case's logits, and its gradient in the
student's logits, to 1e-5 relative.

Per teacher m with classes S_m (names, in the teacher's own column order):
  single-label: T^2 KL(softmax(z_t/T) || q), q = the student's softmax(z_s/T) restricted to S_m
                and renormalised; with an "other" column, q = the student's full softmax(z_s/T)
                with the classes outside S_m summed into "other" (no renormalisation needed).
  multi-label:  mean BCE(sigmoid(z_s[S_m]/T), sigmoid(z_t/T)).
Total: sum_m w_m KD_m, w_m given, or by default proportional to 1/sqrt(mean training count of
S_m) scaled to average 1.
"""
import json
import pathlib

import numpy as np
import torch
import torch.nn.functional as F

rng = np.random.default_rng(20261206)
CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
COUNTS = [229, 360, 770, 81, 779, 2809, 100]
cases = []


def f32(a):
    return np.asarray(a, dtype=np.float32)


def default_weights(teacher_classes):
    raw = []
    for names in teacher_classes:
        members = [CLASSES.index(c) for c in names if c != "other"]
        raw.append(1.0 / np.sqrt(max(np.mean([COUNTS[c] for c in members]), 1.0)))
    raw = np.asarray(raw)
    return raw / raw.mean()


def kd_single(zs, zt, names, t):
    p_student = torch.softmax(zs / t, dim=1)
    members = [CLASSES.index(c) for c in names if c != "other"]
    columns = []
    for name in names:
        if name == "other":
            rest = [c for c in range(len(CLASSES)) if c not in members]
            columns.append(p_student[:, rest].sum(dim=1))
        else:
            columns.append(p_student[:, CLASSES.index(name)])
    q = torch.stack(columns, dim=1)
    if "other" not in names:
        q = q / q.sum(dim=1, keepdim=True)
    p_teacher = torch.softmax(zt / t, dim=1)
    return (p_teacher * (torch.log(p_teacher) - torch.log(q))).sum() / zs.shape[0] * t * t


def kd_multi(zs, zt, names, t):
    index = [CLASSES.index(c) for c in names]
    return F.binary_cross_entropy_with_logits(zs[:, index] / t, torch.sigmoid(zt / t))


def add(teacher_classes, temperature, multi_label, weights=None, n=6, spread=2.5):
    student = f32(rng.normal(0, spread, size=(n, len(CLASSES))))
    teachers = [f32(rng.normal(0, spread, size=(n, len(names)))) for names in teacher_classes]
    zs = torch.tensor(student, dtype=torch.float64, requires_grad=True)
    w = weights if weights is not None else default_weights(teacher_classes)
    kd = kd_multi if multi_label else kd_single
    loss = sum(float(wm) * kd(zs, torch.tensor(zt, dtype=torch.float64), names, temperature)
               for wm, zt, names in zip(w, teachers, teacher_classes))
    (grad,) = torch.autograd.grad(loss, zs)
    spec = {"kind": "subset_kd", "temperature": temperature}
    if weights is not None:
        spec["subset_weights"] = weights
    cases.append({
        "spec": spec,
        "multi_label": multi_label,
        "n": n,
        "student": student.ravel().tolist(),
        "teacher_classes": teacher_classes,
        "teachers": [zt.ravel().tolist() for zt in teachers],
        "expected": float(loss.detach()),
        "grad": grad.numpy().ravel().tolist(),
    })


# Disjoint subsets (melanocytic vs the rest) in the teachers' own column order, default weights.
add([["nv", "mel"], ["bkl", "bcc", "akiec", "df", "vasc"]], 4.0, False)
# Overlapping subsets (benign/malignant overlap the lesion-type subsets), given weights.
add([["mel", "nv"], ["akiec", "bcc", "bkl", "df", "vasc"], ["mel", "bcc", "akiec"]], 2.0, False, weights=[0.5, 1.0, 2.0])
# Teachers with an "other" class (not always last), default weights, and uncovered classes.
add([["mel", "other"], ["df", "other", "vasc"]], 3.0, False)
add([["nv", "mel", "other"], ["bkl", "bcc", "akiec", "df", "vasc", "other"]], 1.0, False, n=5, spread=4.0)
# Multi-label: sigmoid form over overlapping slices.
add([["vasc", "df"], ["mel", "nv", "bcc"], ["nv", "bkl", "akiec", "df"]], 2.0, True)
add([["mel"], ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]], 5.0, True, weights=[1.5, 0.25])

out = pathlib.Path("crates/medkd-losses/tests/golden/subset_kd.json")
out.write_text(json.dumps({"classes": CLASSES, "class_counts": COUNTS, "cases": cases}, indent=1) + "\n")
print(f"wrote {len(cases)} cases to {out}")

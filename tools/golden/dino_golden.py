#!/usr/bin/env python3
"""Golden values for medkd-losses' DINO pieces (crates/medkd-losses/src/dino.rs), computed with the
code of facebookresearch/dino (main_dino.py `DINOLoss`, vision_transformer.py `DINOHead`,
utils.py `cosine_scheduler`), reproduced below as published (single process: no all_reduce).

Writes crates/medkd-losses/tests/golden/dino.json:
* "head": a small DINOHead (in 12, hidden 20, bottleneck 6, out 10, norm_last_layer=True) with
  seeded weights, 5 inputs, its outputs;
* "loss": 2 global + 3 local views of 4 samples, out_dim 10: the loss, its gradient with respect
  to every student view, the centre after the update, at student_temp 0.1, teacher_temp 0.04
  (and a second case at 0.07 after the warm-up), centre momentum 0.9 from a non-zero centre;
* "teacher_temperature" and "cosine": the schedules' values (DINO's warm-up of the teacher
  temperature, 0.04 -> 0.07 over 3 of 5 epochs; a cosine schedule with warm-up).

Everything in float64 on float32-rounded inputs. Run from the repository root:
    .venv/bin/python tools/golden/dino_golden.py
"""

import json
import pathlib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates" / "medkd-losses" / "tests" / "golden" / "dino.json"
rng = np.random.default_rng(20261206)


def f32(*shape, scale=1.0):
    return torch.from_numpy(rng.normal(0, scale, size=shape).astype(np.float32).astype(np.float64))


def flat(t):
    return t.detach().double().ravel().tolist()


class DINOHead(nn.Module):  # vision_transformer.py, use_bn=False
    def __init__(self, in_dim, out_dim, use_bn=False, norm_last_layer=True, nlayers=3, hidden_dim=2048, bottleneck_dim=256):
        super().__init__()
        nlayers = max(nlayers, 1)
        layers = [nn.Linear(in_dim, hidden_dim)]
        layers.append(nn.GELU())
        for _ in range(nlayers - 2):
            layers.append(nn.Linear(hidden_dim, hidden_dim))
            layers.append(nn.GELU())
        layers.append(nn.Linear(hidden_dim, bottleneck_dim))
        self.mlp = nn.Sequential(*layers)
        self.last_layer = nn.utils.weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        self.last_layer.weight_g.data.fill_(1)
        if norm_last_layer:
            self.last_layer.weight_g.requires_grad = False

    def forward(self, x):
        x = self.mlp(x)
        x = nn.functional.normalize(x, dim=-1, p=2)
        x = self.last_layer(x)
        return x


class DINOLoss(nn.Module):  # main_dino.py
    def __init__(self, out_dim, ncrops, warmup_teacher_temp, teacher_temp, warmup_teacher_temp_epochs, nepochs, student_temp=0.1, center_momentum=0.9):
        super().__init__()
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.ncrops = ncrops
        self.register_buffer("center", torch.zeros(1, out_dim))
        self.teacher_temp_schedule = np.concatenate((
            np.linspace(warmup_teacher_temp, teacher_temp, warmup_teacher_temp_epochs),
            np.ones(nepochs - warmup_teacher_temp_epochs) * teacher_temp
        ))

    def forward(self, student_output, teacher_output, epoch):
        student_out = student_output / self.student_temp
        student_out = student_out.chunk(self.ncrops)
        temp = self.teacher_temp_schedule[epoch]
        teacher_out = F.softmax((teacher_output - self.center) / temp, dim=-1)
        teacher_out = teacher_out.detach().chunk(2)
        total_loss = 0
        n_loss_terms = 0
        for iq, q in enumerate(teacher_out):
            for v in range(len(student_out)):
                if v == iq:
                    continue
                loss = torch.sum(-q * F.log_softmax(student_out[v], dim=-1), dim=-1)
                total_loss += loss.mean()
                n_loss_terms += 1
        total_loss /= n_loss_terms
        self.update_center(teacher_output)
        return total_loss

    @torch.no_grad()
    def update_center(self, teacher_output):
        batch_center = torch.sum(teacher_output, dim=0, keepdim=True)
        batch_center = batch_center / (len(teacher_output))
        self.center = self.center * self.center_momentum + batch_center * (1 - self.center_momentum)


def cosine_scheduler(base_value, final_value, epochs, niter_per_ep, warmup_epochs=0, start_warmup_value=0):  # utils.py
    warmup_schedule = np.array([])
    warmup_iters = warmup_epochs * niter_per_ep
    if warmup_epochs > 0:
        warmup_schedule = np.linspace(start_warmup_value, base_value, warmup_iters)
    iters = np.arange(epochs * niter_per_ep - warmup_iters)
    schedule = final_value + 0.5 * (base_value - final_value) * (1 + np.cos(np.pi * iters / len(iters)))
    schedule = np.concatenate((warmup_schedule, schedule))
    assert len(schedule) == epochs * niter_per_ep
    return schedule


def head_case():
    head = DINOHead(12, 10, hidden_dim=20, bottleneck_dim=6).double()
    params = {}
    with torch.no_grad():
        for i in (0, 2, 4):
            layer = head.mlp[i]
            layer.weight.copy_(f32(*layer.weight.shape, scale=0.3))
            layer.bias.copy_(f32(*layer.bias.shape, scale=0.1))
            params[f"mlp.{i // 2}.weight"] = flat(layer.weight)
            params[f"mlp.{i // 2}.bias"] = flat(layer.bias)
        head.last_layer.weight_v.copy_(f32(10, 6))
        params["last_layer.weight_v"] = flat(head.last_layer.weight_v)
    x = f32(5, 12)
    return {"in_dim": 12, "hidden": 20, "bottleneck": 6, "out_dim": 10, "params": params, "input": flat(x), "output": flat(head(x))}


def loss_case(epoch, batch=4, out_dim=10, ncrops=5):
    loss_fn = DINOLoss(out_dim, ncrops, 0.04, 0.07, 3, 5).double()
    loss_fn.center = f32(1, out_dim, scale=0.5)
    center = flat(loss_fn.center)
    student = f32(ncrops * batch, out_dim, scale=2.0).requires_grad_(True)
    teacher = f32(2 * batch, out_dim, scale=2.0)
    loss = loss_fn(student, teacher, epoch)
    loss.backward()
    return {
        "epoch": epoch,
        "teacher_temp": float(loss_fn.teacher_temp_schedule[epoch]),
        "student_temp": 0.1,
        "center_momentum": 0.9,
        "batch": batch,
        "out_dim": out_dim,
        "ncrops": ncrops,
        "student": flat(student),
        "teacher": flat(teacher),
        "center": center,
        "loss": loss.item(),
        "student_grad": flat(student.grad),
        "center_after": flat(loss_fn.center),
    }


def main():
    torch.manual_seed(0)
    out = {
        "torch": torch.__version__,
        "head": head_case(),
        "loss": [loss_case(0), loss_case(4)],
        "teacher_temperature": {"warmup_start": 0.04, "temp": 0.07, "warmup_epochs": 3, "epochs": 5,
                                "values": DINOLoss(4, 2, 0.04, 0.07, 3, 5).teacher_temp_schedule.tolist()},
        "cosine": {"base": 5e-4, "final": 1e-6, "epochs": 4, "niter_per_ep": 7, "warmup_epochs": 1, "warmup_start": 0.0,
                   "values": cosine_scheduler(5e-4, 1e-6, 4, 7, 1, 0.0).tolist()},
    }
    OUT.write_text(json.dumps(out) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()

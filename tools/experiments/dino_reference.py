#!/usr/bin/env python3
"""DINO pre-training in PyTorch with the recipe of configs/distl/pneumoniamnist_dino_vit_tiny_patch4.toml,
to see whether medkd's training curve (loss and 20-NN validation AUC per epoch) is the recipe's or
medkd's own (BENCHMARKS.md, "DINO pre-training alone"; issue #28).

Independent of medkd: timm's VisionTransformer (ViT-Tiny/4, 28 px, drop path 0.1, position
embeddings resampled for the 12 px local views), facebookresearch/dino's DINOHead, DINOLoss and
schedules as published (single process), torchvision's transforms. The recipe: two global views
(RandomResizedCrop 28 px, scale 0.4-1; rotation 15 degrees with p 0.5; brightness and contrast
jitter 0.4) and two 12 px local views (scale 0.05-0.4), normalized by the training pixels' mean and
std; out_dim 4096, hidden 512, bottleneck 256; teacher temperature 0.04, student 0.1, centre
momentum 0.9; EMA teacher, momentum 0.996 -> 1 on a cosine over the steps; last layer frozen for
epoch 0; AdamW (no decay on biases and norms, weight decay 0.04), batch 64, lr 2.5e-4 warmed up
linearly over epoch 0, then cosine to 1e-6. After each epoch the student's CLS embedding of the
validation images is scored by DINO's weighted 20-NN (T 0.07) with the training images as the bank.

    .venv/bin/python tools/experiments/dino_reference.py --epochs 5 --out results/distl/dino_reference_s0.jsonl
"""

import argparse
import json
import pathlib
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer
from torchvision.transforms import v2

# DINO's head, loss and EMA update as the DINO bench step runs them.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "bench"))
from pytorch_reference import DinoHead, dino_loss, ema_update  # noqa: E402

NPZ = "../shared/data/medmnist/pneumoniamnist.npz"


class Views(torch.utils.data.Dataset):
    def __init__(self, images, global_t, local_t, locals_):
        self.images, self.global_t, self.local_t, self.locals_ = images, global_t, local_t, locals_

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        x = self.images[i]
        return [self.global_t(x), self.global_t(x)] + [self.local_t(x) for _ in range(self.locals_)]


def cosine(base, final, epochs, steps, warmup_epochs=0, start_warmup=0.0):
    """utils.py cosine_scheduler."""
    warmup = np.linspace(start_warmup, base, warmup_epochs * steps) if warmup_epochs else np.array([])
    iters = np.arange(epochs * steps - len(warmup))
    schedule = final + 0.5 * (base - final) * (1 + np.cos(np.pi * iters / len(iters)))
    return np.concatenate((warmup, schedule))


def roc_auc_score(labels, scores):
    """Mann-Whitney U / (positives x negatives), ties counted half."""
    ranks = torch.from_numpy(scores).argsort().argsort().double().numpy() + 1
    for value in np.unique(scores):  # average ranks over ties
        tied = scores == value
        ranks[tied] = ranks[tied].mean()
    positives = labels == 1
    n_pos, n_neg = positives.sum(), (~positives).sum()
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def embed(net, x):
    return net["vit"].forward_head(net["vit"].forward_features(x), pre_logits=True)


@torch.no_grad()
def knn_auc(net, train_x, train_y, val_x, val_y, k=20, temperature=0.07):
    net.eval()
    bank = F.normalize(torch.cat([embed(net, b) for b in train_x.split(256)]), dim=1)
    query = F.normalize(torch.cat([embed(net, b) for b in val_x.split(256)]), dim=1)
    net.train()
    sims, idx = (query @ bank.T).topk(k, dim=1)
    weights = (sims / temperature).exp()
    votes = torch.zeros(len(query), 2).scatter_add_(1, train_y[idx], weights)
    return roc_auc_score(val_y.numpy(), (votes[:, 1] / votes.sum(1)).numpy())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    # The config's recipe by default; the keys `--set method.dino.out_dim=`, `train.optimizer.lr=`,
    # `method.dino.momentum_teacher=`, `train.batch_size=` change in medkd.
    parser.add_argument("--out-dim", type=int, default=4096)
    parser.add_argument("--lr", type=float, default=2.5e-4)
    parser.add_argument("--momentum", type=float, default=0.996)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)

    data = np.load(NPZ)
    train = torch.from_numpy(data["train_images"]).float().div(255).unsqueeze(1)
    val = torch.from_numpy(data["val_images"]).float().div(255).unsqueeze(1)
    train_y = torch.from_numpy(data["train_labels"]).long().view(-1)
    val_y = torch.from_numpy(data["val_labels"]).long().view(-1)
    mean, std = train.mean().item(), train.std().item()
    normalize = v2.Normalize([mean], [std])
    augment = [v2.RandomApply([v2.RandomRotation(15)], p=0.5), v2.ColorJitter(brightness=0.4, contrast=0.4), normalize]
    global_t = v2.Compose([v2.RandomResizedCrop(28, scale=(0.4, 1.0), antialias=True), *augment])
    local_t = v2.Compose([v2.RandomResizedCrop(12, scale=(0.05, 0.4), antialias=True), *augment])
    loader = torch.utils.data.DataLoader(Views(train, global_t, local_t, 2), batch_size=args.batch, shuffle=True, drop_last=True)

    def network(drop_path):
        vit = VisionTransformer(img_size=28, patch_size=4, in_chans=1, embed_dim=192, depth=12, num_heads=3,
                                num_classes=0, drop_path_rate=drop_path, dynamic_img_size=True)
        return torch.nn.ModuleDict({"vit": vit, "head": DinoHead(192, args.out_dim, 512, 256)})

    student, teacher = network(0.1), network(0.0)
    teacher.load_state_dict(student.state_dict())
    for p in teacher.parameters():
        p.requires_grad = False
    decayed = [p for n, p in student.named_parameters() if p.requires_grad and not (n.endswith(".bias") or p.ndim == 1)]
    undecayed = [p for n, p in student.named_parameters() if p.requires_grad and (n.endswith(".bias") or p.ndim == 1)]
    optimizer = torch.optim.AdamW([{"params": decayed}, {"params": undecayed, "weight_decay": 0.0}], weight_decay=0.04)
    steps = len(loader)
    lrs = cosine(args.lr, 1e-6, args.epochs, steps, warmup_epochs=1)
    momenta = cosine(args.momentum, 1.0, args.epochs, steps)
    center = torch.zeros(1, args.out_dim)
    norm_mean, norm_std = (train - mean) / std, (val - mean) / std

    with open(args.out, "w") as out:
        out.write(json.dumps({"epoch": -1, "knn_val_auc": knn_auc(student, norm_mean, train_y, norm_std, val_y)}) + "\n")
        for epoch in range(args.epochs):
            start, losses = time.time(), []
            for i, views in enumerate(loader):
                it = epoch * steps + i
                for group in optimizer.param_groups:
                    group["lr"] = lrs[it]
                with torch.no_grad():
                    teacher_out = teacher["head"](embed(teacher, torch.cat(views[:2])))
                student_out = torch.cat([student["head"](embed(student, torch.cat(views[:2]))),
                                         student["head"](embed(student, torch.cat(views[2:])))]) / 0.1
                targets = F.softmax((teacher_out - center) / 0.04, dim=-1).chunk(2)
                loss = dino_loss(student_out.chunk(4), targets)
                optimizer.zero_grad()
                loss.backward()
                if epoch < 1:
                    for p in student["head"].last_layer.parameters():
                        p.grad = None
                optimizer.step()
                ema_update(teacher, student, momenta[it])
                with torch.no_grad():
                    center = center * 0.9 + teacher_out.mean(dim=0, keepdim=True) * 0.1
                losses.append(loss.item())
            record = {"epoch": epoch, "train_loss": float(np.mean(losses)), "first_loss": losses[0], "last_loss": losses[-1],
                      "knn_val_auc": knn_auc(student, norm_mean, train_y, norm_std, val_y), "seconds": time.time() - start}
            print(record, flush=True)
            out.write(json.dumps(record) + "\n")
            out.flush()


if __name__ == "__main__":
    main()

"""The README demo's recipe (configs/demo/breastmnist.toml) in plain PyTorch, for time-to-accuracy.

BreastMNIST at 28 px, gray copied to 3 channels, normalized by the training images' mean and
std; torchvision's ResNet-18 (standard stem) with 2 classes; left-right flips with p 0.5; Adam
1e-3 with medkd's per-step cosine (the rate of step s of epoch e is the cosine at
e + (s + 1) / steps of the epochs); batch 64, shuffled; cross-entropy; 8 epochs. After each
epoch the validation AUC is computed, as medkd does. Prints one JSON line per epoch:
{"epoch", "val_auc", "wall_seconds"} with the seconds since training started (data loaded,
model built), as medkd's metrics.jsonl records them.

    python bench/time_to_accuracy.py data/breastmnist.npz --seed 0 --threads 2
"""

import argparse
import json
import math
import time

import numpy as np
import torch
import torchvision


def auc(scores, labels):
    """ROC AUC by the rank statistic, ties given their mean rank."""
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    positives = labels == 1
    n_pos, n_neg = positives.sum(), (~positives).sum()
    return (ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("npz")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    generator = np.random.default_rng(args.seed)

    data = np.load(args.npz)
    train_x = data["train_images"].astype(np.float32) / 255.0
    mean, std = train_x.mean(), train_x.std()

    def tensor(images):
        x = torch.from_numpy((images.astype(np.float32) / 255.0 - mean) / std)
        return x[:, None].expand(-1, 3, -1, -1).contiguous()

    train_x, val_x = tensor(data["train_images"]), tensor(data["val_images"])
    train_y = torch.from_numpy(data["train_labels"][:, 0].astype(np.int64))
    val_y = data["val_labels"][:, 0]

    model = torchvision.models.resnet18(num_classes=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch, base_lr = 64, 1e-3
    steps = math.ceil(len(train_x) / batch)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        order = torch.from_numpy(generator.permutation(len(train_x)))
        for step in range(steps):
            index = order[step * batch : (step + 1) * batch]
            x, y = train_x[index], train_y[index]
            flip = torch.from_numpy(generator.random(len(index)) < 0.5)
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
            done = epoch + (step + 1) / steps
            for group in optimizer.param_groups:
                group["lr"] = base_lr * (1 + math.cos(math.pi * done / args.epochs)) / 2
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            probabilities = torch.softmax(model(val_x), 1)[:, 1].numpy()
        print(json.dumps({"epoch": epoch, "val_auc": float(auc(probabilities, val_y)), "wall_seconds": time.perf_counter() - start}), flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""PyTorch reference timings for `medkd bench`.

Times the workloads of crates/medkd/src/bench.rs (same models, shapes, optimizer, augmentations,
repetition counts) so that the ratio medkd/PyTorch compares like with like. The last line of stdout
is one JSON object; progress goes to stderr:

    {"torch_version": "...", "torchvision_version": "...", "threads": 2,
     "results": {"train_64": {"median_ms": ..., "min_ms": ..., "iters": 10}, ...}}

or {"error": "..."} when torch cannot be imported. `medkd bench` runs it for you; alone:

    .venv/bin/python bench/pytorch_reference.py --iters 10 --warmup 3 \\
        --workloads train_64,loader_224 --ham10000 ../shared/data/ham10000

(`bash bench/setup_venv.sh` creates .venv with torch and torchvision.)
"""

import argparse
import csv
import itertools
import json
import os
import statistics
import sys
import time

try:
    import torch
    import torch.nn.utils.prune
    import torchvision
    from PIL import Image
    from torchvision import transforms
except ImportError as error:
    # A reason `medkd bench` can show in place of the PyTorch column, rather than a traceback.
    message = (
        f"torch/torchvision are missing for {sys.executable} ({error}); install them with "
        "`bash bench/setup_venv.sh` (creates .venv, which medkd bench uses by default) "
        "or pass --python PATH to an interpreter that has them"
    )
    print(json.dumps({"error": message}))
    sys.exit(1)

NUM_CLASSES = 10
LEARNING_RATE = 0.01
MASKED_SPARSITY = 0.5  # MASKED_SPARSITY in bench.rs

def efficientnet_lite0(num_classes):
    """The model code of the ImageNet checkpoints medkd loads (efficientnet-lite-pytorch), with
    TensorFlow "SAME" padding computed per input as medkd does (image_size=None)."""
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_name("efficientnet-lite0", num_classes=num_classes, image_size=None)


def vit_tiny(patch):
    """timm's ViT-Tiny (DeiT-Tiny widths) with `patch`-pixel patches, built for the workload's side."""

    def build(num_classes, side):
        from timm.models.vision_transformer import VisionTransformer

        return VisionTransformer(img_size=side, patch_size=patch, embed_dim=192, depth=12, num_heads=3, num_classes=num_classes)

    return build


# Models whose constructor takes the input side (position embeddings are learned per grid).
SIZED_ARCHS = {
    "vit_tiny_patch4": vit_tiny(4),
    "vit_tiny_patch8": vit_tiny(8),
}

ARCHS = {
    "resnet18": torchvision.models.resnet18,
    "resnet50": torchvision.models.resnet50,
    "mobilenet_v2": torchvision.models.mobilenet_v2,
    "densenet121": torchvision.models.densenet121,
    "efficientnet_lite0": efficientnet_lite0,
}

# name -> (architecture, mode, batch, image side): WORKLOADS in crates/medkd/src/bench.rs, same
# names and shapes (a unit test there checks the names). ResNet-18 names carry no prefix.
MODEL_WORKLOADS = {
    "train_64": ("resnet18", "train", 32, 64),
    # 50% of conv and linear weights pruned by global magnitude, masks kept (torch.nn.utils.prune's
    # forward pre-hook multiplies weight_orig by the mask every forward).
    "train_64_masked": ("resnet18", "masked_train", 32, 64),
    "train_224": ("resnet18", "train", 8, 224),
    "infer_224": ("resnet18", "infer", 32, 224),
    "infer_224_b1": ("resnet18", "infer", 1, 224),
    "mobilenetv2_train_64": ("mobilenet_v2", "train", 32, 64),
    "mobilenetv2_train_224": ("mobilenet_v2", "train", 8, 224),
    "mobilenetv2_infer_224": ("mobilenet_v2", "infer", 32, 224),
    "mobilenetv2_infer_224_b1": ("mobilenet_v2", "infer", 1, 224),
    "resnet50_train_64": ("resnet50", "train", 32, 64),
    "resnet50_train_224": ("resnet50", "train", 32, 224),
    "densenet121_train_64": ("densenet121", "train", 32, 64),
    "efficientnet_lite0_train_96": ("efficientnet_lite0", "train", 32, 96),
    "efficientnet_lite0_train_224": ("efficientnet_lite0", "train", 8, 224),
    "efficientnet_lite0_infer_224": ("efficientnet_lite0", "infer", 32, 224),
    "vit_tiny_patch4_train_28": ("vit_tiny_patch4", "train", 64, 28),
    "vit_tiny_patch8_train_64": ("vit_tiny_patch8", "train", 32, 64),
    "vit_tiny_patch8_infer_64": ("vit_tiny_patch8", "infer", 32, 64),
}

# name -> (crop side, images): one pass of the HAM10000 training pipeline over the first images
# of labels.csv.
LOADER_WORKLOADS = {
    "loader_224": (224, 512),
    "loader_all_224": (224, 5984),
}

# name -> (batch, student width, teacher width): the RKD angle loss and the student's gradient.
LOSS_WORKLOADS = {
    "rkd_angle_128": (128, 1280, 2048),
}

# name -> (batch, training counts of HAM10000's 7 classes, the teachers' subsets as class indices):
# relational subsets KD's term (T = 4, weights 1/sqrt(mean subset count) averaging 1) and the
# student's gradient, with the lesion-type teachers {mel, nv} and {akiec, bcc, bkl, df, vasc}.
SUBSET_KD_WORKLOADS = {
    "subset_kd_64": (64, (129, 184, 409, 42, 343, 3027, 56), ((4, 5), (0, 1, 2, 3, 6))),
}

# name -> (batch, global side, local side, out_dim): one DINO step as configs/distl runs it
# (crates/medkd/src/bench.rs `time_dino`): ViT-Tiny/4 with DINO's head (hidden 512, bottleneck
# 256) on 2 global and 2 local views, the EMA teacher on the global ones, AdamW.
DINO_WORKLOADS = {
    "dino_vit_tiny_patch4_28": (64, 28, 12, 4096),
}

ALL_WORKLOADS = [*MODEL_WORKLOADS, *LOADER_WORKLOADS, *LOSS_WORKLOADS, *SUBSET_KD_WORKLOADS, *DINO_WORKLOADS]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def log(message):
    print(message, file=sys.stderr, flush=True)


def time_iters(step, iters, warmup):
    """Runs `step` `warmup` times untimed, then `iters` times timed; the median and minimum in ms.

    Warm-ups absorb one-off costs (allocator growth, the optimizer's momentum buffers created on
    the first step, oneDNN primitive caches, DataLoader worker start-up, the page cache).
    """
    for _ in range(warmup):
        step()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1000.0)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "iters": len(times)}


def time_model(name, iters, warmup, device):
    arch, mode, batch, side = MODEL_WORKLOADS[name]
    torch.manual_seed(0)
    if arch in SIZED_ARCHS:
        model = SIZED_ARCHS[arch](NUM_CLASSES, side).to(device)
    else:
        model = ARCHS[arch](num_classes=NUM_CLASSES).to(device)  # the ImageNet stem, random weights
    images = torch.randn(batch, 3, side, side).to(device)
    labels = (torch.arange(batch) % NUM_CLASSES).to(device)  # i % 10, as bench.rs

    if mode == "masked_train":
        layers = [(m, "weight") for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
        torch.nn.utils.prune.global_unstructured(layers, pruning_method=torch.nn.utils.prune.L1Unstructured, amount=MASKED_SPARSITY)
    if mode in ("train", "masked_train"):
        model.train()  # BatchNorm on batch statistics
        loss_fn = torch.nn.CrossEntropyLoss()
        optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=0.9, dampening=0.0)

        def step():
            loss = loss_fn(model(images), labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            loss.item()  # read back every step for logging, as medkd's into_scalar (on a GPU, a sync)

    else:
        model.eval()  # BatchNorm on running statistics

        def step():
            with torch.inference_mode():
                model(images).cpu().numpy()  # logits read back, as medkd's into_data

    return time_iters(step, iters, warmup)


def rkd_angle(s, t):
    """lenscloth/RKD's RKdAngle (as tools/golden/kd_golden.py): all N^3 triplets at once."""
    def angles(e):
        ed = torch.nn.functional.normalize(e.unsqueeze(0) - e.unsqueeze(1), p=2, dim=2)
        return torch.bmm(ed, ed.transpose(1, 2)).view(-1)

    with torch.no_grad():
        teacher = angles(t)
    return torch.nn.functional.smooth_l1_loss(angles(s), teacher)


def time_loss(name, iters, warmup, device):
    batch, student_dim, teacher_dim = LOSS_WORKLOADS[name]
    torch.manual_seed(0)
    student = torch.randn(batch, student_dim, device=device, requires_grad=True)
    teacher = torch.randn(batch, teacher_dim, device=device)

    def step():
        loss = rkd_angle(student, teacher)
        loss.backward()
        loss.item()
        student.grad.cpu().numpy()  # read back, as medkd's into_data
        student.grad = None

    return time_iters(step, iters, warmup)


def time_subset_kd(name, iters, warmup, device, temperature=4.0):
    batch, counts, subsets = SUBSET_KD_WORKLOADS[name]
    torch.manual_seed(0)
    student = torch.randn(batch, len(counts), device=device, requires_grad=True)
    teachers = [torch.randn(batch, len(subset), device=device) for subset in subsets]
    raw = [1.0 / (sum(counts[c] for c in subset) / len(subset)) ** 0.5 for subset in subsets]
    weights = [w * len(raw) / sum(raw) for w in raw]
    index = [torch.tensor(subset, device=device) for subset in subsets]

    def step():
        loss = 0.0
        for w, t, i in zip(weights, teachers, index):
            log_q = torch.log_softmax(student[:, i] / temperature, dim=1)
            p = torch.softmax(t / temperature, dim=1)
            loss = loss + w * torch.nn.functional.kl_div(log_q, p, reduction="batchmean") * temperature**2
        loss.backward()
        loss.item()
        student.grad.cpu().numpy()
        student.grad = None

    return time_iters(step, iters, warmup)


class DinoHead(torch.nn.Module):
    """facebookresearch/dino's DINOHead (nlayers 3, no BN, norm_last_layer, its init), as medkd's."""

    def __init__(self, in_dim, out_dim, hidden, bottleneck):
        super().__init__()
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(in_dim, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, hidden), torch.nn.GELU(),
            torch.nn.Linear(hidden, bottleneck),
        )
        for layer in self.mlp:
            if isinstance(layer, torch.nn.Linear):
                torch.nn.init.trunc_normal_(layer.weight, std=0.02)
                torch.nn.init.zeros_(layer.bias)
        self.last_layer = torch.nn.utils.weight_norm(torch.nn.Linear(bottleneck, out_dim, bias=False))
        self.last_layer.weight_g.data.fill_(1)
        self.last_layer.weight_g.requires_grad = False

    def forward(self, x):
        x = torch.nn.functional.normalize(self.mlp(x), dim=-1, p=2)
        return self.last_layer(x)


def dino_loss(student_views, targets):
    """DINOLoss: cross-entropy of each student view against each teacher target of another view."""
    loss, pairs = 0.0, 0
    for t, q in enumerate(targets):
        for v, s in enumerate(student_views):
            if v != t:
                loss = loss + torch.sum(-q * torch.log_softmax(s, dim=-1), dim=-1).mean()
                pairs += 1
    return loss / pairs


@torch.no_grad()
def ema_update(teacher, student, momentum):
    """The teacher's parameters moved toward the student's: t = m t + (1 - m) s."""
    for p_t, p_s in zip(teacher.parameters(), student.parameters()):
        p_t.mul_(momentum).add_((1 - momentum) * p_s.detach())


def time_dino(name, iters, warmup, device, student_temp=0.1, teacher_temp=0.04, momentum=0.996):
    batch, global_side, local_side, out_dim = DINO_WORKLOADS[name]
    torch.manual_seed(0)
    from timm.models.vision_transformer import VisionTransformer

    def network():
        # dynamic_img_size: position embeddings resampled for the local views, as DINO's ViT.
        vit = VisionTransformer(img_size=global_side, patch_size=4, embed_dim=192, depth=12, num_heads=3,
                                num_classes=NUM_CLASSES, dynamic_img_size=True)
        return torch.nn.ModuleDict({"vit": vit, "head": DinoHead(192, out_dim, 512, 256)}).to(device)

    student, teacher = network(), network()
    teacher.load_state_dict(student.state_dict())
    for p in teacher.parameters():
        p.requires_grad = False
    teacher.eval()
    student.train()
    optimizer = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=1e-4, weight_decay=0.04)
    globals_ = torch.randn(2 * batch, 3, global_side, global_side, device=device)
    locals_ = torch.randn(2 * batch, 3, local_side, local_side, device=device)
    center = torch.zeros(1, out_dim, device=device)

    def embed(net, x):
        return net["head"](net["vit"].forward_head(net["vit"].forward_features(x), pre_logits=True))

    def step():
        nonlocal center
        student_out = torch.cat([embed(student, globals_), embed(student, locals_)]) / student_temp
        with torch.no_grad():
            teacher_out = embed(teacher, globals_)
        targets = torch.softmax((teacher_out - center) / teacher_temp, dim=-1).chunk(2)
        loss = dino_loss(student_out.chunk(4), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        ema_update(teacher, student, momentum)
        with torch.no_grad():
            center = center * 0.9 + teacher_out.mean(dim=0, keepdim=True) * 0.1
        loss.item()

    return time_iters(step, iters, warmup)


class Ham10000(torch.utils.data.Dataset):
    """The first `count` rows of HAM10000's labels.csv (the images medkd times), decoded with PIL.

    At module level so that DataLoader workers started by spawn or forkserver can unpickle it.
    """

    def __init__(self, root, count, transform):
        with open(os.path.join(root, "labels.csv"), newline="") as handle:
            rows = list(itertools.islice(csv.DictReader(handle), count))
        if len(rows) < count:
            raise RuntimeError(f"{root}/labels.csv lists {len(rows)} images, {count} needed")
        classes = sorted({row["dx"] for row in rows})
        self.items = [
            (os.path.join(root, "images", row["image_id"] + ".jpg"), classes.index(row["dx"])) for row in rows
        ]
        self.transform = transform

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        path, label = self.items[index]
        with Image.open(path) as image:
            return self.transform(image.convert("RGB")), label


def time_loader(name, iters, warmup, root, batch_size, workers):
    side, count = LOADER_WORKLOADS[name]
    # medkd's loader benchmark pipeline: random_resized_crop, hflip 0.5, color_jitter, imagenet.
    transform = transforms.Compose(
        [
            transforms.RandomResizedCrop(side),
            transforms.RandomHorizontalFlip(0.5),
            transforms.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.1, hue=0.0),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    torch.manual_seed(0)  # the shuffles and the workers' augmentation seeds
    loader = torch.utils.data.DataLoader(
        Ham10000(root, count, transform),
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        # Workers start on the first pass (a warm-up) and are kept, as medkd's decode threads.
        persistent_workers=workers > 0,
    )

    def epoch():
        seen = 0
        for images, _ in loader:
            seen += images.shape[0]
        if seen != count:
            raise RuntimeError(f"the loader produced {seen} images, {count} expected")

    return time_iters(epoch, iters, warmup)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=10, help="timed repetitions per workload (median reported)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed repetitions before timing")
    parser.add_argument("--workloads", default=",".join(ALL_WORKLOADS), help="comma-separated names")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads")
    parser.add_argument("--device", default="cpu", help="torch device of the model workloads: cpu or cuda")
    parser.add_argument("--ham10000", help="HAM10000 folder (labels.csv, images/); loader workloads need it")
    parser.add_argument("--loader-batch", type=int, default=32)
    parser.add_argument("--loader-workers", type=int, default=2)
    args = parser.parse_args()

    names = [name.strip() for name in args.workloads.split(",") if name.strip()]
    unknown = [name for name in names if name not in ALL_WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(unknown)}; known: {', '.join(ALL_WORKLOADS)}")
    if args.iters < 1:
        parser.error("--iters must be at least 1")

    # Sizes both the OpenMP and the MKL pools (medkd bench also sets OMP/MKL_NUM_THREADS).
    torch.set_num_threads(args.threads)
    results = {}
    for name in names:
        if name in LOADER_WORKLOADS and args.ham10000 is None:
            log(f"pytorch: {name} skipped: no --ham10000 folder")
            continue
        log(f"pytorch: {name} ...")
        if name in LOADER_WORKLOADS:
            results[name] = time_loader(
                name, args.iters, args.warmup, args.ham10000, args.loader_batch, args.loader_workers
            )
        elif name in LOSS_WORKLOADS:
            results[name] = time_loss(name, args.iters, args.warmup, args.device)
        elif name in SUBSET_KD_WORKLOADS:
            results[name] = time_subset_kd(name, args.iters, args.warmup, args.device)
        elif name in DINO_WORKLOADS:
            results[name] = time_dino(name, args.iters, args.warmup, args.device)
        else:
            results[name] = time_model(name, args.iters, args.warmup, args.device)
        log(f"pytorch: {name}: {results[name]['median_ms']:.1f} ms (median of {args.iters})")

    report = {
        "torch_version": torch.__version__,
        "torchvision_version": torchvision.__version__,
        "threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "results": results,
    }
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()

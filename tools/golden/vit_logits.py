#!/usr/bin/env python3
"""Golden values for medkd's vision transformers, computed with timm as the independent
implementation (`timm.models.vision_transformer.VisionTransformer`).

Writes crates/medkd-models/tests/golden/vit.json:

* "architectures": for each medkd ViT (vit_{tiny,small}_patch{4,8,16}) at one input size, 1000
  classes: timm's state-dict names and shapes (the Rust tests check medkd expects and writes
  exactly this key set), the parameter count, the conv + linear + attention multiply-accumulates
  per image (linear layers counted per token from forward hooks; the two attention products,
  q·kᵀ and attention·v, as 2 · tokens² · dim per block), and the [tokens, dim] shapes of the four
  feature maps (blocks 2, 5, 8 and the final norm).
* "golden": 7 classes, weights from the formula of tools/golden/torchvision_logits.py (imported
  from it) except cls_token and pos_embed, which take 0.5 · u (the formula's 0.05 for "other"
  tensors would leave the position embeddings nearly invisible), on its formula images:
  eval-mode logits and the CLS embedding after the final norm, in float64, and the last block's
  attention from the CLS token to each patch averaged over the heads ([B, grid_h, grid_w], what
  medkd's gallery draws for a ViT; captured from timm's unfused attention). Cases:
  - "native": vit_tiny_patch4 built for 28 px, run at 28 px;
  - "checkpoint_resampled": the formula weights of vit_tiny_patch16 at 224 px (a 14 x 14 grid)
    loaded into a model for 64 px through timm's checkpoint_filter_fn, which resamples pos_embed
    to 4 x 4 (bicubic, antialiased); run at 64 px;
  - "dynamic_size": vit_tiny_patch4 built for 32 px (8 x 8 grid) run on 28 px images with
    dynamic_img_size=True, which resamples pos_embed to 7 x 7 at every forward.

timm's resampling interpolates in float32 even in a float64 model, so the golden values carry
that rounding (the Rust tests' tolerance allows for it).

Run from the repository root: .venv/bin/python tools/golden/vit_logits.py
"""

import json
import math
import pathlib
import sys

import timm
import torch
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from torchvision_logits import formula_input, formula_tensor, splitmix_uniform  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates" / "medkd-models" / "tests" / "golden" / "vit.json"
SIZES = {"tiny": dict(embed_dim=192, depth=12, num_heads=3), "small": dict(embed_dim=384, depth=12, num_heads=6)}
ARCHITECTURES = [("tiny", 4, 28), ("tiny", 8, 64), ("tiny", 16, 224), ("small", 4, 32), ("small", 8, 64), ("small", 16, 96)]
GOLDEN_CLASSES = 7
MAP_BLOCKS = [2, 5, 8]


def build(size: str, patch: int, img_size: int, num_classes: int = 1000, dynamic: bool = False) -> VisionTransformer:
    return VisionTransformer(
        img_size=img_size, patch_size=patch, num_classes=num_classes, dynamic_img_size=dynamic, **SIZES[size]
    ).eval()


def vit_formula(name: str, shape: tuple, k: int) -> torch.Tensor:
    if name in ("cls_token", "pos_embed"):
        return torch.from_numpy((0.5 * splitmix_uniform(k, math.prod(shape))).astype("float32").reshape(shape))
    return formula_tensor(name, shape, k)


def state_dict_list(model: torch.nn.Module) -> list:
    return [[name, list(t.shape)] for name, t in model.state_dict().items()]


def formula_state(entries: list) -> dict:
    return {name: vit_formula(name, tuple(shape), k) for k, (name, shape) in enumerate(entries)}


def macs_and_maps(model: VisionTransformer, size: int):
    macs, maps = [], []

    def count(module, inputs, output):
        if isinstance(module, torch.nn.Conv2d):
            macs.append(output[0].numel() * module.in_channels // module.groups * math.prod(module.kernel_size))
        elif isinstance(module, torch.nn.Linear):
            rows = output.numel() // output.shape[0] // module.out_features
            macs.append(rows * module.in_features * module.out_features)

    def attention(module, inputs, output):
        _, tokens, dim = inputs[0].shape
        macs.append(2 * tokens * tokens * dim)

    for m in model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            m.register_forward_hook(count)
    for block in model.blocks:
        block.attn.register_forward_hook(attention)
    for m in [model.blocks[i] for i in MAP_BLOCKS] + [model.norm]:
        m.register_forward_hook(lambda _m, _i, out: maps.append(list(out.shape[1:])))
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    return sum(macs), maps


def architecture_entry(size: str, patch: int, img_size: int) -> dict:
    model = build(size, patch, img_size)
    params = sum(p.numel() for p in model.parameters())
    macs, maps = macs_and_maps(build(size, patch, img_size), img_size)
    return {
        "arch": f"vit_{size}_patch{patch}",
        "input": img_size,
        "state_dict": state_dict_list(model),
        "params": params,
        "macs": macs,
        "maps": maps,
    }


def logits_pooled_attention(model: VisionTransformer, x: torch.Tensor):
    captured = {}
    hooks = [model.head.register_forward_pre_hook(lambda _m, args: captured.setdefault("pooled", args[0]))]
    last = model.blocks[-1].attn
    last.fused_attn = False  # so the softmaxed weights pass through attn_drop, where the hook reads them
    hooks.append(last.attn_drop.register_forward_pre_hook(lambda _m, args: captured.setdefault("attention", args[0])))
    with torch.no_grad():
        logits = model(x)
    for hook in hooks:
        hook.remove()
    grid = model.patch_embed.dynamic_feat_size(x.shape[2:]) if model.dynamic_img_size else model.patch_embed.grid_size
    cls_attention = captured["attention"][:, :, 0, 1:].mean(1).reshape(x.shape[0], *grid)
    return logits, captured["pooled"], cls_attention


def golden_case(name: str, size: str, patch: int, weights_size: int, model_size: int, input_size: int, dynamic: bool) -> dict:
    source = build(size, patch, weights_size, GOLDEN_CLASSES)
    entries = state_dict_list(source)
    state = formula_state(entries)
    model = build(size, patch, model_size, GOLDEN_CLASSES, dynamic)
    model.load_state_dict(checkpoint_filter_fn(dict(state), model))
    model = model.double()
    x = formula_input(2, input_size).double()
    logits, pooled, cls_attention = logits_pooled_attention(model, x)
    return {
        "name": name,
        "arch": f"vit_{size}_patch{patch}",
        "num_classes": GOLDEN_CLASSES,
        "weights_image_size": weights_size,
        "model_image_size": model_size,
        "input_shape": list(x.shape),
        "state_dict": entries,
        "logits": logits.tolist(),
        "pooled": pooled.tolist(),
        "cls_attention": cls_attention.tolist(),
    }


def main():
    torch.manual_seed(0)
    out = {
        "timm": timm.__version__,
        "torch": torch.__version__,
        "architectures": [architecture_entry(*a) for a in ARCHITECTURES],
        "golden": [
            golden_case("native", "tiny", 4, 28, 28, 28, False),
            golden_case("checkpoint_resampled", "tiny", 16, 224, 64, 64, False),
            golden_case("dynamic_size", "tiny", 4, 32, 32, 28, True),
        ],
    }
    OUT.write_text(json.dumps(out) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()

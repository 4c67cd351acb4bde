#!/usr/bin/env python3
"""Golden Grad-CAM maps for medkd-models, computed by PyTorch autograd: hooks keep the last
stage's output A (ResNet-18 layer4, MobileNetV2 features.18) and its gradient for one class's
logit; the map is ReLU(sum_k alpha_k A_k) with alpha_k the spatial mean of dlogit/dA_k
(Selvaraju et al., 2017), before any upsampling or normalization.

The networks carry the formula weights of tools/golden/torchvision_logits.py (7 classes; no
weights are committed), in eval mode and float64, on formula images of 3x128x128 (4x4 maps).
Image 0 is explained for class 3, image 1 for class 5. Writes
crates/medkd-models/tests/golden/grad_cam.json.

Run from the repository root: .venv/bin/python tools/golden/grad_cam_golden.py
"""

import json
import pathlib
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from torchvision_logits import CONSTRUCTORS, GOLDEN_CLASSES, formula_input, formula_tensor, state_dict_list  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates" / "medkd-models" / "tests" / "golden" / "grad_cam.json"
CLASSES = [3, 5]


def grad_cam(arch: str) -> dict:
    model = CONSTRUCTORS[arch](num_classes=GOLDEN_CLASSES).eval()
    entries = state_dict_list(model)
    state = model.state_dict()
    state.update({name: formula_tensor(name, tuple(shape), k) for k, (name, shape) in enumerate(entries)})
    model.load_state_dict(state)
    model = model.double()
    layer = model.layer4 if arch.startswith("resnet") else model.features[18]
    kept = {}

    def keep(_module, _inputs, output):
        kept["A"] = output
        output.register_hook(lambda grad: kept.update(G=grad))

    layer.register_forward_hook(keep)
    x = formula_input(2, 128).double()
    logits = model(x)
    logits[torch.arange(2), torch.tensor(CLASSES)].sum().backward()
    alpha = kept["G"].mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((alpha * kept["A"]).sum(dim=1))
    return {"classes": CLASSES, "input_size": 128, "cam": cam.detach().tolist()}


def main():
    OUT.write_text(json.dumps({"torch": torch.__version__, **{arch: grad_cam(arch) for arch in ["resnet18", "mobilenetv2"]}}) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()

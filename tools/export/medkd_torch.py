"""Rebuild a `medkd export --format torchvision` model in PyTorch from its model.json.

    from medkd_torch import load
    model, description = load("runs/demo/export")      # eval mode, weights loaded strictly
    probabilities = predict(model, description, images)  # images: [N, C, H, W] floats in [0, 1]

torchvision builds ResNet-18/34/50, MobileNetV2 and DenseNet-121; EfficientNet-Lite comes from
the `efficientnet_lite_pytorch` package (the checkpoints' own code). `small_input` runs get
medkd's small-image stem: no stride before the first stage.
"""

import json
import pathlib

import torch
import torchvision
from safetensors.torch import load_file

TORCHVISION = {
    "resnet18": torchvision.models.resnet18,
    "resnet34": torchvision.models.resnet34,
    "resnet50": torchvision.models.resnet50,
    "mobilenetv2": torchvision.models.mobilenet_v2,
    "densenet121": torchvision.models.densenet121,
}


def build(arch: str, num_classes: int, in_channels: int, small_input: bool) -> torch.nn.Module:
    if arch.startswith("efficientnet_lite"):
        from efficientnet_lite_pytorch import EfficientNet

        name = arch.replace("_", "-")
        model = EfficientNet.from_name(name, in_channels=in_channels, num_classes=num_classes, image_size=None)
        if small_input:
            model._conv_stem.stride = (1, 1)
            model._blocks[1]._depthwise_conv.stride = (1, 1)
        return model
    model = TORCHVISION[arch](num_classes=num_classes)
    if arch.startswith("resnet"):
        kernel, stride, padding = (3, 1, 1) if small_input else (7, 2, 3)
        model.conv1 = torch.nn.Conv2d(in_channels, 64, kernel, stride, padding, bias=False)
        if small_input:
            model.maxpool = torch.nn.Identity()
    elif arch == "mobilenetv2":
        model.features[0][0] = torch.nn.Conv2d(in_channels, 32, 3, 1 if small_input else 2, 1, bias=False)
        if small_input:
            model.features[2].conv[1][0].stride = (1, 1)
    else:
        kernel, stride, padding = (3, 1, 1) if small_input else (7, 2, 3)
        model.features.conv0 = torch.nn.Conv2d(in_channels, 64, kernel, stride, padding, bias=False)
        if small_input:
            model.features.pool0 = torch.nn.Identity()
    return model


def load(export_dir) -> tuple:
    export_dir = pathlib.Path(export_dir)
    description = json.loads((export_dir / "model.json").read_text())
    if description["format"] != "torchvision":
        raise ValueError(f"{export_dir}: a {description['format']} export, not a torchvision one")
    channels = description["input"]["shape"][0]
    model = build(description["arch"], description["num_classes"], channels, description["small_input"])
    model.load_state_dict(load_file(export_dir / description["file"]), strict=True)
    return model.eval(), description


@torch.no_grad()
def predict(model: torch.nn.Module, description: dict, images: torch.Tensor) -> torch.Tensor:
    """Probabilities as `medkd predict` writes them, for images in [0, 1] after the eval transforms."""
    shape = [1, -1, 1, 1]
    mean = torch.tensor(description["normalization"]["mean"]).view(shape).to(images.dtype)
    # medkd multiplies by the float32 reciprocal: the same inputs, bit for bit.
    inv_std = torch.tensor(description["normalization"]["std"]).reciprocal().view(shape).to(images.dtype)
    logits = model((images - mean) * inv_std)
    if description["task"] == "multilabel":
        return torch.sigmoid(logits)
    return torch.softmax(logits / (description["temperature"] or 1.0), dim=1)

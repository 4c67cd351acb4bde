"""Writes the first N images of a `medkd export --inputs` file as PNG (8-bit, exactly the
pixels: the inputs are pixel / 255) and a JSON list of their paths, for check_page.js.

    python write_check_images.py INPUTS.safetensors OUT_DIR [N]
"""

import json
import pathlib
import sys

import numpy as np
from PIL import Image
from safetensors import safe_open

inputs, out = sys.argv[1], pathlib.Path(sys.argv[2])
count = int(sys.argv[3]) if len(sys.argv) > 3 else 32
with safe_open(inputs, "np") as f:
    images = f.get_tensor("images")[:count]
(out / "check").mkdir(parents=True, exist_ok=True)
files = []
for i, image in enumerate(images):
    pixels = np.rint(image * 255).astype(np.uint8)
    if not np.allclose(pixels / 255, image, atol=1e-6):
        sys.exit(f"image {i} is not 8-bit pixels / 255 (a transform interpolated it): the page check needs exact pixels")
    mode_image = Image.fromarray(pixels[0], "L") if pixels.shape[0] == 1 else Image.fromarray(pixels.transpose(1, 2, 0), "RGB")
    name = f"check/image_{i:03d}.png"
    mode_image.save(out / name)
    files.append(name)
(out / "check" / "list.json").write_text(json.dumps(files))
print(f"{len(files)} images in {out / 'check'}")

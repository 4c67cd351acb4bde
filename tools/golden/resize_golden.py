#!/usr/bin/env python3
"""Golden values for medkd-data's `resize` transform, computed with Pillow's antialiased bilinear
filter (the one torchvision's `Resize` uses on PIL images).

Run from the repository root:

    .venv/bin/python tools/golden/resize_golden.py

It rewrites crates/medkd-data/tests/golden/resize.json, which `cargo test -p medkd-data`
(tests/resize_golden.rs) checks medkd's resize against. Each case's input is an 8-bit gray image
given by a formula both sides evaluate (`pixel`); Pillow resizes it in float mode ("F") scaled to
[0, 1], as medkd resizes float planes, so no 8-bit rounding enters either side.
"""

import json
from pathlib import Path

import numpy as np
import PIL
from PIL import Image

OUT = Path(__file__).resolve().parents[2] / "crates/medkd-data/tests/golden/resize.json"

# (input height, input width, output height, output width)
CASES = [
    (13, 17, 5, 7),  # downscale, uneven factors
    (6, 5, 11, 9),  # upscale
    (224, 224, 64, 64),  # HAM10000 image to the 64 px recipes
    (40, 30, 40, 12),  # one axis only
]


def pixel(y, x):
    """The test image's 8-bit value at (y, x): stripes, a gradient and a product term."""
    return (x * 7 + y * 13 + (x * y) % 11) % 256


def main():
    cases = []
    for h, w, oh, ow in CASES:
        ys, xs = np.mgrid[0:h, 0:w]
        values = pixel(ys, xs).astype(np.float32) / np.float32(255.0)
        out = np.asarray(Image.fromarray(values, mode="F").resize((ow, oh), Image.BILINEAR), dtype=np.float32)
        cases.append({"input": [h, w], "output": [oh, ow], "values": [float("%.8g" % v) for v in out.ravel()]})
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"pillow": PIL.__version__, "cases": cases}) + "\n")
    print(f"wrote {OUT} ({len(cases)} cases, Pillow {PIL.__version__})")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Golden values for weakly supervised localization's box from a class activation map:
threshold at a fraction of the map's maximum, largest 4-connected component (scipy.ndimage.label
with its default cross structure), tight box; and the same after upsampling a coarse map to the
input size with torch's bilinear interpolation (align_corners=False), as medkd's CAM boxes do.

Run from the repository root:

    .venv/bin/python tools/golden/cam_box_golden.py

It rewrites crates/medkd-eval/tests/golden/cam_box.json, read by crates/medkd-eval/tests/boxes.rs
(`cam_box` on the maps) and crates/medkd-train/tests/cam_boxes.rs (upsampling, then `cam_box`).
Maps are seeded float32 written as exact float64 values. Ties between equally large components
go to the first in raster order (scipy numbers components in raster order of their first pixel).
Boxes are normalized [x0, y0, x1, y1] with exclusive right and bottom edges."""

import json
from pathlib import Path

import numpy as np
import scipy
import torch
import torch.nn.functional as F
from scipy import ndimage


def cam_box(cam, threshold):
    h, w = cam.shape
    peak = cam.max()
    if not peak > 0:
        return [0.0, 0.0, 1.0, 1.0]
    labels, count = ndimage.label(cam >= np.float32(threshold * float(peak)))
    sizes = np.bincount(labels.ravel())[1:]
    largest = int(np.argmax(sizes)) + 1  # argmax takes the first of equal sizes
    ys, xs = np.nonzero(labels == largest)
    return [xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h]


def main():
    rng = np.random.default_rng(29)
    maps = []
    for h, w, threshold in [(7, 7, 0.2), (7, 7, 0.5), (9, 6, 0.35), (12, 12, 0.6), (5, 8, 0.9)]:
        cam = np.maximum(rng.normal(0.0, 1.0, size=(h, w)), 0.0).astype(np.float32)
        maps.append({"height": h, "width": w, "threshold": threshold, "map": cam.astype(np.float64).ravel().tolist(), "box": cam_box(cam, threshold)})
    # Two equal components: the first in raster order wins. All zeros: the whole image.
    tie = np.zeros((4, 5), np.float32)
    tie[0, 3:] = 1.0
    tie[3, :2] = 1.0
    maps.append({"height": 4, "width": 5, "threshold": 0.5, "map": tie.astype(np.float64).ravel().tolist(), "box": cam_box(tie, 0.5)})
    zero = np.zeros((3, 3), np.float32)
    maps.append({"height": 3, "width": 3, "threshold": 0.2, "map": zero.astype(np.float64).ravel().tolist(), "box": cam_box(zero, 0.2)})

    upsampled = []
    for h, w, size, threshold in [(2, 2, 16, 0.2), (4, 4, 64, 0.2), (4, 4, 64, 0.5), (8, 8, 64, 0.3)]:
        # A smooth blob plus noise, as a CAM looks.
        yy, xx = np.mgrid[0:h, 0:w]
        cy, cx = rng.uniform(0, h - 1), rng.uniform(0, w - 1)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (0.3 * h * w / 4 + 1))
        cam = np.maximum(blob + rng.normal(0.0, 0.15, size=(h, w)), 0.0).astype(np.float32)
        big = F.interpolate(torch.from_numpy(cam)[None, None], size=(size, size), mode="bilinear", align_corners=False)[0, 0].numpy()
        upsampled.append({
            "height": h, "width": w, "size": size, "threshold": threshold,
            "map": cam.astype(np.float64).ravel().tolist(),
            "box": cam_box(big, threshold),
        })
    out = {
        "generator": f"scipy {scipy.__version__} ndimage.label, torch {torch.__version__} F.interpolate(bilinear, align_corners=False)",
        "maps": maps,
        "upsampled": upsampled,
    }
    path = Path("crates/medkd-eval/tests/golden/cam_box.json")
    path.write_text(json.dumps(out) + "\n")
    print(f"wrote {path}: {len(maps)} maps, {len(upsampled)} upsampled maps")
    for case in maps + upsampled:
        print(case["box"])


if __name__ == "__main__":
    main()

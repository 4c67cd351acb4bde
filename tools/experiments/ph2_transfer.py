#!/usr/bin/env python3
"""Does a lesion localizer trained on ISIC 2018 find the lesions of PH2 (200 images from another
clinic and camera)? Each run's best model predicts a box for every PH2 image through
`medkd predict --resize`, and the boxes are scored against PH2's expert boxes (IoU, accuracy at
IoU >= 0.5 and >= 0.75). PH2 images are landscape (about 765x574); the ISIC 2018 images the runs
trained on were centre-cropped to squares by their source, so PH2 is given the same treatment:
the central height x height square, with each box re-expressed in it and clipped to it.

    .venv/bin/python tools/experiments/ph2_transfer.py RUN... --json OUT.json

MEDKD=binary (default target/debug/medkd). Prints a Markdown table (mean ± std over the runs of
each row, a row being a run folder's name without its _s<seed> suffix)."""

import argparse
import csv
import json
import os
import re
import statistics
import subprocess
import tempfile
from pathlib import Path

from PIL import Image

from boxes import iou

PH2 = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "ph2"


def square_crops(folder):
    """PH2's images cropped to their central square in `folder`; the boxes in the crops,
    normalized, by image id."""
    boxes = {}
    with open(PH2 / "labels.csv", newline="") as f:
        for row in csv.DictReader(f):
            image = Image.open(PH2 / "images" / f"{row['image']}.jpg")
            w, h = image.size
            side = min(w, h)
            left, top = (w - side) // 2, (h - side) // 2
            image.crop((left, top, left + side, top + side)).save(folder / f"{row['image']}.png")
            x0, y0, x1, y1 = (float(row[k]) for k in ("bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1"))
            clip = lambda v: min(max(v, 0.0), 1.0)
            boxes[row["image"]] = (clip((x0 - left) / side), clip((y0 - top) / side), clip((x1 - left) / side), clip((y1 - top) / side))
    return boxes


def score(run, folder, truth, medkd):
    out = folder / f"{run.name}.csv"
    images = sorted(str(p) for p in folder.glob("*.png"))
    subprocess.run([medkd, "predict", "--run", str(run), "--resize", "--out", str(out), *images], check=True, capture_output=True)
    with open(out, newline="") as f:
        ious = [iou(tuple(float(r[k]) for k in ("x0", "y0", "x1", "y1")), truth[r["image"]]) for r in csv.DictReader(f)]
    assert len(ious) == len(truth) == 200, (len(ious), len(truth))
    n = len(ious)
    return {"mean_iou": sum(ious) / n, "acc_at_50": sum(v >= 0.5 for v in ious) / n, "acc_at_75": sum(v >= 0.75 for v in ious) / n}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    medkd = os.environ.get("MEDKD", "target/debug/medkd")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        truth = square_crops(folder)
        results = {str(run): score(run, folder, truth, medkd) for run in args.runs}
    rows = {}
    for run, metrics in results.items():
        rows.setdefault(re.sub(r"_s\d+$", "", Path(run).name), []).append(metrics)
    table = ["| row | runs | mean IoU | IoU ≥ 0.5 | IoU ≥ 0.75 |", "|---|---|---|---|---|"]
    for row, runs in rows.items():
        def cell(k):
            mean = statistics.mean(r[k] for r in runs)
            return f"{mean:.3f} ± {statistics.stdev(r[k] for r in runs):.3f}" if len(runs) > 1 else f"{mean:.3f} (1 run)"

        table.append(f"| {row} | {len(runs)} | {cell('mean_iou')} | {cell('acc_at_50')} | {cell('acc_at_75')} |")
    print("\n".join(table))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"images": 200, "runs": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()

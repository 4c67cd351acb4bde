#!/usr/bin/env python3
"""Does a lesion localizer trained on ISIC 2018 find the lesions of PH2 (200 images from another
clinic and camera)? Each run's best model predicts a box for every PH2 image through
`medkd predict --resize`, and the boxes are scored against PH2's expert boxes (IoU, accuracy at
IoU >= 0.5 and >= 0.75). PH2 images are landscape (about 765x574); the ISIC 2018 images the runs
trained on were centre-cropped to squares by their source, so PH2 is given the same treatment:
the central height x height square, with each box re-expressed in it and clipped to it.

    .venv/bin/python tools/experiments/ph2_transfer.py RUN... --json OUT.json [--folds PREFIX]

With --folds PREFIX (a PH2 cross-validation row, e.g. runs/localize/ph2_scratch), a run named
NAME_s<k> scores only the test images of fold k, read from PREFIX_s<k>/split.csv: the zero-shot
models fold by fold, beside the models trained on PH2's other folds (tools/experiments/localize.sh,
step 8). MEDKD=binary (default target/debug/medkd). Prints a Markdown table (mean ± std over the runs of
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


def fold_images(prefix, run):
    """The test images of the fold of `run` (NAME_s<k>) in the cross-validation row `prefix`."""
    k = re.search(r"_s(\d+)$", run.name).group(1)
    with open(f"{prefix}_s{k}/split.csv", newline="") as f:
        return {Path(r["image"]).stem for r in csv.DictReader(f) if r["split"] == "test"}


def score(run, folder, truth, medkd, only=None):
    out = folder / f"{run.name}.csv"
    images = sorted(str(p) for p in folder.glob("*.png") if only is None or p.stem in only)
    subprocess.run([medkd, "predict", "--run", str(run), "--resize", "--out", str(out), *images], check=True, capture_output=True)
    with open(out, newline="") as f:
        ious = [iou(tuple(float(r[k]) for k in ("x0", "y0", "x1", "y1")), truth[r["image"]]) for r in csv.DictReader(f)]
    assert len(ious) == len(images) == (200 if only is None else len(only)), (len(ious), len(images))
    n = len(ious)
    return {"mean_iou": sum(ious) / n, "acc_at_50": sum(v >= 0.5 for v in ious) / n, "acc_at_75": sum(v >= 0.75 for v in ious) / n}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--folds", help="score each run NAME_s<k> on fold k's test images of this cross-validation row")
    args = parser.parse_args()
    medkd = os.environ.get("MEDKD", "target/debug/medkd")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        truth = square_crops(folder)
        only = (lambda run: fold_images(args.folds, run)) if args.folds else (lambda run: None)
        results = {str(run): score(run, folder, truth, medkd, only(run)) for run in args.runs}
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
    images = "fold k's 40 test images for run _s<k>" if args.folds else 200
    args.json.write_text(json.dumps({"images": images, "runs": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()

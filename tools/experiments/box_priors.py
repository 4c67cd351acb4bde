#!/usr/bin/env python3
"""What a localizer must beat: the test IoU of boxes that ignore the image. For a run folder's
split (its split.csv) of a box data set (LABELS_CSV, pixel box columns and the image size), the
mean IoU and accuracy at IoU >= 0.5 on the test split of (a) the whole image and (b) the mean
training box (each coordinate averaged over the training images).

    python3 tools/experiments/box_priors.py LABELS_CSV RUN [--id image] --json OUT.json
"""

import argparse
import csv
import json
from pathlib import Path

from boxes import iou

BOX = ["bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("labels_csv", type=Path)
    parser.add_argument("run", type=Path)
    parser.add_argument("--id", default="image")
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    boxes = {}
    with open(args.labels_csv, newline="") as f:
        for row in csv.DictReader(f):
            w, h = float(row["width"]), float(row["height"])
            boxes[row[args.id]] = [float(row[c]) / s for c, s in zip(BOX, [w, h, w, h])]
    split = {"train": [], "test": []}
    with open(args.run / "split.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["split"] in split:
                split[row["split"]].append(boxes[Path(row["image"]).stem])
    mean_box = [sum(b[i] for b in split["train"]) / len(split["train"]) for i in range(4)]
    out = {"labels": str(args.labels_csv), "split_of": str(args.run), "test_images": len(split["test"]), "mean_train_box": mean_box}
    for name, prior in [("whole_image", [0.0, 0.0, 1.0, 1.0]), ("mean_train_box", mean_box)]:
        ious = [iou(prior, b) for b in split["test"]]
        out[name] = {"mean_iou": sum(ious) / len(ious), "acc_at_50": sum(i >= 0.5 for i in ious) / len(ious)}
        print(f"{name}: mean IoU {out[name]['mean_iou']:.3f}, IoU >= 0.5 {out[name]['acc_at_50']:.3f}")
    args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()

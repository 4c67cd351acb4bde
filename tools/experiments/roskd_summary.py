"""Markdown rows for BENCHMARKS.md from run folders made by tools/experiments/roskd_table.sh.

    python3 tools/experiments/roskd_summary.py runs/roskd_sym40_s0 [runs/roskd_sym40_s1 ...]

With several folders (seeds), each cell is mean ± std (sample std) over them.
"""
import json
import pathlib
import statistics
import sys

STUDENTS = [("noisy labels alone", "noisy_student"), ("single-teacher KD", "single_teacher_kd"),
            ("mean multi-teacher KD", "mean_kd"), ("RoS-KD", "roskd/student")]


def cells(run):
    test = json.loads((run / "summary.json").read_text())["test"]
    row = [test["macro_f1"], test["auc"], test["acc"]]
    for attack in ("fgsm", "pgd"):
        report = json.loads((run / f"attack_{attack}.json").read_text())
        row += [a["acc"] for a in report["adversarial"]]
    return row


def show(values):
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


folders = [pathlib.Path(p) for p in sys.argv[1:]]
print("| student | macro-F1 | AUC | acc | FGSM 2/255 | FGSM 8/255 | PGD-10 2/255 | PGD-10 8/255 |")
print("|---|---|---|---|---|---|---|---|")
for label, name in STUDENTS:
    rows = [cells(folder / name) for folder in folders]
    print(f"| {label} | " + " | ".join(show([r[i] for r in rows]) for i in range(len(rows[0]))) + " |")

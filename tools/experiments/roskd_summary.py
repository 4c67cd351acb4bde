"""Markdown rows for BENCHMARKS.md from run folders made by tools/experiments/roskd_table.sh.

    python3 tools/experiments/roskd_summary.py runs/roskd_sym40_s0 [runs/roskd_sym40_s1 ...]

With several folders (seeds), each cell is mean ± std (sample std) over them; a cell whose
run (or attack report) is missing from a folder is left out of that cell, and the count of
values is shown when it is not every folder. A second table gives the teachers' clean test
metrics: the single teacher, then RoS-KD's subset teachers.
"""
import json
import pathlib
import statistics
import sys

STUDENTS = [("noisy labels alone", "noisy_student"), ("single-teacher KD", "single_teacher_kd"),
            ("mean multi-teacher KD", "mean_kd"), ("RoS-KD", "roskd/student")]


def cells(run):
    """Test macro-F1, AUC, accuracy, then accuracy per attack and eps (None where missing)."""
    summary = run / "summary.json"
    test = json.loads(summary.read_text())["test"] if summary.is_file() else {}
    row = [test.get("macro_f1"), test.get("auc"), test.get("acc")]
    for attack in ("fgsm", "pgd"):
        path = run / f"attack_{attack}.json"
        row += [a["acc"] for a in json.loads(path.read_text())["adversarial"]] if path.is_file() else [None, None]
    return row


def show(values, folders):
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    count = "" if len(values) == folders else f" (n={len(values)})"
    if len(values) == 1:
        return f"{values[0]:.3f}{count}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}{count}"


folders = [pathlib.Path(p) for p in sys.argv[1:]]
teachers = [("single teacher (all noisy labels)", "single_teacher")] + [
    (f"RoS-KD teacher {path.name}", f"roskd/teachers/{path.name}") for path in sorted((folders[0] / "roskd" / "teachers").glob("*"))]
print("| student | macro-F1 | AUC | acc | FGSM 2/255 | FGSM 8/255 | PGD-10 2/255 | PGD-10 8/255 |")
print("|---|---|---|---|---|---|---|---|")
for label, name in STUDENTS:
    rows = [cells(folder / name) for folder in folders]
    print(f"| {label} | " + " | ".join(show([r[i] for r in rows], len(folders)) for i in range(len(rows[0]))) + " |")

print()
print("| teacher | macro-F1 | AUC | acc |")
print("|---|---|---|---|")
for label, name in teachers:
    rows = [cells(folder / name)[:3] for folder in folders]
    print(f"| {label} | " + " | ".join(show([r[i] for r in rows], len(folders)) for i in range(3)) + " |")

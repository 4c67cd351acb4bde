"""The SSD-KD table of issue #3 on HAM10000 (configs/ham10000/): the ResNet-50 teacher, MobileNetV2
alone, + Hinton KD, + D-KD, + SSD-KD on each seed (teacher k distils into the students of seed k),
and SSD-KD with each loss term removed in turn on the first seed. Finished runs are kept and
started ones resumed, so the command can be repeated until the table is complete; then it prints
the Markdown rows for BENCHMARKS.md (mean ± sample std over seeds).

    python3 tools/experiments/ssdkd_table.py OUT [--seeds 0,1,2] [--medkd target/debug/medkd] [--set key=value]...

--set overrides reach every run (e.g. --set train.epochs=10 for a shorter schedule).
"""
import argparse
import json
import pathlib
import statistics
import subprocess
import tomllib

CONFIGS = pathlib.Path("configs/ham10000")


def toml_inline(value):
    """A TOML inline value for --set (the loss tables hold strings, numbers and booleans)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_inline(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_inline(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML form for {value!r}")


def run(args, out, command, config, extra=()):
    """Trains or distils into OUT unless it holds a finished run; resumes a started one."""
    if (out / "summary.json").is_file():
        return
    if (out / "config.toml").is_file():
        cmd = [args.medkd, command, "--quiet", "--resume", str(out)]
    else:
        sets = [s for kv in args.set + list(extra) for s in ("--set", kv)]
        cmd = [args.medkd, command, "--quiet", "--config", str(config), *sets, "--out", str(out)]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=pathlib.Path)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--medkd", default="target/debug/medkd")
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    ssdkd_terms = tomllib.loads((CONFIGS / "ssdkd.toml").read_text())["loss"]

    rows = {}  # row label -> run folders
    for seed in seeds:
        teacher = args.out / f"teacher_resnet50_s{seed}"
        run(args, teacher, "train", CONFIGS / "teacher_resnet50.toml", [f"seed={seed}"])
        student = args.out / f"mobilenetv2_s{seed}"
        run(args, student, "train", CONFIGS / "student_mobilenetv2.toml", [f"seed={seed}"])
        rows.setdefault("ResNet-50 teacher", []).append(teacher)
        rows.setdefault("MobileNetV2 alone", []).append(student)
        distil = [f"seed={seed}", f'teacher=[{{ run = "{teacher}" }}]']
        for label, name in [("+ Hinton KD", "kd"), ("+ D-KD", "dkd"), ("+ SSD-KD", "ssdkd")]:
            folder = args.out / f"{name}_s{seed}"
            run(args, folder, "distill", CONFIGS / f"{name}.toml", distil)
            rows.setdefault(label, []).append(folder)
        if seed == seeds[0]:
            for index, term in enumerate(ssdkd_terms):
                kept = [t for i, t in enumerate(ssdkd_terms) if i != index]
                folder = args.out / f"ssdkd_without_{term['kind']}_s{seed}"
                run(args, folder, "distill", CONFIGS / "ssdkd.toml", distil + [f"loss={toml_inline(kept)}"])
                rows[f"SSD-KD without {term['kind']}"] = [folder]

    def cell(folders, read):
        values = [read(json.loads((f / "summary.json").read_text())) for f in folders]
        if len(values) == 1:
            return f"{values[0]:.3f}"
        return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"

    print("| model | runs | test acc | balanced acc | macro AUC | params (M) | MFLOPs |")
    print("|---|---|---|---|---|---|---|")
    for label, folders in rows.items():
        summary = json.loads((folders[0] / "summary.json").read_text())
        print(f"| {label} | {len(folders)} | {cell(folders, lambda s: s['test']['acc'])} "
              f"| {cell(folders, lambda s: s['test']['balanced_acc'])} | {cell(folders, lambda s: s['test']['auc'])} "
              f"| {summary['params'] / 1e6:.2f} | {2 * summary['macs'] / 1e6:.0f} |")


if __name__ == "__main__":
    main()

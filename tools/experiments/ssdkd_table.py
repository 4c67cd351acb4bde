"""The SSD-KD table of issue #3 on HAM10000 (configs/ham10000/): the ResNet-50 teacher, MobileNetV2
alone, + Hinton KD, + D-KD, + SSD-KD on each seed (teacher k distils into the students of seed k),
and SSD-KD with each loss term removed in turn on the first seed (after the main rows; they are
independent of each other, so --jobs N runs N of them at a time). Finished runs are kept and
started ones resumed, so the command can be repeated until the table is complete; then it prints
the Markdown rows for BENCHMARKS.md (mean ± sample std over seeds).

    python3 tools/experiments/ssdkd_table.py OUT [--seeds 0,1,2] [--medkd target/debug/medkd] [--jobs 1] [--set key=value]... [--report]

--set overrides reach every run (e.g. --set train.epochs=10 for a shorter schedule).
"""
import argparse
import concurrent.futures
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


def plan(args, seeds, ssdkd_terms):
    """The main rows of all seeds, then the ablations, each a list of (row label, run folder,
    command, config, --set overrides): a partial campaign yields whole rows first."""
    runs = []
    for seed in seeds:
        teacher = args.out / f"teacher_resnet50_s{seed}"
        distil = [f"seed={seed}", f'teacher=[{{ run = "{teacher}" }}]']
        runs.append(("ResNet-50 teacher", teacher, "train", CONFIGS / "teacher_resnet50.toml", [f"seed={seed}"]))
        runs.append(("MobileNetV2 alone", args.out / f"mobilenetv2_s{seed}", "train",
                     CONFIGS / "student_mobilenetv2.toml", [f"seed={seed}"]))
        for label, name in [("+ Hinton KD", "kd"), ("+ D-KD", "dkd"), ("+ SSD-KD", "ssdkd")]:
            runs.append((label, args.out / f"{name}_s{seed}", "distill", CONFIGS / f"{name}.toml", distil))
    seed = seeds[0]
    distil = [f"seed={seed}", f'teacher=[{{ run = "{args.out / f"teacher_resnet50_s{seed}"}" }}]']
    # The ablations share the SSD-KD run's stage-1 teacher head: the same teacher, data and seed
    # would train the same one, for 10 minutes a run on 2 CPU cores.
    head = str(args.out / f"ssdkd_s{seed}" / "checkpoints" / "teacher_head_0.bpk")
    shared = [dict(t, head=head) if t["kind"] == "sskd" else t for t in ssdkd_terms]
    ablations = []
    for index, term in enumerate(shared):
        kept = [t for i, t in enumerate(shared) if i != index]
        ablations.append((f"SSD-KD without {term['kind']}", args.out / f"ssdkd_without_{term['kind']}_s{seed}",
                     "distill", CONFIGS / "ssdkd.toml", distil + [f"loss={toml_inline(kept)}"]))
    return runs, ablations


def report(runs):
    """Markdown rows over the finished runs (mean ± sample std where a row has several), then
    the same runs seed by seed."""
    rows = {}
    for label, folder, *_ in runs:
        if (folder / "summary.json").is_file():
            rows.setdefault(label, []).append(json.loads((folder / "summary.json").read_text()))

    def cell(summaries, key):
        values = [s["test"][key] for s in summaries]
        if len(values) == 1:
            return f"{values[0]:.3f}"
        return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"

    print("| model | runs | test acc | balanced acc | macro AUC | params (M) | MFLOPs |")
    print("|---|---|---|---|---|---|---|")
    for label, summaries in rows.items():
        first = summaries[0]
        print(f"| {label} | {len(summaries)} | {cell(summaries, 'acc')} | {cell(summaries, 'balanced_acc')} "
              f"| {cell(summaries, 'auc')} | {first['params'] / 1e6:.2f} | {2 * first['macs'] / 1e6:.0f} |")

    # Each seed's figures, so an ablation (seed 0) reads against its own SSD-KD run.
    seeds = sorted({s["seed"] for summaries in rows.values() for s in summaries})
    print()
    print("| model | " + " | ".join(f"seed {seed}: acc / bal acc / AUC" for seed in seeds) + " |")
    print("|---|" + "---|" * len(seeds))
    for label, summaries in rows.items():
        by_seed = {s["seed"]: s["test"] for s in summaries}
        cells = [f"{t['acc']:.3f} / {t['balanced_acc']:.3f} / {t['auc']:.3f}" if (t := by_seed.get(seed)) else ""
                 for seed in seeds]
        print(f"| {label} | " + " | ".join(cells) + " |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=pathlib.Path)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--medkd", default="target/debug/medkd")
    parser.add_argument("--jobs", type=int, default=1, help="ablation runs at a time")
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--report", action="store_true", help="print the rows of the finished runs, run nothing")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    ssdkd_terms = tomllib.loads((CONFIGS / "ssdkd.toml").read_text())["loss"]
    if args.jobs < 1:
        parser.error(f"--jobs must be 1 or more, got {args.jobs}")
    main_rows, ablations = plan(args, seeds, ssdkd_terms)
    if not args.report:
        for _, folder, command, config, extra in main_rows:
            run(args, folder, command, config, extra)
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            # list() re-raises the first failed run's error.
            list(pool.map(lambda r: run(args, *r[1:]), ablations))
    report(main_rows + ablations)


if __name__ == "__main__":
    main()

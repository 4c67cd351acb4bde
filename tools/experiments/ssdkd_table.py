"""The SSD-KD table of issue #3 on HAM10000 (configs/ham10000/): the ResNet-50 teacher, MobileNetV2
alone, + Hinton KD, + D-KD, + SSD-KD on each seed (teacher k distils into the students of seed k),
and SSD-KD with each loss term removed in turn on the first seed (after the main rows; they are
independent of each other, so --jobs N runs N of them at a time). Started runs are resumed, so the
command can be repeated until the table is complete; then it prints the Markdown rows for
BENCHMARKS.md (mean ± sample std over seeds).

A finished run's small files (config, metrics log, summary; no weights) are copied to
RESULTS/<run> (default results/ssdkd_table), which is committed: run folders are not sure
to outlive a session's machine. A kept run is not run again, and the report is printed from
RESULTS. A teacher that runs still to come distil from, kept but without its weights here, is
trained again into OUT; with the same binary it comes out the same, and if its test metrics
differ from the kept ones the campaign stops rather than mix the two.

    python3 tools/experiments/ssdkd_table.py OUT [--seeds 0,1,2] [--medkd target/debug/medkd] [--jobs 1] [--results DIR] [--set key=value]... [--main-rows-only] [--only RUN,...] [--pretrained] [--report]

--pretrained (issue #33) runs the main rows from ImageNet weights instead: an EfficientNet-Lite2
teacher and EfficientNet-Lite0 students (`medkd weights download efficientnet_lite2` and
`efficientnet_lite0` first), kept in results/ssdkd_pretrained.

--set overrides reach every run (e.g. --set train.epochs=10 for a shorter schedule).
--main-rows-only stops after the main rows, so a second process can run other seeds' main rows
beside one that goes on to the ablations (which take the first of its --seeds).
--only runs just the named runs (folder names, e.g. ssdkd_without_sskd_s0), so a second process
can take an ablation that needs no teacher head while the first trains the SSD-KD run's head.
Processes may share OUT: each run holds a lock beside its folder while it trains, a run locked
by another process is skipped, and a teacher being trained elsewhere is waited for.
"""
import argparse
import concurrent.futures
import contextlib
import fcntl
import json
import pathlib
import statistics
import subprocess
import sys
import tomllib
import typing

from keep_run import keep

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


class Run(typing.NamedTuple):
    """One run of the table: its row, folder, medkd command, config and --set overrides, and the
    teacher run it distils from."""
    label: str
    folder: pathlib.Path
    command: str
    config: pathlib.Path
    extra: list
    teacher: "Run | None" = None


def run(args, r):
    """Trains or distils R into its folder and keeps the finished run, unless it is kept already
    or another process is on it; resumes a started one."""
    if kept(args, r):
        return
    with locked(r.folder, wait=False) as mine:
        if not mine:
            print(f"{r.folder}: another process is running it, skipped", flush=True)
            return
        if r.teacher is not None:
            restore_teacher(args, r.teacher)
        train(args, r)
        keep(r.folder, args.results / r.folder.name)


@contextlib.contextmanager
def locked(folder, wait):
    """Yields whether this process holds FOLDER's lock (after waiting for it if WAIT). flock
    rather than a marker file: the lock goes with the process, so a killed run leaves none."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True


def kept(args, r):
    return (args.results / r.folder.name / "summary.json").is_file()


def train(args, r):
    """Runs medkd into R's folder unless it holds a finished run; resumes a started one."""
    if (r.folder / "summary.json").is_file():
        return
    if (r.folder / "config.toml").is_file():
        cmd = [args.medkd, r.command, "--quiet", "--resume", str(r.folder)]
    else:
        sets = [s for kv in args.set + r.extra for s in ("--set", kv)]
        cmd = [args.medkd, r.command, "--quiet", "--config", str(r.config), *sets, "--out", str(r.folder)]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def restore_teacher(args, teacher):
    """Trains a kept teacher again into its folder for a run that distils from it, and stops the
    campaign if it does not come out as the kept one did. Waits while another process trains it."""
    with locked(teacher.folder, wait=True):
        if not (teacher.folder / "checkpoints" / "best.safetensors").is_file():
            train(args, teacher)
            check_restored(args, teacher)


def check_restored(args, teacher):
    before = json.loads((args.results / teacher.folder.name / "summary.json").read_text())
    again = json.loads((teacher.folder / "summary.json").read_text())
    if before["test"] != again["test"]:
        sys.exit(f"{teacher.folder}: trained again, its test metrics differ from the kept run's in "
                 f"{args.results / teacher.folder.name} (binary {commit(again)} on {cpu_kind(again)} against "
                 f"{commit(before)} on {cpu_kind(before)}); a run repeats only with the same code on the same CPU kind, so run "
                 "the campaign where both match the kept run's, or into another --results folder from scratch")


def commit(summary):
    return summary.get("medkd", {}).get("commit")


def cpu_kind(summary):
    """The CPU a run trained on, as its summary records it (binaries before 2026-12-03 did not)."""
    machine = summary.get("medkd", {}).get("machine")
    if machine is None:
        return "an unrecorded CPU"
    return f"{machine['cpu_model']} family {machine['cpu_family']} model {machine['cpu_model_number']} ({machine['simd']})"


def imagenet(arch):
    """--set overrides for ARCH from ImageNet weights under a new head, the backbone at 0.3 of the
    head's rate (configs/ham10000/efficientnet_lite0_pretrained.toml's recipe)."""
    return [f'model={{ arch = "{arch}", pretrained = "imagenet", pretrained_skip = ["_fc."] }}',
            "train.finetune={ backbone_lr_scale = 0.3 }"]


# Label, folder name and --set overrides of the teacher and of the student alone, by --pretrained.
NETWORKS = {
    False: (("ResNet-50 teacher", "teacher_resnet50", []), ("MobileNetV2 alone", "mobilenetv2", [])),
    True: (("EfficientNet-Lite2 teacher", "teacher_efficientnet_lite2", imagenet("efficientnet_lite2")),
           ("EfficientNet-Lite0 alone", "efficientnet_lite0", imagenet("efficientnet_lite0"))),
}


def main_rows(args, seeds):
    """The main rows of every seed: a partial campaign yields whole rows first. With --pretrained
    D-KD comes after every seed's other rows (it is the row the table needs least)."""
    (teacher_label, teacher_name, teacher_sets), (student_label, student_name, student_sets) = NETWORKS[args.pretrained]
    runs, later = [], []
    for seed in seeds:
        teacher = Run(teacher_label, args.out / f"{teacher_name}_s{seed}", "train",
                      CONFIGS / "teacher_resnet50.toml", [f"seed={seed}", *teacher_sets])
        distil = [f"seed={seed}", f'teacher=[{{ run = "{teacher.folder}" }}]', *student_sets]
        runs.append(teacher)
        runs.append(Run(student_label, args.out / f"{student_name}_s{seed}", "train",
                        CONFIGS / "student_mobilenetv2.toml", [f"seed={seed}", *student_sets]))
        for label, name in [("+ Hinton KD", "kd"), ("+ D-KD", "dkd"), ("+ SSD-KD", "ssdkd")]:
            r = Run(label, args.out / f"{name}_s{seed}", "distill", CONFIGS / f"{name}.toml", distil, teacher)
            (later if args.pretrained and name == "dkd" else runs).append(r)
    return runs + later


def ablations(args, seed, ssdkd, ssdkd_terms):
    """SSD-KD without each of its terms in turn, with the seed and teacher of the SSD-KD run SSDKD."""
    folders = [args.out / f"ssdkd_without_{t['kind']}_s{seed}" for t in ssdkd_terms]
    # The ablations share one stage-1 teacher head: the same teacher, data and seed train the same
    # head, 10 to 22 minutes a run on 2 CPU cores. The SSD-KD run's where its folder still holds
    # it, else one an ablation trained; without either, an ablation trains its own.
    heads = [f / "checkpoints" / "teacher_head_0.bpk" for f in [ssdkd.folder, *folders]]
    head = next((h for h in heads if h.is_file()), None)
    terms = [dict(t, head=str(head)) if t["kind"] == "sskd" and head else t for t in ssdkd_terms]
    runs = []
    for index, (term, folder) in enumerate(zip(terms, folders)):
        others = [t for i, t in enumerate(terms) if i != index]
        runs.append(ssdkd._replace(label=f"SSD-KD without {term['kind']}", folder=folder,
                                   extra=ssdkd.extra + [f"loss={toml_inline(others)}"]))
    return runs


def selected(args, runs):
    """RUNS, or those of them that --only names."""
    return [r for r in runs if args.only is None or r.folder.name in args.only]


def report(args, runs):
    """Markdown rows over the kept runs (mean ± sample std where a row has several), then
    the same runs seed by seed."""
    rows = {}
    for r in runs:
        if kept(args, r):
            rows.setdefault(r.label, []).append(json.loads((args.results / r.folder.name / "summary.json").read_text()))

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
    parser.add_argument("--results", type=pathlib.Path, default=None,
                        help="where finished runs are kept (results/ssdkd_table, with --pretrained results/ssdkd_pretrained)")
    parser.add_argument("--pretrained", action="store_true",
                        help="ImageNet-pretrained EfficientNet-Lite2 teacher and -Lite0 students; main rows only")
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--main-rows-only", action="store_true", help="run no ablations")
    parser.add_argument("--only", type=lambda names: set(names.split(",")), default=None,
                        help="run just these runs (folder names, comma-separated)")
    parser.add_argument("--report", action="store_true", help="print the rows of the kept runs, run nothing")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.results is None:
        args.results = pathlib.Path("results/ssdkd_pretrained" if args.pretrained else "results/ssdkd_table")
    # The ablations are the from-scratch table's; the pretrained one has its main rows.
    args.main_rows_only |= args.pretrained
    ssdkd_terms = tomllib.loads((CONFIGS / "ssdkd.toml").read_text())["loss"]
    if args.jobs < 1:
        parser.error(f"--jobs must be 1 or more, got {args.jobs}")
    rows = main_rows(args, seeds)
    ssdkd = next(r for r in rows if r.label == "+ SSD-KD")
    if args.only is not None:
        known = {r.folder.name for r in rows + ablations(args, seeds[0], ssdkd, ssdkd_terms)}
        if unknown := sorted(args.only - known):
            parser.error(f"--only: no run named {', '.join(unknown)}; the runs are {', '.join(sorted(known))}")
    if not args.report:
        for r in selected(args, rows):
            run(args, r)
    later = [] if args.main_rows_only else ablations(args, seeds[0], ssdkd, ssdkd_terms)
    if not args.report and selected(args, later):
        # Once, before the parallel runs would each train it again into the same folder.
        if not all(kept(args, r) for r in selected(args, later)):
            restore_teacher(args, ssdkd.teacher)
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            # list() re-raises the first failed run's error.
            list(pool.map(lambda r: run(args, r), selected(args, later)))
    report(args, rows + later)


if __name__ == "__main__":
    main()

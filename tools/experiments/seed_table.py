#!/usr/bin/env python3
"""Mean ± sample std (ddof = 1) of the test metrics of finished runs (their summary.json), e.g.
the seeds of one recipe, with each run's values and the CPU and binary that made it.

    python3 tools/experiments/seed_table.py results/demo/breastmnist_s0 results/demo/breastmnist_s1 ...
"""
import json
import pathlib
import statistics
import sys

METRICS = ("auc", "acc", "balanced_acc", "macro_f1", "ece")


def main(folders):
    if not folders:
        sys.exit(__doc__)
    summaries = [json.loads((pathlib.Path(f) / "summary.json").read_text()) for f in folders]
    print(f"{'run':<40}" + "".join(f"{m:>14}" for m in METRICS) + "  binary, CPU")
    for folder, summary in zip(folders, summaries):
        machine = summary["medkd"].get("machine") or {}
        where = f"{summary['medkd'].get('commit')}, {machine.get('cpu_model')} ({machine.get('simd')})"
        print(f"{pathlib.Path(folder).name:<40}" + "".join(f"{summary['test'][m]:>14.3f}" for m in METRICS) + f"  {where}")
    if len(summaries) > 1:
        cells = []
        for m in METRICS:
            values = [s["test"][m] for s in summaries]
            cells.append(f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}")
        print(f"{f'mean ± std ({len(summaries)} runs)':<40}" + "".join(f"{c:>14}" for c in cells))


if __name__ == "__main__":
    main(sys.argv[1:])

"""The results page's export tables from results/export/<model>_s<seed> (export_check.sh and
quantize_check.sh): exactness of each export against medkd predict, and the quantized twins'
size, accuracy and latency, as mean ± std over the seeds kept for each model.

    python3 tools/experiments/export_table.py results/export
"""

import collections
import json
import pathlib
import re
import statistics
import sys


def mean_std(values, digits=3):
    if len(values) == 1:
        return f"{values[0]:.{digits}f} (1 seed)"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def main():
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "results/export")
    models = collections.defaultdict(list)
    for folder in sorted(root.iterdir()):
        match = re.fullmatch(r"(.+)_s(\d+)", folder.name)
        if match and (folder / "check.json").is_file():
            models[match[1]].append(folder)

    print("| model | seeds | images | ONNX (onnxruntime) max abs diff | torchvision (PyTorch) max abs diff | medkd vs float64 | same argmax |")
    print("|---|---|---|---|---|---|---|")
    for model, folders in models.items():
        checks = [json.loads((f / "check.json").read_text()) for f in folders]
        by = lambda kind, key: [r[key] for c in checks for r in c["results"] if r["export"] == kind]
        argmax = sum(by("onnx", "same_argmax")) + sum(by("torchvision", "same_argmax"))
        images = sum(by("onnx", "images")) + sum(by("torchvision", "images"))
        print(f"| {model} | {len(folders)} | {checks[0]['results'][0]['images']} | {max(by('onnx', 'max_abs_diff')):.1e} | "
              f"{max(by('torchvision', 'max_abs_diff')):.1e} | {max(c['medkd_max_abs_diff_float64'] for c in checks):.1e} | {argmax}/{images} |")
    print()
    print("| model | weights | file MB | balanced acc | AUC | ms / image (1 thread) | latency / float32, paired | same argmax as float32 |")
    print("|---|---|---|---|---|---|---|---|")
    for model, folders in models.items():
        runs = [json.loads((f / "quantized.json").read_text()) for f in folders if (f / "quantized.json").is_file()]
        if not runs:
            continue
        for variant in [k for k in runs[0] if isinstance(runs[0][k], dict) and "file_bytes" in runs[0][k]]:
            rows = [r[variant] for r in runs]
            ratio = "" if variant == "float32" else mean_std([r["latency_ratio_to_float32"][variant]["mean"] for r in runs], 2)
            same = sum(r["same_argmax_as_float32"] for r in rows)
            print(f"| {model} | {variant} | {statistics.mean(r['file_bytes'] for r in rows) / 1e6:.1f} | "
                  f"{mean_std([r['balanced_acc'] for r in rows])} | {mean_std([r['auc'] for r in rows])} | "
                  f"{mean_std([r['latency_ms']['mean'] for r in rows], 2)} | {ratio} | {same}/{sum(r_['images'] for r_ in runs)} |")


if __name__ == "__main__":
    main()

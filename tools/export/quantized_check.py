"""A float32 ONNX export against its quantized twins, all in onnxruntime: file size, balanced
accuracy and AUC on the test split, and single-image latency in paired rounds.

    medkd export RUN --format onnx --inputs test --out OUT/float32
    medkd export RUN --format onnx --weights int8 --out OUT/int8
    python tools/export/quantize_static.py OUT/float32 CALIBRATION OUT/static_int8
    python tools/export/quantized_check.py RUN OUT/float32 OUT/int8 OUT/static_int8 [--rounds 7] [--json FILE]

Each twin is named by its folder.
Images and labels come from OUT/float32/inputs_test.safetensors (`medkd export --inputs`). Latency: one image per call on one thread, the two models
alternating within each round (order shuffled per round), each round's median over --calls
calls; reported as the mean ± std over rounds and the paired ratio to float32.

onnxruntime keeps `DequantizeLinear` nodes on weights as they are (to fuse quantized patterns),
so a weights-only int8 export dequantizes every weight on every call; with the session option
`session.disable_quant_qdq = 1` it folds them into float32 weights once, at load. Such an export
is timed both ways, the second as `<name>_folded`.
"""

import argparse
import json
import pathlib
import platform
import random
import statistics
import time

import numpy as np
import onnxruntime
from safetensors import safe_open
from sklearn.metrics import balanced_accuracy_score, roc_auc_score


def scores(probabilities, y):
    predicted = probabilities.argmax(1)
    if probabilities.shape[1] == 2:
        auc = roc_auc_score(y, probabilities[:, 1])
    else:
        # One-vs-rest, averaged over classes (as medkd's macro AUC); sklearn's multi-class form
        # refuses rows that do not sum to 1 within its tolerance.
        auc = np.mean([roc_auc_score(y == c, probabilities[:, c]) for c in range(probabilities.shape[1])])
    return {"balanced_acc": float(balanced_accuracy_score(y, predicted)), "auc": float(auc)}


def session(path, fold):
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    if fold:
        options.add_session_config_entry("session.disable_quant_qdq", "1")
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run")
    parser.add_argument("float32")
    parser.add_argument("quantized", nargs="+")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--json")
    args = parser.parse_args()

    with safe_open(pathlib.Path(args.float32) / "inputs_test.safetensors", "np") as f:
        images, metadata = f.get_tensor("images"), f.metadata()
    ids, y = json.loads(metadata["ids"]), np.array(json.loads(metadata["labels"]))
    summary = json.loads((pathlib.Path(args.run) / "summary.json").read_text())
    models = {}
    variants = [("float32", args.float32, False)]
    for directory in args.quantized:
        name = pathlib.Path(directory).name
        variants.append((name, directory, False))
        if json.loads((pathlib.Path(directory) / "model.json").read_text())["weights"].startswith("int8 per output channel"):
            variants.append((f"{name}_folded", directory, True))
    for name, directory, fold in variants:
        path = pathlib.Path(directory) / "model.onnx"
        s = session(path, fold)
        probabilities = np.concatenate([s.run(["probabilities"], {"image": images[i:i + 64]})[0] for i in range(0, len(images), 64)])
        models[name] = {"session": s, "file_bytes": path.stat().st_size, "probabilities": probabilities, **scores(probabilities, y)}

    rng = random.Random(0)
    latency = {name: [] for name in models}
    for name in models:  # warm-up
        for i in range(10):
            models[name]["session"].run(["probabilities"], {"image": images[i:i + 1]})
    for _ in range(args.rounds):
        order = list(models)
        rng.shuffle(order)
        for name in order:
            times = []
            for call in range(args.calls):
                i = call % len(images)
                start = time.perf_counter()
                models[name]["session"].run(["probabilities"], {"image": images[i:i + 1]})
                times.append(time.perf_counter() - start)
            latency[name].append(1000 * statistics.median(times))
    ratio = {}
    for name in list(models)[1:]:
        ratios = [q / f for q, f in zip(latency[name], latency["float32"])]
        ratio[name] = {"mean": statistics.mean(ratios), "std": statistics.stdev(ratios)}

    result = {
        "run": args.run,
        "machine": platform.processor() or platform.machine(),
        "onnxruntime": onnxruntime.__version__,
        "threads": 1,
        "summary_test": {"balanced_acc": summary["test"]["balanced_acc"], "auc": summary["test"]["auc"]},
        "images": len(ids),
        "latency_ratio_to_float32": ratio,
    }
    for name, model in models.items():
        result[name] = {
            "file_bytes": model["file_bytes"],
            "balanced_acc": model["balanced_acc"],
            "auc": model["auc"],
            "latency_ms": {"mean": statistics.mean(latency[name]), "std": statistics.stdev(latency[name]), "rounds": latency[name]},
            "same_argmax_as_float32": int((model["probabilities"].argmax(1) == models["float32"]["probabilities"].argmax(1)).sum()),
            "max_abs_diff_to_float32": float(np.abs(model["probabilities"] - models["float32"]["probabilities"]).max()),
        }
    for name in models:
        r = result[name]
        print(f"{name:18s} {r['file_bytes'] / 1e6:7.2f} MB  balanced acc {r['balanced_acc']:.4f}  AUC {r['auc']:.4f}  "
              f"{r['latency_ms']['mean']:.3f} ± {r['latency_ms']['std']:.3f} ms/image")
    for name, r in ratio.items():
        print(f"{name} / float32 latency {r['mean']:.3f} ± {r['std']:.3f} (paired rounds); same argmax "
              f"{result[name]['same_argmax_as_float32']}/{len(ids)}, max |p - p32| = {result[name]['max_abs_diff_to_float32']:.2e}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

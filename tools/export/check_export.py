"""Check medkd exports in their own runtimes against `medkd predict`, image for image.

    medkd export RUN --format onnx --inputs test --out OUT/onnx
    medkd export RUN --format torchvision --out OUT/torchvision
    medkd predict --run RUN --split test --out OUT/predict_test.csv
    python tools/export/check_export.py OUT/predict_test.csv OUT/onnx OUT/torchvision [--json OUT/check.json]

The images are OUT/onnx/inputs_test.safetensors (the eval transforms' output in [0, 1], as
`medkd export --inputs` writes it); ONNX models run in onnxruntime, torchvision exports in
PyTorch (rebuilt by medkd_torch.py, weights loaded strictly). Each export must give
`medkd predict`'s probabilities to 1e-5 and the same argmax on every image; the script exits 1
otherwise. With a torchvision export it also runs that model in float64, a reference that
shows how far each float32 computation (medkd's included) is from exact. Needs onnxruntime, torch, torchvision, safetensors (and efficientnet_lite_pytorch
for EfficientNet-Lite).
"""

import argparse
import csv
import json
import pathlib
import platform
import sys

import numpy as np
import torch
from safetensors import safe_open

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import medkd_torch  # noqa: E402

TOLERANCE = 1e-5


def read_inputs(export_dirs):
    for directory in export_dirs:
        for path in sorted(pathlib.Path(directory).glob("inputs_*.safetensors")):
            with safe_open(path, "np") as f:
                return f.get_tensor("images"), json.loads(f.metadata()["ids"]), path
    sys.exit("no inputs_<split>.safetensors in the export folders: run medkd export with --inputs")


def read_predictions(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header, rows = rows[0], rows[1:]
    return [row[0] for row in rows], np.array([[float(v) for v in row[1:]] for row in rows], dtype=np.float64), header[1:]


def run_onnx(directory, images):
    import onnxruntime

    description = json.loads((directory / "model.json").read_text())
    session = onnxruntime.InferenceSession(str(directory / description["file"]), providers=["CPUExecutionProvider"])
    probabilities = session.run(["probabilities"], {"image": images})[0]
    return description, probabilities, f"onnxruntime {onnxruntime.__version__}"


def run_torchvision(directory, images):
    model, description = medkd_torch.load(directory)
    probabilities = medkd_torch.predict(model, description, torch.from_numpy(images)).numpy()
    return description, probabilities, f"torch {torch.__version__}"


def float64_reference(export_dirs, images):
    """The torchvision export's probabilities computed in float64, or None without one."""
    for directory in map(pathlib.Path, export_dirs):
        if json.loads((directory / "model.json").read_text())["format"] == "torchvision":
            model, description = medkd_torch.load(directory)
            return medkd_torch.predict(model.double(), description, torch.from_numpy(images).double()).numpy()
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("predictions", help="medkd predict --split ... CSV")
    parser.add_argument("exports", nargs="+", help="medkd export folders")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()

    ids, expected, class_names = read_predictions(args.predictions)
    images, input_ids, inputs_path = read_inputs(args.exports)
    if input_ids != ids:
        sys.exit(f"{inputs_path} holds other images (or another order) than {args.predictions}")
    results, ok = [], True
    float64 = float64_reference(args.exports, images)
    if float64 is not None:
        medkd_error = float(np.abs(expected - float64).max())
        print(f"{'medkd':12s} {'(float32)':24s} max |p - float64 PyTorch| = {medkd_error:.2e}")
    for directory in map(pathlib.Path, args.exports):
        kind = json.loads((directory / "model.json").read_text())["format"]
        description, probabilities, runtime = (run_onnx if kind == "onnx" else run_torchvision)(directory, images)
        if description["class_names"] != class_names:
            sys.exit(f"{directory}: classes {description['class_names']} differ from the predictions' {class_names}")
        diff = float(np.abs(probabilities.astype(np.float64) - expected).max())
        same_argmax = int((probabilities.argmax(1) == expected.argmax(1)).sum())
        passed = diff <= TOLERANCE and same_argmax == len(ids)
        ok &= passed
        file_bytes = (directory / description["file"]).stat().st_size
        result = {"export": kind, "runtime": runtime, "file_bytes": file_bytes, "images": len(ids),
                  "max_abs_diff": diff, "same_argmax": same_argmax, "passed": passed}
        line = f"{kind:12s} {runtime:24s} {len(ids)} images  max |p - medkd| = {diff:.2e}  same argmax {same_argmax}/{len(ids)}"
        if float64 is not None:
            result["max_abs_diff_float64"] = float(np.abs(probabilities.astype(np.float64) - float64).max())
            line += f"  max |p - float64| = {result['max_abs_diff_float64']:.2e}"
        results.append(result)
        print(f"{line}  {'ok' if passed else 'FAILED'}")
    if args.json:
        figures = {"predictions": args.predictions, "tolerance": TOLERANCE, "machine": platform.processor() or platform.machine(),
                   "results": results}
        if float64 is not None:
            figures["medkd_max_abs_diff_float64"] = medkd_error
        pathlib.Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

"""Static int8 quantization of a `medkd export --format onnx` model with onnxruntime's
quantizer, calibrated on training images: weights int8 per output channel, activations uint8
per tensor from their range over the calibration images (QDQ format, which onnxruntime runs
with int8 kernels). BatchNorm is folded into the convolutions first.

    medkd export RUN --format onnx --out OUT/float32
    medkd export RUN --format onnx --inputs train --inputs-max 256 --out OUT/calibration
    python tools/export/quantize_static.py OUT/float32 OUT/calibration/inputs_train.safetensors OUT/static_int8

Writes OUT/static_int8/model.onnx and its model.json. A calibration file with no image, or with
images of another shape or value range than the model takes, is refused before anything is
written. Needs onnxruntime, onnx, safetensors.
"""

import argparse
import json
import pathlib
import shutil
import sys
import tempfile

import numpy as np
from safetensors import safe_open


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def calibration_images(path, shape):
    path = pathlib.Path(path)
    if not path.is_file():
        fail(f"{path}: no such calibration file (medkd export --inputs train writes one)")
    try:
        with safe_open(path, "np") as f:
            if "images" not in f.keys():
                fail(f"{path}: no `images` tensor; expected the file medkd export --inputs writes")
            images = f.get_tensor("images")
    except Exception as error:  # safetensors raises its own error type for a file it cannot parse
        fail(f"{path}: not a safetensors file ({error})")
    if images.ndim != 4 or images.shape[0] == 0:
        fail(f"{path}: holds no images (shape {list(images.shape)}); a calibration set needs at least one [N, C, H, W] image")
    if list(images.shape[1:]) != list(shape):
        fail(f"{path}: images are {list(images.shape[1:])} ([C, H, W]), the model takes {list(shape)}: "
             "export the calibration set from the same run")
    if images.min() < 0 or images.max() > 1:
        fail(f"{path}: values span [{images.min():.3g}, {images.max():.3g}]; the model takes pixels / 255 in [0, 1]")
    return images.astype(np.float32)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("export", help="a medkd export --format onnx folder (float32 weights)")
    parser.add_argument("calibration", help="inputs_<split>.safetensors from medkd export --inputs")
    parser.add_argument("out")
    args = parser.parse_args()

    export = pathlib.Path(args.export)
    description = json.loads((export / "model.json").read_text())
    if description["format"] != "onnx" or description.get("weights") != "float32":
        fail(f"{export}: quantize a float32 ONNX export (medkd export --format onnx)")
    images = calibration_images(args.calibration, description["input"]["shape"])

    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"image": images[i:i + 1]} for i in range(len(images))])

        def get_next(self):
            return next(self.batches, None)

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = pathlib.Path(tmp) / "prepared.onnx"
        quant_pre_process(str(export / "model.onnx"), str(prepared))
        # The layers and what joins them; the temperature and the softmax stay float32, so the
        # probabilities are not rounded to 1/255 steps.
        ops = ["Conv", "Gemm", "Add", "Concat", "MaxPool", "AveragePool", "GlobalAveragePool"]
        quantize_static(str(prepared), str(out / "model.onnx"), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                        op_types_to_quantize=ops)
    description["weights"] = ("static int8: weights int8 per output channel, activations uint8 per tensor (QDQ), "
                              "BatchNorm folded; onnxruntime's quantizer")
    description["calibration"] = {"images": len(images), "file": str(pathlib.Path(args.calibration).name), "method": "min-max"}
    (out / "model.json").write_text(json.dumps(description, indent=2) + "\n")
    print(f"wrote {out / 'model.onnx'} ({(out / 'model.onnx').stat().st_size / 1e6:.2f} MB), calibrated on {len(images)} images")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""DICOM test files and golden pixels for medkd-data's DICOM reader, from pydicom (3.x).

Writes crates/medkd-data/tests/dicom/:
- real files shipped in pydicom's wheel (MIT; provenance in pydicom's test_files/README.txt):
  CT_small.dcm (signed 16-bit CT, rescale intercept -1024, no window), MR_small.dcm (16-bit MR,
  window 600/1600), SC_rgb_small_odd.dcm (8-bit RGB), and for errors MR_truncated.dcm,
  rtplan.dcm (no pixel data), JPEG2000.dcm (a codec medkd lacks), SC_rgb_rle_2frame.dcm
  (two frames);
- files made here from the first BreastMNIST test image (data/breastmnist.npz, CC BY 4.0):
  breast_mono2.dcm (8-bit MONOCHROME2), breast_mono1.dcm (the image stored inverted as
  MONOCHROME1), breast_rescaled16.dcm (signed 16-bit with rescale slope 0.5, intercept 10 and a
  window 100/300), breast_palette.dcm (PALETTE COLOR, unsupported);
- golden.json: per readable file the expected image: pydicom's pixel_array through
  apply_modality_lut, then apply_voi_lut (the file's window, or `window` when given) or the
  min..max of the image, scaled to [0, 1], inverted for MONOCHROME1, then as uint16
  (round(y * 65535)); 8-bit files without rescale or window as their bytes (uint8). Every
  value of the small images; every 7th value and the sum of the CT.

Run from the repository root: .venv/bin/python tools/golden/dicom_golden.py
"""

import json
import pathlib
import shutil

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "crates" / "medkd-data" / "tests" / "dicom"
SHIPPED = ["CT_small.dcm", "MR_small.dcm", "SC_rgb_small_odd.dcm", "MR_truncated.dcm", "rtplan.dcm", "JPEG2000.dcm", "SC_rgb_rle_2frame.dcm"]


def secondary_capture(pixels, photometric, bits=8, signed=False, extra=None):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[photometric, str(bits)])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 1 if signed else 0
    for key, value in (extra or {}).items():
        setattr(ds, key, value)
    ds.PixelData = pixels.tobytes()
    return ds


def expected(path, window=None):
    ds = pydicom.dcmread(path)
    raw = ds.pixel_array
    rescaled = "RescaleSlope" in ds or "RescaleIntercept" in ds
    if ds.BitsAllocated == 8 and not rescaled and window is None and "WindowCenter" not in ds:
        values = raw.astype(np.uint8)
        if ds.PhotometricInterpretation == "MONOCHROME1":
            values = 255 - values
        return "u8", values
    x = apply_modality_lut(raw, ds).astype(np.float64)
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if "WindowCenter" in ds:
        # apply_voi_lut maps onto the stored sample range (after rescale): scale that to [0, 1].
        y = apply_voi_lut(x, ds).astype(np.float64)
        bits = ds.BitsStored
        lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if ds.PixelRepresentation else (0, 2**bits - 1)
        if rescaled:
            slope, intercept = float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))
            lo, hi = lo * slope + intercept, hi * slope + intercept
        y = (y - lo) / (hi - lo)
    else:
        y = (x - x.min()) / (x.max() - x.min())
    if ds.PhotometricInterpretation == "MONOCHROME1":
        y = 1.0 - y
    return "u16", np.round(y * 65535).astype(np.uint16)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for name in SHIPPED:
        shutil.copy(get_testdata_file(name), OUT / name)
    image = np.load(ROOT / "data" / "breastmnist.npz")["test_images"][0].astype(np.uint8)
    secondary_capture(image, "MONOCHROME2").save_as(OUT / "breast_mono2.dcm", enforce_file_format=True)
    secondary_capture(255 - image, "MONOCHROME1").save_as(OUT / "breast_mono1.dcm", enforce_file_format=True)
    raw16 = image.astype(np.int16) * 4 - 200
    extra = {"RescaleSlope": "0.5", "RescaleIntercept": "10", "WindowCenter": "100", "WindowWidth": "300"}
    secondary_capture(raw16, "MONOCHROME2", bits=16, signed=True, extra=extra).save_as(OUT / "breast_rescaled16.dcm", enforce_file_format=True)
    secondary_capture(image, "PALETTE COLOR").save_as(OUT / "breast_palette.dcm", enforce_file_format=True)

    cases = []
    for name, window in [
        ("CT_small.dcm", None),
        ("MR_small.dcm", None),
        ("MR_small.dcm", [500.0, 1000.0]),
        ("SC_rgb_small_odd.dcm", None),
        ("breast_mono2.dcm", None),
        ("breast_mono1.dcm", None),
        ("breast_rescaled16.dcm", None),
    ]:
        kind, values = expected(OUT / name, window)
        flat = values.reshape(-1).astype(np.int64)
        every = 7 if flat.size > 5000 else 1
        cases.append(
            {
                "file": name,
                "window": window,
                "kind": kind,
                "shape": list(values.shape),
                "every": every,
                "values": flat[::every].tolist(),
                "sum": int(flat.sum()),
            }
        )
    assert np.array_equal(expected(OUT / "breast_mono1.dcm")[1], image)
    (OUT / "golden.json").write_text(json.dumps({"pydicom": pydicom.__version__, "cases": cases}) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()

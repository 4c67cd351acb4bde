#!/usr/bin/env python3
"""Compares two .safetensors files tensor by tensor (name, dtype, shape and raw bytes), ignoring
the header's metadata and key order, which burn's writer emits in hash-map order.

    python3 tools/same_tensors.py A.safetensors B.safetensors

Prints one line per differing tensor and exits 1 if any differ (or the names differ)."""
import json
import struct
import sys


def tensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + size])
    body = data[8 + size :]
    header.pop("__metadata__", None)
    return {
        name: (info["dtype"], tuple(info["shape"]), body[info["data_offsets"][0] : info["data_offsets"][1]])
        for name, info in header.items()
    }


def main():
    a, b = (tensors(p) for p in sys.argv[1:3])
    differ = sorted(set(a) ^ set(b))
    for name in differ:
        print(f"only in one file: {name}")
    for name in sorted(set(a) & set(b)):
        if a[name] != b[name]:
            differ.append(name)
            print(f"differs: {name}")
    print(f"{len(a)} tensors, {len(differ)} differ")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()

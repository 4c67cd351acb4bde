"""Keeps a finished run: copies its JSON, JSON-lines and TOML files (config, metrics log, summary,
reports), none under checkpoints/, from OUT into KEPT, which is committed (results/README.md).
The copy is made in KEPT.partial and renamed, so that a kept run is always a whole one.

    python3 tools/experiments/keep_run.py OUT KEPT
"""
import pathlib
import shutil
import sys


def keep(out, kept):
    partial = kept.with_name(kept.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    for path in sorted(out.rglob("*")):
        relative = path.relative_to(out)
        if path.is_file() and path.suffix in (".json", ".jsonl", ".toml") and "checkpoints" not in relative.parts:
            (partial / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, partial / relative)
    partial.rename(kept)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    keep(pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]))

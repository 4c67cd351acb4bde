#!/usr/bin/env python3
"""Golden p-values for `medkd compare`'s paired t-test: scipy.stats.ttest_rel (two-sided) on
differences of the sizes the results page pairs (3 to 10 seeds). Writes
crates/medkd-report/tests/golden/paired_t.json.

Run from the repository root: .venv/bin/python tools/golden/paired_t_golden.py
"""

import json
import pathlib

import numpy as np
import scipy
from scipy.stats import ttest_rel

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates" / "medkd-report" / "tests" / "golden" / "paired_t.json"


def main():
    rng = np.random.default_rng(0)
    cases = []
    for n, shift in [(3, 0.03), (3, -0.01), (5, 0.02), (10, 0.0), (4, 0.2)]:
        b = rng.uniform(0.3, 0.7, n)
        a = b + shift + rng.normal(0, 0.02, n)
        result = ttest_rel(a, b)
        cases.append({"a": a.tolist(), "b": b.tolist(), "p_value": float(result.pvalue)})
    OUT.write_text(json.dumps({"scipy": scipy.__version__, "cases": cases}, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()

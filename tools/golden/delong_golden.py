#!/usr/bin/env python3
"""Golden values for medkd-eval's DeLong AUC confidence intervals and paired test (src/delong.rs),
computed the textbook way rather than by porting the Rust code.

DeLong, DeLong & Clarke-Pearson (1988): for m positives X and n negatives Y, the placement values
of model r are V10(X_i) = mean_j psi(X_i, Y_j) and V01(Y_j) = mean_i psi(X_i, Y_j), with
psi = 1 / 0.5 / 0 when the positive scores higher / the same / lower, built here from the full
m x n comparison matrix. S10 and S01 are the sample covariance matrices of the placements over the
models (divisors m - 1 and n - 1) and cov(AUC) = S10 / m + S01 / n. The Rust side computes the same
placements from midranks in O(N log N) (Sun & Xu 2014). AUCs are checked against
sklearn.metrics.roc_auc_score; p-values and the 95% quantile come from scipy.stats.norm.

Conventions shared with the Rust code: CI = estimate -/+ z_0.975 * se, clipped to [0, 1] for an
AUC and to [-1, 1] for a difference; z = 0 and p = 1 when the difference is exactly 0 (identical
or both-perfect models, whose variance is 0 too).

Writes crates/medkd-eval/tests/golden/delong.json; tests/delong.rs checks every value to 1e-9
relative. Scores are rounded to float32 first (medkd's input type) and written as the exact float64
value of that float32. Seeded, so rerunning with the same libraries gives the same file.

Run from the repository root: .venv/bin/python tools/golden/delong_golden.py
"""

import json
import pathlib

import numpy as np
import scipy
import sklearn
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

SEED = 20240628
OUT = pathlib.Path(__file__).resolve().parents[2] / "crates" / "medkd-eval" / "tests" / "golden" / "delong.json"
Z_975 = norm.ppf(0.975)


def delong_textbook(scores, positive):
    """AUCs (k,) and their DeLong covariance matrix (k, k) for k score rows over the same samples."""
    x = scores[:, positive].astype(np.float64)  # k x m
    y = scores[:, ~positive].astype(np.float64)  # k x n
    m, n = x.shape[1], y.shape[1]
    xi, yj = x[:, :, None], y[:, None, :]
    psi = (xi > yj) + 0.5 * (xi == yj)  # k x m x n
    v10 = psi.mean(axis=2)  # k x m
    v01 = psi.mean(axis=1)  # k x n
    aucs = v10.mean(axis=1)
    s10 = np.cov(v10)  # rows are models; divisor m - 1
    s01 = np.cov(v01)  # divisor n - 1
    return aucs, s10 / m + s01 / n


def interval(estimate, se, low, high):
    return max(estimate - Z_975 * se, low), min(estimate + Z_975 * se, high)


def evaluate(name, positive, a, b):
    a, b = a.astype(np.float32), b.astype(np.float32)
    scores = np.stack([a, b])
    aucs, cov = delong_textbook(scores, positive)
    for r, auc in enumerate(aucs):
        sk = roc_auc_score(positive.astype(int), scores[r].astype(np.float64))
        assert abs(auc - sk) < 1e-12, (name, r, auc, sk)

    def single(r):
        se = float(np.sqrt(cov[r, r]))
        lower, upper = interval(aucs[r], se, 0.0, 1.0)
        return {"auc": float(aucs[r]), "std_err": se, "lower": float(lower), "upper": float(upper)}

    difference = aucs[0] - aucs[1]
    var = cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1]
    assert var > -1e-15, (name, var)
    se = float(np.sqrt(max(var, 0.0)))
    z = 0.0 if difference == 0.0 else difference / se
    lower, upper = interval(difference, se, -1.0, 1.0)
    paired = {
        "auc_a": float(aucs[0]),
        "auc_b": float(aucs[1]),
        "difference": float(difference),
        "std_err": se,
        "z": float(z),
        "p_value": float(2.0 * norm.sf(abs(z))),
        "lower": float(lower),
        "upper": float(upper),
    }
    return {
        "name": name,
        "positive": positive.tolist(),
        "scores_a": [float(s) for s in a],
        "scores_b": [float(s) for s in b],
        "a": single(0),
        "b": single(1),
        "paired": paired,
    }


def labels(rng, n, positives):
    positive = np.zeros(n, dtype=bool)
    positive[:positives] = True
    return rng.permutation(positive)


def correlated(rng, name, n, positives, sep_a, sep_b, noise_b, decimals=None):
    """Two models sharing a per-sample nuisance term, so their AUCs are positively correlated."""
    positive = labels(rng, n, positives)
    shared = rng.normal(0.0, 1.0, n)
    a = 1.0 / (1.0 + np.exp(-(sep_a * positive + shared)))
    b = 1.0 / (1.0 + np.exp(-(sep_b * positive + shared + rng.normal(0.0, noise_b, n))))
    if decimals is not None:
        a, b = np.round(a, decimals), np.round(b, decimals)
    return evaluate(name, positive, a, b)


def hanley_mcneil():
    """The 5-point ratings of 109 CT images in Hanley & McNeil (1982), Table I (58 normal, 51
    abnormal), against a coarser reader who only uses 3 categories (1-2, 3, 4-5)."""
    negatives = np.repeat([1, 2, 3, 4, 5], [33, 6, 6, 11, 2])
    positives = np.repeat([1, 2, 3, 4, 5], [3, 2, 2, 11, 33])
    positive = np.r_[np.zeros(58, dtype=bool), np.ones(51, dtype=bool)]
    a = np.r_[negatives, positives].astype(np.float64)
    b = np.array([1.0, 1.0, 2.0, 3.0, 3.0])[a.astype(int) - 1]
    case = evaluate("hanley_mcneil_ratings", positive, a, b)
    # The paper reports A = 0.893 for these ratings (its SE, 0.032, is from its own approximation,
    # not DeLong's, so it is not checked).
    assert round(case["a"]["auc"], 3) == 0.893, case["a"]
    return case


def main():
    assert abs(Z_975 - 1.959963984540054) < 1e-15, Z_975
    rng = np.random.default_rng(SEED)
    cases = [
        correlated(rng, "n20_balanced", 20, 10, sep_a=1.5, sep_b=1.0, noise_b=0.8),
        correlated(rng, "n57_b_better", 57, 20, sep_a=0.8, sep_b=1.6, noise_b=0.5),
        correlated(rng, "n300_10pct_positive", 300, 30, sep_a=1.2, sep_b=1.1, noise_b=0.3),
        correlated(rng, "n120_ties_1_decimal", 120, 45, sep_a=1.0, sep_b=1.4, noise_b=1.0, decimals=1),
        correlated(rng, "n200_strongly_correlated", 200, 80, sep_a=1.0, sep_b=1.0, noise_b=0.1),
        hanley_mcneil(),
    ]

    positive = labels(rng, 40, 15)
    perfect = np.where(positive, rng.uniform(0.6, 1.0, 40), rng.uniform(0.0, 0.4, 40))
    noisy = 1.0 / (1.0 + np.exp(-(1.0 * positive + rng.normal(0.0, 1.0, 40))))
    cases.append(evaluate("n40_perfect_vs_noisy", positive, perfect, noisy))

    positive = labels(rng, 57, 19)
    a = 1.0 / (1.0 + np.exp(-(1.2 * positive + rng.normal(0.0, 1.0, 57))))
    cases.append(evaluate("n57_identical", positive, a, a.copy()))

    positive = labels(rng, 30, 12)
    a = np.where(positive, rng.uniform(0.5, 1.0, 30), rng.uniform(0.0, 0.5, 30))
    b = np.where(positive, rng.uniform(0.7, 0.9, 30), rng.uniform(0.1, 0.6, 30))
    cases.append(evaluate("n30_both_perfect", positive, a, b))

    golden = {
        "generator": "tools/golden/delong_golden.py",
        "seed": SEED,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit_learn": sklearn.__version__,
        "cases": cases,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(golden, separators=(",", ":")) + "\n")
    print(f"wrote {len(cases)} cases to {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()

//! DeLong's standard error and 95% confidence interval of a ROC-AUC, and DeLong's test of the
//! difference between two models' AUCs on the same samples.
//!
//! DeLong, DeLong & Clarke-Pearson (1988), "Comparing the areas under two or more correlated
//! receiver operating characteristic curves: a nonparametric approach", Biometrics 44(3). Each
//! positive gets the placement V10 = the fraction of negatives it outscores, and each negative
//! V01 = the fraction of positives that outscore it (a tie counting 1/2, as in `roc_auc` and
//! `sklearn.metrics.roc_auc_score`). The AUC is the mean of either, and with m positives and n
//! negatives its variance is S10 / m + S01 / n, the sample variances (covariances, for two models)
//! of the placements over each class.
//!
//! The placements come from midranks as in Sun & Xu (2014), "Fast implementation of DeLong's
//! algorithm for comparing the areas under correlated ROC curves", IEEE Signal Processing Letters
//! 21(11): O(N log N) instead of comparing all m * n pairs. `tools/golden/delong_golden.py` checks
//! the results against the pairwise textbook computation.

use serde::{Deserialize, Serialize};

use crate::EvalError;

/// z_{0.975}, the standard normal quantile that bounds a two-sided 95% interval.
const Z_975: f64 = 1.959963984540054;

/// An AUC with its DeLong standard error and 95% confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AucCi {
    pub auc: f64,
    pub std_err: f64,
    /// `auc - z_{0.975} * std_err`, clipped to 0.
    pub lower: f64,
    /// `auc + z_{0.975} * std_err`, clipped to 1.
    pub upper: f64,
}

/// DeLong's test of `auc_a - auc_b` for two models scored on the same samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PairedDelong {
    pub auc_a: f64,
    pub auc_b: f64,
    /// `auc_a - auc_b`.
    pub difference: f64,
    /// Standard error of the difference, from the 2x2 DeLong covariance of the two AUCs.
    pub std_err: f64,
    /// `difference / std_err`; 0 when the difference is 0, ±infinity when only the error is.
    pub z: f64,
    /// Two-sided p-value `2 * Phi(-|z|)`: 1 when the difference is 0, 0 when `z` is infinite.
    pub p_value: f64,
    /// `difference - z_{0.975} * std_err`, clipped to -1.
    pub lower: f64,
    /// `difference + z_{0.975} * std_err`, clipped to 1.
    pub upper: f64,
}

/// The ROC-AUC of `scores` against `positive` labels, with DeLong's standard error and the 95%
/// confidence interval `auc ± z_{0.975} * std_err` clipped to [0, 1] (what pROC's
/// `ci.auc(method = "delong")` reports).
///
/// `Ok(None)` with fewer than two positives or two negatives: the AUC needs one of each, and
/// DeLong's variance a sample variance over each class. A perfect (or perfectly wrong) model has
/// standard error 0 and the interval `[auc, auc]`.
///
/// Errors: [`EvalError::Empty`] without samples, [`EvalError::LengthMismatch`] (`what` =
/// `"scores"`, K = 1) when `scores` and `positive` differ in length, and
/// [`EvalError::NonFiniteScore`] for a NaN or infinite score.
pub fn delong_auc(scores: &[f32], positive: &[bool]) -> Result<Option<AucCi>, EvalError> {
    check(positive, &[("scores", scores)])?;
    let Some(p) = Placements::new(scores, positive) else { return Ok(None) };
    let auc = p.auc();
    let std_err = (sample_variance(&p.v10) / p.v10.len() as f64 + sample_variance(&p.v01) / p.v01.len() as f64).sqrt();
    let (lower, upper) = interval(auc, std_err, 0.0, 1.0);
    Ok(Some(AucCi { auc, std_err, lower, upper }))
}

/// DeLong's paired test: are the ROC-AUCs of `scores_a` and `scores_b`, two models' scores for
/// the same samples with the same `positive` labels, different? Also gives the 95% confidence
/// interval `difference ± z_{0.975} * std_err`, clipped to [-1, 1].
///
/// When the variance of the difference is 0 (identical rankings, or both models perfect) and the
/// difference is 0, `z` is 0 and `p_value` 1; a nonzero difference with zero variance (say a
/// perfect model against a constant one) gives an infinite `z` and `p_value` 0. Never NaN.
///
/// `Ok(None)` with fewer than two positives or two negatives, as for [`delong_auc`]. Errors as
/// for [`delong_auc`], with `what` = `"scores_a"` or `"scores_b"`.
pub fn delong_paired(scores_a: &[f32], scores_b: &[f32], positive: &[bool]) -> Result<Option<PairedDelong>, EvalError> {
    check(positive, &[("scores_a", scores_a), ("scores_b", scores_b)])?;
    let (Some(a), Some(b)) = (Placements::new(scores_a, positive), Placements::new(scores_b, positive)) else { return Ok(None) };
    let (auc_a, auc_b) = (a.auc(), b.auc());
    let difference = auc_a - auc_b;
    // var(A - B) = var A + var B - 2 cov(A, B) from the 2x2 covariance S10 / m + S01 / n, which by
    // bilinearity is the same S10 / m + S01 / n of the placement differences. Computing it that
    // way cannot cancel to a negative variance, and is exactly 0 for identical models.
    let d10: Vec<f64> = a.v10.iter().zip(&b.v10).map(|(a, b)| a - b).collect();
    let d01: Vec<f64> = a.v01.iter().zip(&b.v01).map(|(a, b)| a - b).collect();
    let std_err = (sample_variance(&d10) / d10.len() as f64 + sample_variance(&d01) / d01.len() as f64).sqrt();
    // 0 / 0 would be NaN; a zero difference is no evidence of one, whatever the error.
    let z = if difference == 0.0 { 0.0 } else { difference / std_err };
    // 2 * Phi(-|z|) = erfc(|z| / sqrt 2), which keeps its relative accuracy far into the tail.
    let p_value = libm::erfc(z.abs() / std::f64::consts::SQRT_2);
    let (lower, upper) = interval(difference, std_err, -1.0, 1.0);
    Ok(Some(PairedDelong { auc_a, auc_b, difference, std_err, z, p_value, lower, upper }))
}

/// DeLong's placement values of one model, positives and negatives each in sample order.
struct Placements {
    /// Per positive: the fraction of negatives scored lower, ties counting 1/2.
    v10: Vec<f64>,
    /// Per negative: the fraction of positives scored higher, ties counting 1/2.
    v01: Vec<f64>,
}

impl Placements {
    /// `None` with fewer than two positives or two negatives.
    fn new(scores: &[f32], positive: &[bool]) -> Option<Self> {
        let x: Vec<f32> = scores.iter().zip(positive).filter(|&(_, &p)| p).map(|(&s, _)| s).collect();
        let y: Vec<f32> = scores.iter().zip(positive).filter(|&(_, &p)| !p).map(|(&s, _)| s).collect();
        let (m, n) = (x.len(), y.len());
        if m < 2 || n < 2 {
            return None;
        }
        // Sun & Xu: a score's midrank among all samples minus its midrank within its own class is
        // the number of the other class scored lower, ties counting 1/2.
        let (tx, ty, tz) = (midranks(&x), midranks(&y), midranks(&[x, y].concat()));
        let v10 = (0..m).map(|i| (tz[i] - tx[i]) / n as f64).collect();
        let v01 = (0..n).map(|j| 1.0 - (tz[m + j] - ty[j]) / m as f64).collect();
        Some(Self { v10, v01 })
    }

    fn auc(&self) -> f64 {
        self.v10.iter().sum::<f64>() / self.v10.len() as f64
    }
}

/// 1-based ranks of `values` in input order, tied values sharing the mean of their ranks.
fn midranks(values: &[f32]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_unstable_by(|&i, &j| values[i].total_cmp(&values[j]));
    let mut ranks = vec![0.0; values.len()];
    let mut below = 0;
    // `==` rather than `total_cmp` groups -0.0 with 0.0 (adjacent in the sort), as `roc_auc` does.
    for group in order.chunk_by(|&i, &j| values[i] == values[j]) {
        let midrank = below as f64 + (group.len() as f64 + 1.0) / 2.0;
        group.iter().for_each(|&i| ranks[i] = midrank);
        below += group.len();
    }
    ranks
}

/// Sample variance (divisor len - 1) of at least two values.
fn sample_variance(values: &[f64]) -> f64 {
    let len = values.len() as f64;
    let mean = values.iter().sum::<f64>() / len;
    values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (len - 1.0)
}

fn interval(estimate: f64, std_err: f64, min: f64, max: f64) -> (f64, f64) {
    ((estimate - Z_975 * std_err).max(min), (estimate + Z_975 * std_err).min(max))
}

/// Checks that there are samples and that every score vector has one finite score per sample.
fn check(positive: &[bool], scores: &[(&'static str, &[f32])]) -> Result<(), EvalError> {
    let n = positive.len();
    if n == 0 {
        return Err(EvalError::Empty);
    }
    for &(what, scores) in scores {
        if scores.len() != n {
            return Err(EvalError::LengthMismatch { what, n, k: 1, expected: n, actual: scores.len() });
        }
        if let Some(index) = scores.iter().position(|s| !s.is_finite()) {
            return Err(EvalError::NonFiniteScore { what, index, value: scores[index] });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: f64, expected: f64) -> bool {
        (actual - expected).abs() <= 1e-12
    }

    #[test]
    fn hand_computed_with_unequal_classes() {
        // Positives 0.4, 0.8, 0.9 (m = 3) against negatives 0.1, 0.5 (n = 2):
        // V10 = 1/2, 1, 1 and V01 = 1, 2/3, so AUC = 5/6,
        // S10 = var(1/2, 1, 1) = 1/12 and S01 = var(1, 2/3) = 1/18,
        // var = S10 / m + S01 / n = 1/36 + 1/36 = 1/18. Swapping the denominators would give
        // 1/24 + 1/54 instead.
        let scores = [0.1, 0.4, 0.5, 0.8, 0.9];
        let positive = [false, true, false, true, true];
        let ci = delong_auc(&scores, &positive).unwrap().unwrap();
        assert!(close(ci.auc, 5.0 / 6.0), "{ci:?}");
        assert!(close(ci.std_err, (1.0f64 / 18.0).sqrt()), "{ci:?}");
        assert!(close(ci.lower, 5.0 / 6.0 - Z_975 * (1.0f64 / 18.0).sqrt()), "{ci:?}");
        assert_eq!(ci.upper, 1.0, "clipped");
    }

    #[test]
    fn ties_count_half() {
        // Positives 0.5, 0.5, 0.9 against negatives 0.1, 0.5: V10 = 3/4, 3/4, 1 and V01 = 1, 2/3.
        // AUC = 5/6; S10 = var(3/4, 3/4, 1) = 1/48, S01 = var(1, 2/3) = 1/18; var = 1/144 + 1/36.
        let scores = [0.5, 0.1, 0.5, 0.9, 0.5];
        let positive = [true, false, false, true, true];
        let ci = delong_auc(&scores, &positive).unwrap().unwrap();
        assert!(close(ci.auc, 5.0 / 6.0), "{ci:?}");
        assert!(close(ci.std_err, (1.0f64 / 144.0 + 1.0 / 36.0).sqrt()), "{ci:?}");
        // All tied: AUC 1/2 and every placement 1/2, so no variance.
        let ci = delong_auc(&[0.3; 4], &[true, false, true, false]).unwrap().unwrap();
        assert_eq!((ci.auc, ci.std_err, ci.lower, ci.upper), (0.5, 0.0, 0.5, 0.5));
        // -0.0 ties with 0.0.
        let ci = delong_auc(&[-0.0, 0.0, 0.0, -0.0], &[true, true, false, false]).unwrap().unwrap();
        assert_eq!(ci.auc, 0.5);
    }

    #[test]
    fn auc_matches_roc_auc() {
        let scores = [0.3, 0.7, 0.7, 0.2, 0.9, 0.1, 0.7, 0.4, 0.4, 0.8];
        let positive = [false, true, false, false, true, false, true, true, false, true];
        let expected = crate::auc::roc_auc(scores.iter().copied().zip(positive.iter().copied())).unwrap();
        assert!(close(delong_auc(&scores, &positive).unwrap().unwrap().auc, expected));
    }

    #[test]
    fn paired_test_uses_the_covariance() {
        // b is a slightly perturbed copy of a: their AUCs are strongly correlated, so the variance
        // of the difference is far below var A + var B (what ignoring the covariance gives).
        let n = 200;
        let positive: Vec<bool> = (0..n).map(|i| i % 3 == 0).collect();
        let noise = |i: usize, k: usize| ((i * k) % 97) as f32 / 97.0;
        let a: Vec<f32> = (0..n).map(|i| noise(i, 31) + if positive[i] { 0.4 } else { 0.0 }).collect();
        let b: Vec<f32> = (0..n).map(|i| a[i] + 0.05 * noise(i, 53)).collect();
        let paired = delong_paired(&a, &b, &positive).unwrap().unwrap();
        let (ci_a, ci_b) = (delong_auc(&a, &positive).unwrap().unwrap(), delong_auc(&b, &positive).unwrap().unwrap());
        assert_eq!((paired.auc_a, paired.auc_b), (ci_a.auc, ci_b.auc));
        let independent = ci_a.std_err.powi(2) + ci_b.std_err.powi(2);
        assert!(paired.std_err.powi(2) < 0.1 * independent, "{paired:?} vs {independent}");
        assert!(close(paired.z, paired.difference / paired.std_err));
        assert!(close(paired.p_value, libm::erfc(paired.z.abs() / std::f64::consts::SQRT_2)));
    }

    #[test]
    fn paired_test_is_antisymmetric() {
        let scores_a = [0.1, 0.4, 0.35, 0.8, 0.2, 0.9, 0.6];
        let scores_b = [0.3, 0.2, 0.5, 0.6, 0.1, 0.7, 0.65];
        let positive = [false, true, false, true, false, true, true];
        let ab = delong_paired(&scores_a, &scores_b, &positive).unwrap().unwrap();
        let ba = delong_paired(&scores_b, &scores_a, &positive).unwrap().unwrap();
        assert!(ab.difference != 0.0);
        assert_eq!((ab.difference, ab.std_err, ab.z, ab.p_value), (-ba.difference, ba.std_err, -ba.z, ba.p_value));
        assert!(ab.p_value > 0.0 && ab.p_value < 1.0 && ab.lower < ab.difference && ab.difference < ab.upper);
    }

    #[test]
    fn zero_variance_is_defined() {
        let positive = [false, false, true, true];
        let perfect = [0.1, 0.2, 0.8, 0.9];
        // Identical models, and two different perfect ones: difference 0, p = 1.
        for other in [perfect, [0.3, 0.4, 0.5, 0.6]] {
            let paired = delong_paired(&perfect, &other, &positive).unwrap().unwrap();
            assert_eq!((paired.difference, paired.std_err, paired.z, paired.p_value), (0.0, 0.0, 0.0, 1.0));
            assert_eq!((paired.lower, paired.upper), (0.0, 0.0));
        }
        // Perfect against constant: AUC 1 vs 1/2 with no variance, so z = +inf and p = 0.
        let paired = delong_paired(&perfect, &[0.5; 4], &positive).unwrap().unwrap();
        assert_eq!((paired.difference, paired.std_err, paired.z, paired.p_value), (0.5, 0.0, f64::INFINITY, 0.0));
        assert_eq!((paired.lower, paired.upper), (0.5, 0.5));
    }

    #[test]
    fn undefined_without_two_of_each_class() {
        assert_eq!(delong_auc(&[0.1, 0.9], &[true, true]), Ok(None));
        assert_eq!(delong_auc(&[0.1, 0.9], &[false, false]), Ok(None));
        assert_eq!(delong_auc(&[0.1, 0.2, 0.9], &[false, false, true]), Ok(None), "one positive: no S10");
        assert_eq!(delong_paired(&[0.1, 0.2, 0.9], &[0.3, 0.2, 0.1], &[true, false, false]), Ok(None));
    }

    #[test]
    fn bad_input_is_an_error() {
        assert_eq!(delong_auc(&[], &[]), Err(EvalError::Empty));
        let err = delong_auc(&[0.1, 0.2], &[true, false, true]).unwrap_err();
        assert_eq!(err.to_string(), "scores has length 2, expected N*K = 3*1 = 3");
        let err = delong_paired(&[0.1, 0.2, 0.3], &[0.1, 0.2], &[true, false, true]).unwrap_err();
        assert_eq!(err, EvalError::LengthMismatch { what: "scores_b", n: 3, k: 1, expected: 3, actual: 2 });
        let err = delong_auc(&[0.1, f32::NAN], &[true, false]).unwrap_err();
        assert_eq!(err.to_string(), "scores[1] is NaN, expected a finite score");
        let err = delong_paired(&[0.1, 0.2], &[0.1, f32::INFINITY], &[true, false]).unwrap_err();
        assert_eq!(err, EvalError::NonFiniteScore { what: "scores_b", index: 1, value: f32::INFINITY });
    }
}

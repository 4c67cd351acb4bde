//! ROC-AUC with sklearn's tie handling.

/// ROC-AUC of `(score, is_positive)` pairs, or `None` without both positives and negatives.
///
/// Computed as the Mann–Whitney U statistic: the fraction of (positive, negative) pairs in which
/// the positive scores higher, a tie counting 1/2. That is exactly the trapezoidal area under the
/// ROC curve over distinct thresholds that `sklearn.metrics.roc_auc_score` reports.
pub(crate) fn roc_auc(scored: impl IntoIterator<Item = (f32, bool)>) -> Option<f64> {
    let mut scored: Vec<(f32, bool)> = scored.into_iter().collect();
    scored.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    // Pair counts are kept doubled so the half-credit for ties stays an exact integer.
    let (mut negatives_below, mut twice_u) = (0u64, 0u64);
    for group in scored.chunk_by(|a, b| a.0 == b.0) {
        let positives = group.iter().filter(|(_, positive)| *positive).count() as u64;
        let negatives = group.len() as u64 - positives;
        twice_u += positives * (2 * negatives_below + negatives);
        negatives_below += negatives;
    }
    let (negatives, positives) = (negatives_below, scored.len() as u64 - negatives_below);
    (positives > 0 && negatives > 0).then(|| twice_u as f64 / (2 * positives * negatives) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auc(scores: &[f32], positive: &[bool]) -> Option<f64> {
        roc_auc(scores.iter().copied().zip(positive.iter().copied()))
    }

    #[test]
    fn perfect_reversed_and_tied() {
        let labels = [false, false, true, true];
        assert_eq!(auc(&[0.1, 0.2, 0.8, 0.9], &labels), Some(1.0));
        assert_eq!(auc(&[0.9, 0.8, 0.2, 0.1], &labels), Some(0.0));
        assert_eq!(auc(&[0.5; 4], &labels), Some(0.5));
    }

    #[test]
    fn partial_ties_count_half() {
        // Pairs (pos, neg): 0.6 beats 0.2 and ties 0.6 -> 1.5; 0.9 beats both -> 2; total 3.5 / 4.
        let scores = [0.2, 0.6, 0.6, 0.9];
        let labels = [false, false, true, true];
        assert_eq!(auc(&scores, &labels), Some(0.875));
    }

    #[test]
    fn negative_zero_ties_with_zero() {
        assert_eq!(auc(&[-0.0, 0.0], &[true, false]), Some(0.5));
    }

    #[test]
    fn undefined_without_both_classes() {
        assert_eq!(auc(&[0.1, 0.9], &[true, true]), None);
        assert_eq!(auc(&[0.1, 0.9], &[false, false]), None);
        assert_eq!(auc(&[], &[]), None);
    }
}

//! ROC and precision-recall curves of one class's scores, point for point as scikit-learn's
//! `roc_curve` (with its default `drop_intermediate=True`) and `precision_recall_curve` give
//! them, and average precision as `average_precision_score`.

use serde::{Deserialize, Serialize};

/// A ROC curve: `fpr[i]`, `tpr[i]` are the rates when scores `>= thresholds[i]` count as
/// positive. The first threshold is `+inf` (nothing positive); it is written as `null` in JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RocCurve {
    pub fpr: Vec<f64>,
    pub tpr: Vec<f64>,
    pub thresholds: Vec<f64>,
}

/// A precision-recall curve: points in order of decreasing recall, ending at `(recall 0,
/// precision 1)`, which has no threshold; `thresholds` is one shorter and increasing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrCurve {
    pub precision: Vec<f64>,
    pub recall: Vec<f64>,
    pub thresholds: Vec<f64>,
}

/// Cumulative false and true positives at each distinct score, from the highest down
/// (scikit-learn's `_binary_clf_curve`): `(fps, tps, thresholds)`.
fn binary_clf_curve(scored: &[(f32, bool)]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut sorted = scored.to_vec();
    sorted.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut fps, mut tps, mut thresholds) = (Vec::new(), Vec::new(), Vec::new());
    let (mut fp, mut tp) = (0u64, 0u64);
    for group in sorted.chunk_by(|a, b| a.0 == b.0) {
        let positives = group.iter().filter(|(_, positive)| *positive).count() as u64;
        tp += positives;
        fp += group.len() as u64 - positives;
        fps.push(fp as f64);
        tps.push(tp as f64);
        thresholds.push(f64::from(group[0].0));
    }
    (fps, tps, thresholds)
}

/// The ROC curve of `(score, is_positive)` pairs, or `None` without both positives and negatives
/// (scikit-learn then warns and returns NaN rates).
pub fn roc_curve(scored: &[(f32, bool)]) -> Option<RocCurve> {
    let (mut fps, mut tps, mut thresholds) = binary_clf_curve(scored);
    let (&negatives, &positives) = (fps.last()?, tps.last()?);
    if negatives == 0.0 || positives == 0.0 {
        return None;
    }
    // Drop the points that lie on a straight line between their neighbours: a zero second
    // difference in both counts.
    if fps.len() > 2 {
        let keep: Vec<usize> = (0..fps.len())
            .filter(|&i| {
                i == 0
                    || i == fps.len() - 1
                    || fps[i + 1] - 2.0 * fps[i] + fps[i - 1] != 0.0
                    || tps[i + 1] - 2.0 * tps[i] + tps[i - 1] != 0.0
            })
            .collect();
        fps = keep.iter().map(|&i| fps[i]).collect();
        tps = keep.iter().map(|&i| tps[i]).collect();
        thresholds = keep.iter().map(|&i| thresholds[i]).collect();
    }
    Some(RocCurve {
        fpr: std::iter::once(0.0).chain(fps.iter().map(|f| f / negatives)).collect(),
        tpr: std::iter::once(0.0).chain(tps.iter().map(|t| t / positives)).collect(),
        thresholds: std::iter::once(f64::INFINITY).chain(thresholds).collect(),
    })
}

/// The precision-recall curve of `(score, is_positive)` pairs (every distinct threshold), or
/// `None` for no samples. With no positives, recall is 1 everywhere, as in scikit-learn.
pub fn precision_recall_curve(scored: &[(f32, bool)]) -> Option<PrCurve> {
    let (fps, tps, thresholds) = binary_clf_curve(scored);
    let &positives = tps.last()?;
    let precision = fps.iter().zip(&tps).map(|(fp, tp)| if tp + fp == 0.0 { 0.0 } else { tp / (tp + fp) });
    let recall = tps.iter().map(|tp| if positives == 0.0 { 1.0 } else { tp / positives });
    Some(PrCurve {
        precision: precision.rev().chain([1.0]).collect(),
        recall: recall.rev().chain([0.0]).collect(),
        thresholds: thresholds.into_iter().rev().collect(),
    })
}

/// Average precision, Σ (R_n − R_{n−1}) P_n over the curve's thresholds; `None` without a
/// positive (scikit-learn warns and returns 0 there, which would read as a real score).
pub fn average_precision(scored: &[(f32, bool)]) -> Option<f64> {
    if !scored.iter().any(|(_, positive)| *positive) {
        return None;
    }
    let curve = precision_recall_curve(scored)?;
    Some(-(0..curve.recall.len() - 1).map(|i| (curve.recall[i + 1] - curve.recall[i]) * curve.precision[i]).sum::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(scores: &[f32], positive: &[u8]) -> Vec<(f32, bool)> {
        scores.iter().zip(positive).map(|(&s, &p)| (s, p == 1)).collect()
    }

    #[test]
    fn roc_of_a_small_case_by_hand() {
        // Descending: 0.9 (+), 0.8 (-), 0.4 and 0.4 (+, -), 0.1 (-).
        let curve = roc_curve(&pairs(&[0.1, 0.4, 0.4, 0.8, 0.9], &[0, 1, 0, 0, 1])).unwrap();
        assert_eq!(curve.fpr, [0.0, 0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0]);
        assert_eq!(curve.tpr, [0.0, 0.5, 0.5, 1.0, 1.0]);
        assert_eq!(curve.thresholds[1..], [0.9f32 as f64, 0.8f32 as f64, 0.4f32 as f64, 0.1f32 as f64]);
        assert!(curve.thresholds[0].is_infinite());
    }

    #[test]
    fn collinear_points_are_dropped() {
        // Three negatives in a row below every positive: the middle one lies on the line.
        let curve = roc_curve(&pairs(&[0.9, 0.3, 0.2, 0.1], &[1, 0, 0, 0])).unwrap();
        assert_eq!(curve.fpr, [0.0, 0.0, 1.0]);
        assert_eq!(curve.tpr, [0.0, 1.0, 1.0]);
    }

    #[test]
    fn undefined_without_both_classes() {
        assert_eq!(roc_curve(&pairs(&[0.2, 0.7], &[1, 1])), None);
        assert_eq!(roc_curve(&[]), None);
        assert_eq!(precision_recall_curve(&[]), None);
        assert_eq!(average_precision(&pairs(&[0.2, 0.7], &[0, 0])), None);
    }

    #[test]
    fn precision_recall_and_average_precision_by_hand() {
        // Descending: 0.9 (+) P 1 R .5; 0.8 (-) P .5 R .5; 0.4 (+) P 2/3 R 1.
        let scored = pairs(&[0.4, 0.8, 0.9], &[1, 0, 1]);
        let curve = precision_recall_curve(&scored).unwrap();
        assert_eq!(curve.precision, [2.0 / 3.0, 0.5, 1.0, 1.0]);
        assert_eq!(curve.recall, [1.0, 0.5, 0.5, 0.0]);
        assert_eq!(curve.thresholds, [0.4f32 as f64, 0.8f32 as f64, 0.9f32 as f64]);
        // AP = 0.5 · 2/3 + 0 · 0.5 + 0.5 · 1.
        assert!((average_precision(&scored).unwrap() - (1.0 / 3.0 + 0.5)).abs() < 1e-12);
    }
}

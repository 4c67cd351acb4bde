//! Turning raw model outputs into probabilities.

/// Row-wise softmax of N x `k` row-major logits.
///
/// Each row is shifted by its maximum before exponentiating (so large logits cannot overflow)
/// and evaluated in f64.
///
/// # Panics
/// If `k == 0` or `logits.len()` is not a multiple of `k`: that is a shape bug in the caller,
/// not bad data.
pub fn softmax_rows(logits: &[f32], k: usize) -> Vec<f32> {
    assert!(k > 0 && logits.len().is_multiple_of(k), "softmax_rows: {} logits do not split into rows of {k}", logits.len());
    logits
        .chunks_exact(k)
        .flat_map(|row| {
            let max = f64::from(row.iter().copied().fold(f32::NEG_INFINITY, f32::max));
            let exps: Vec<f64> = row.iter().map(|&x| (f64::from(x) - max).exp()).collect();
            let sum: f64 = exps.iter().sum();
            exps.into_iter().map(move |e| (e / sum) as f32)
        })
        .collect()
}

/// Element-wise logistic function, for multi-label logits.
pub fn sigmoid(logits: &[f32]) -> Vec<f32> {
    // In f64, exp(-x) overflows only to +inf for very negative x, which still gives the correct
    // limit 0 (never NaN), so the plain formula is stable here.
    logits.iter().map(|&x| (1.0 / (1.0 + (-f64::from(x)).exp())) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_rows_sum_to_one_and_keep_order() {
        let probs = softmax_rows(&[1.0, 2.0, 3.0, -1.0, -1.0, -1.0], 3);
        for row in probs.chunks(3) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
        assert!(probs[0] < probs[1] && probs[1] < probs[2]);
        assert!(probs[3..].iter().all(|&p| (p - 1.0 / 3.0).abs() < 1e-7));
        // Known value: softmax([0, ln 3]) = [0.25, 0.75].
        let two = softmax_rows(&[0.0, 3.0f32.ln()], 2);
        assert!((two[0] - 0.25).abs() < 1e-7 && (two[1] - 0.75).abs() < 1e-7);
    }

    #[test]
    fn softmax_survives_huge_logits() {
        let probs = softmax_rows(&[1000.0, 1000.0, -1000.0, f32::MAX, 0.0, f32::MIN], 3);
        assert_eq!(probs, vec![0.5, 0.5, 0.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    #[should_panic(expected = "do not split into rows")]
    fn softmax_rejects_ragged_rows() {
        softmax_rows(&[1.0, 2.0, 3.0], 2);
    }

    #[test]
    fn sigmoid_is_stable_at_extremes() {
        assert_eq!(sigmoid(&[0.0]), vec![0.5]);
        assert_eq!(sigmoid(&[-1e6, 1e6, f32::MIN, f32::MAX]), vec![0.0, 1.0, 0.0, 1.0]);
        let p = sigmoid(&[2.0])[0];
        assert!((p - 0.880_797_1).abs() < 1e-6);
    }
}

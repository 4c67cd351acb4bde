//! Expected calibration error.

/// Number of equal-width confidence bins used by the expected calibration error.
pub const ECE_BINS: usize = 15;

/// Expected calibration error of `(confidence, was_correct)` pairs: the sample-weighted mean
/// over bins of |accuracy - mean confidence|.
///
/// Bin `b` holds confidences in `(b/15, (b+1)/15]`; the first bin also holds 0 (and anything
/// below), the last anything above 1.
pub(crate) fn expected_calibration_error(samples: impl IntoIterator<Item = (f32, bool)>) -> f64 {
    #[derive(Clone, Copy, Default)]
    struct Bin {
        count: u64,
        correct: u64,
        confidence_sum: f64,
    }
    let mut bins = [Bin::default(); ECE_BINS];
    let mut total = 0u64;
    for (confidence, correct) in samples {
        let confidence = f64::from(confidence);
        // Compare against each upper edge b/15 instead of using ceil(15 * c), so values on an
        // edge land in the same bin as in the numpy reference.
        let b = (0..ECE_BINS).find(|&b| confidence <= (b + 1) as f64 / ECE_BINS as f64).unwrap_or(ECE_BINS - 1);
        bins[b].count += 1;
        bins[b].correct += u64::from(correct);
        bins[b].confidence_sum += confidence;
        total += 1;
    }
    bins.iter()
        .filter(|bin| bin.count > 0)
        .map(|bin| {
            let count = bin.count as f64;
            let gap = bin.correct as f64 / count - bin.confidence_sum / count;
            count / total as f64 * gap.abs()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ece(samples: &[(f32, bool)]) -> f64 {
        expected_calibration_error(samples.iter().copied())
    }

    #[test]
    fn confident_and_right_is_calibrated() {
        assert_eq!(ece(&[(1.0, true), (1.0, true)]), 0.0);
        assert_eq!(ece(&[]), 0.0);
    }

    #[test]
    fn confident_and_wrong_is_maximally_off() {
        assert_eq!(ece(&[(1.0, false)]), 1.0);
    }

    #[test]
    fn bins_are_weighted_by_size() {
        // Bin (0.8, 0.867]: conf 0.85, acc 1/2 -> gap 0.35; bin (0.933, 1]: conf 1, acc 1 -> 0.
        let value = ece(&[(0.85, true), (0.85, false), (1.0, true), (1.0, true)]);
        assert!((value - 0.5 * 0.35).abs() < 1e-7, "{value}");
    }

    #[test]
    fn bins_split_at_multiples_of_one_fifteenth() {
        // 0.5 is in (7/15, 8/15] and 0.55 in (8/15, 9/15]: gaps 0.5 and 0.45, each weighted 1/2.
        let value = ece(&[(0.5, false), (0.55, true)]);
        assert!((value - 0.475).abs() < 1e-7, "{value}");
        // Both in (7/15, 8/15]: one bin with mean confidence 0.51 and accuracy 1/2.
        let value = ece(&[(0.5, false), (0.52, true)]);
        assert!((value - 0.01).abs() < 1e-7, "{value}");
        // 0 goes to the first bin rather than being dropped.
        assert_eq!(ece(&[(0.0, false)]), 0.0);
    }
}

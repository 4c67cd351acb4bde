//! Expected calibration error, and temperature scaling (Guo et al., 2017): one temperature T
//! for all classes, fitted on validation predictions, that makes the probabilities softmax(z / T).

/// Number of equal-width confidence bins used by the expected calibration error.
pub const ECE_BINS: usize = 15;

/// One equal-width confidence bin of a reliability diagram.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReliabilityBin {
    /// The bin holds confidences in `(lower, upper]`.
    pub lower: f64,
    pub upper: f64,
    pub count: u64,
    /// Fraction of the bin's samples that were right (0 for an empty bin).
    pub accuracy: f64,
    /// Mean confidence of the bin's samples (0 for an empty bin).
    pub confidence: f64,
}

/// The [`ECE_BINS`] bins of `(confidence, was_correct)` pairs, for a reliability diagram.
///
/// Bin `b` holds confidences in `(b/15, (b+1)/15]`; the first bin also holds 0 (and anything
/// below), the last anything above 1.
pub fn reliability_bins(samples: impl IntoIterator<Item = (f32, bool)>) -> Vec<ReliabilityBin> {
    let (mut counts, mut correct, mut sums) = ([0u64; ECE_BINS], [0u64; ECE_BINS], [0f64; ECE_BINS]);
    for (confidence, right) in samples {
        let confidence = f64::from(confidence);
        // Compare against each upper edge b/15 instead of using ceil(15 * c), so values on an
        // edge land in the same bin as in the numpy reference.
        let b = (0..ECE_BINS).find(|&b| confidence <= (b + 1) as f64 / ECE_BINS as f64).unwrap_or(ECE_BINS - 1);
        counts[b] += 1;
        correct[b] += u64::from(right);
        sums[b] += confidence;
    }
    (0..ECE_BINS)
        .map(|b| {
            let n = counts[b].max(1) as f64;
            ReliabilityBin {
                lower: b as f64 / ECE_BINS as f64,
                upper: (b + 1) as f64 / ECE_BINS as f64,
                count: counts[b],
                accuracy: correct[b] as f64 / n,
                confidence: sums[b] / n,
            }
        })
        .collect()
}

/// Expected calibration error of `(confidence, was_correct)` pairs: the sample-weighted mean
/// over [`reliability_bins`] of |accuracy - mean confidence|.
pub fn expected_calibration_error(samples: impl IntoIterator<Item = (f32, bool)>) -> f64 {
    let bins = reliability_bins(samples);
    let total = bins.iter().map(|bin| bin.count).sum::<u64>().max(1) as f64;
    bins.iter().map(|bin| bin.count as f64 / total * (bin.accuracy - bin.confidence).abs()).sum()
}

/// The temperatures [`fit_temperature`] searches: wide enough for any sensible network, and
/// bounded so a degenerate split (every sample right and confident) cannot run off to infinity.
pub const TEMPERATURE_RANGE: (f64, f64) = (0.05, 20.0);

/// `probs` (rows of `num_classes` softmax probabilities) at temperature `t`: softmax(ln p / t),
/// which equals softmax(z / t) for the logits z behind p (the log-sum-exp shift cancels).
pub fn scale_temperature(probs: &[f32], num_classes: usize, t: f64) -> Vec<f32> {
    probs
        .chunks_exact(num_classes)
        .flat_map(|row| {
            // A probability that underflowed to 0 stays the least likely class.
            let scaled: Vec<f64> = row.iter().map(|&p| f64::from(p.max(f32::MIN_POSITIVE)).ln() / t).collect();
            let max = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = scaled.iter().map(|v| (v - max).exp()).sum();
            scaled.into_iter().map(move |v| ((v - max).exp() / sum) as f32)
        })
        .collect()
}

/// Mean negative log-likelihood of `labels` under `probs` at temperature `t`.
pub fn temperature_nll(probs: &[f32], num_classes: usize, labels: &[usize], t: f64) -> f64 {
    let n = labels.len().max(1) as f64;
    probs
        .chunks_exact(num_classes)
        .zip(labels)
        .map(|(row, &label)| {
            let scaled: Vec<f64> = row.iter().map(|&p| f64::from(p.max(f32::MIN_POSITIVE)).ln() / t).collect();
            let top = (0..scaled.len()).fold(0, |top, c| if scaled[c] > scaled[top] { c } else { top });
            // ln(1 + rest) rather than ln(sum): a confident right answer keeps its tiny loss
            // instead of rounding to 0, so the fit still sees which way is better.
            let rest: f64 = (0..scaled.len()).filter(|&c| c != top).map(|c| (scaled[c] - scaled[top]).exp()).sum();
            (scaled[top] - scaled[label]) + rest.ln_1p()
        })
        .sum::<f64>()
        / n
}

/// The temperature in [`TEMPERATURE_RANGE`] that minimizes the NLL of `labels`: golden-section
/// search on ln t. The NLL is convex in 1/t, so it has one minimum along ln t too. Written by
/// hand: a 1-D bounded search is a dozen lines, no optimizer crate needed.
pub fn fit_temperature(probs: &[f32], num_classes: usize, labels: &[usize]) -> f64 {
    let nll = |log_t: f64| temperature_nll(probs, num_classes, labels, log_t.exp());
    let ratio = (5f64.sqrt() - 1.0) / 2.0;
    let (mut lo, mut hi) = (TEMPERATURE_RANGE.0.ln(), TEMPERATURE_RANGE.1.ln());
    let (mut a, mut b) = (hi - ratio * (hi - lo), lo + ratio * (hi - lo));
    let (mut fa, mut fb) = (nll(a), nll(b));
    while hi - lo > 1e-7 {
        if fa < fb {
            (hi, b, fb) = (b, a, fa);
            a = hi - ratio * (hi - lo);
            fa = nll(a);
        } else {
            (lo, a, fa) = (a, b, fb);
            b = lo + ratio * (hi - lo);
            fb = nll(b);
        }
    }
    ((lo + hi) / 2.0).exp()
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

//! Validation of caller-supplied predictions, so the metric code can index without panicking.

use crate::EvalError;

/// Checks N*K `probs` against N `labels` in `0..k`.
pub(crate) fn check_single_label(probs: &[f32], k: usize, labels: &[usize], class_names: &[String]) -> Result<(), EvalError> {
    check_classes("classes", 2, k, class_names)?;
    let n = labels.len();
    if n == 0 {
        return Err(EvalError::Empty);
    }
    check_len("probs", probs.len(), n, k)?;
    check_finite(probs, k)?;
    match labels.iter().position(|&label| label >= k) {
        Some(sample) => Err(EvalError::LabelOutOfRange { sample, label: labels[sample], num_classes: k }),
        None => Ok(()),
    }
}

/// Checks N*K `probs` against N*K multi-hot `targets`; returns N.
pub(crate) fn check_multi_label(probs: &[f32], k: usize, targets: &[u8], label_names: &[String]) -> Result<usize, EvalError> {
    check_classes("labels", 1, k, label_names)?;
    if !probs.len().is_multiple_of(k) {
        return Err(EvalError::RaggedRows { what: "probs", len: probs.len(), k });
    }
    let n = probs.len() / k;
    if n == 0 {
        return Err(EvalError::Empty);
    }
    check_len("targets", targets.len(), n, k)?;
    check_finite(probs, k)?;
    match targets.iter().position(|&t| t > 1) {
        Some(index) => Err(EvalError::InvalidTarget { index, sample: index / k, label: index % k, value: targets[index] }),
        None => Ok(n),
    }
}

fn check_classes(what: &'static str, min: usize, k: usize, names: &[String]) -> Result<(), EvalError> {
    if k < min {
        return Err(EvalError::TooFewClasses { what, min, got: k });
    }
    if names.len() != k {
        return Err(EvalError::NamesMismatch { expected: k, actual: names.len() });
    }
    Ok(())
}

fn check_len(what: &'static str, actual: usize, n: usize, k: usize) -> Result<(), EvalError> {
    // Saturating: an absurd N*K cannot match any real slice length, and must not overflow.
    let expected = n.saturating_mul(k);
    if actual == expected { Ok(()) } else { Err(EvalError::LengthMismatch { what, n, k, expected, actual }) }
}

fn check_finite(probs: &[f32], k: usize) -> Result<(), EvalError> {
    match probs.iter().position(|p| !p.is_finite()) {
        Some(index) => Err(EvalError::NonFiniteProbability { index, sample: index / k, class: index % k, value: probs[index] }),
        None => Ok(()),
    }
}

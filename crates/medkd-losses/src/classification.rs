use burn::prelude::*;
use burn::tensor::activation::log_softmax;

use crate::LossError;

/// Softmax cross-entropy with PyTorch's semantics for class weights and label smoothing:
/// each sample's loss is `-(sum_k w_k q_k log p_k)` with `q = (1 - eps) onehot + eps / K`,
/// and the mean divides by `sum_i w[y_i]`.
///
/// The target distribution is built on the host as one `N x K` coefficient matrix, so the
/// device work is a single log-softmax, product and sum.
pub fn cross_entropy(logits: Tensor<2>, classes: &[usize], class_weights: Option<&[f32]>, label_smoothing: f32) -> Tensor<1> {
    weighted_cross_entropy(logits, classes, class_weights, label_smoothing, None)
}

/// [`cross_entropy`] with sample `i`'s loss multiplied by `sample_weights[i]`; the divisor stays
/// `sum_i w[y_i]` (`n` without class weights), as the box terms' weighted mean.
pub fn weighted_cross_entropy(
    logits: Tensor<2>,
    classes: &[usize],
    class_weights: Option<&[f32]>,
    label_smoothing: f32,
    sample_weights: Option<&[f32]>,
) -> Tensor<1> {
    let [n, k] = logits.dims();
    assert_eq!(classes.len(), n, "one target per logit row");
    let weight = |c: usize| class_weights.map_or(1.0, |w| w[c]);
    let normalizer: f32 = classes.iter().map(|&c| weight(c)).sum();
    let mut coefficients = vec![0.0f32; n * k];
    for (i, (row, &target)) in coefficients.chunks_mut(k).zip(classes).enumerate() {
        for (class, coefficient) in row.iter_mut().enumerate() {
            *coefficient = label_smoothing / k as f32 * weight(class);
        }
        row[target] += (1.0 - label_smoothing) * weight(target);
        let sample = sample_weights.map_or(1.0, |w| w[i]);
        row.iter_mut().for_each(|c| *c *= sample / normalizer);
    }
    let coefficients = Tensor::<2>::from_data(TensorData::new(coefficients, [n, k]), &logits.device());
    -(log_softmax(logits, 1) * coefficients).sum()
}

/// Cross-entropy against soft targets: the batch mean of `−Σ_k q_k log softmax(logits)_k`, for
/// rows `q` of class probabilities (self-training on a teacher's soft pseudo-labels). For two
/// classes this is DISTL's `BCEWithLogits(z, sigmoid(t))` on the logit differences
/// `z = s_1 − s_0`, `t = t_1 − t_0`.
pub fn soft_cross_entropy(logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    let [n, _] = logits.dims();
    (targets * log_softmax(logits, 1)).sum().neg().div_scalar(n as f32)
}

/// Binary cross-entropy on logits, mean over all entries, in the overflow-free form
/// `max(z, 0) - z y + log(1 + exp(-|z|))`.
pub fn bce_with_logits(logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    let positive_part = logits.clone().clamp_min(0.0);
    let log_term = logits.clone().abs().neg().exp().add_scalar(1.0).log();
    (positive_part - logits * targets + log_term).mean()
}

/// Focal loss (Lin et al. 2017) for single-label targets: the batch mean of
/// `-alpha[y] (1 - p_y)^gamma log p_y`, with `p = softmax(logits)`. `gamma = 0` without `alpha`
/// is cross-entropy.
pub fn focal(logits: Tensor<2>, classes: &[usize], gamma: f32, alpha: Option<&[f32]>) -> Tensor<1> {
    let [n, k] = logits.dims();
    let device = logits.device();
    let log_pt = (log_softmax(logits, 1) * at_targets(classes, k, |_| 1.0, &device)).sum_dim(1);
    let weights: Vec<f32> = classes.iter().map(|&c| alpha.map_or(1.0, |a| a[c]) / n as f32).collect();
    let weights = Tensor::<2>::from_data(TensorData::new(weights, [n, 1]), &device);
    let modulated = if gamma == 0.0 {
        log_pt
    } else {
        // 1 - p_y, kept >= 0 against rounding so that a fractional power stays real.
        let miss = log_pt.clone().exp().neg().add_scalar(1.0).clamp_min(0.0);
        miss.powf_scalar(gamma) * log_pt
    };
    -(modulated * weights).sum()
}

/// Cross-entropy on logits shifted by one offset per class, `logits + offsets` (logit
/// adjustment, Menon et al. 2021; balanced softmax, Ren et al. 2020, when the offsets are the
/// log class prior).
pub fn logit_adjusted_cross_entropy(logits: Tensor<2>, classes: &[usize], offsets: &[f32]) -> Tensor<1> {
    let [n, k] = logits.dims();
    assert_eq!(offsets.len(), k, "one offset per class");
    let offsets = Tensor::<2>::from_data(TensorData::new(offsets.to_vec(), [1, k]), &logits.device()).repeat_dim(0, n);
    cross_entropy(logits + offsets, classes, None, 0.0)
}

/// LDAM loss (Cao et al. 2019, the authors' `LDAMLoss`): cross-entropy, optionally class-weighted,
/// on `scale (logits - margins[y] onehot(y))`.
pub fn ldam(logits: Tensor<2>, classes: &[usize], margins: &[f32], scale: f32, class_weights: Option<&[f32]>) -> Tensor<1> {
    let [_, k] = logits.dims();
    let shift = at_targets(classes, k, |c| margins[c], &logits.device());
    cross_entropy((logits - shift).mul_scalar(scale), classes, class_weights, 0.0)
}

/// An `N x K` matrix holding `value(y_i)` at each sample's target and 0 elsewhere.
fn at_targets(classes: &[usize], k: usize, value: impl Fn(usize) -> f32, device: &Device) -> Tensor<2> {
    let mut entries = vec![0.0f32; classes.len() * k];
    for (row, &target) in entries.chunks_mut(k).zip(classes) {
        row[target] = value(target);
    }
    Tensor::<2>::from_data(TensorData::new(entries, [classes.len(), k]), device)
}

/// SSD-KD's class weights `N_total / N_c`, from the training split's class counts.
pub fn inverse_frequency_weights(class_counts: &[usize], class_names: &[String]) -> Result<Vec<f32>, LossError> {
    every_class_sampled("cross_entropy", "class_weights = \"inverse_frequency\"", class_counts, class_names)?;
    let total: usize = class_counts.iter().sum();
    Ok(class_counts.iter().map(|&count| total as f32 / count as f32).collect())
}

/// Cui et al. (2019) class-balanced weights from the effective number of samples:
/// `(1 - beta) / (1 - beta^n_c)`, scaled to sum to the number of classes. Every count must be
/// > 0 ([`every_class_sampled`]); `beta = 0` gives equal weights.
pub fn class_balanced_weights(class_counts: &[usize], beta: f64) -> Vec<f32> {
    let raw: Vec<f64> = class_counts.iter().map(|&count| (1.0 - beta) / (1.0 - beta.powf(count as f64))).collect();
    let sum: f64 = raw.iter().sum();
    raw.iter().map(|w| (w / sum * class_counts.len() as f64) as f32).collect()
}

/// An error naming term `term` and the first class without a training sample, which `what`
/// (the parameter that reads the counts) cannot do without.
pub(crate) fn every_class_sampled(term: &str, what: &str, class_counts: &[usize], class_names: &[String]) -> Result<(), LossError> {
    match class_counts.iter().position(|&count| count == 0) {
        None => Ok(()),
        Some(class) => {
            let name = class_names.get(class).map_or_else(|| class.to_string(), Clone::clone);
            Err(LossError::bad(term, format!("{what} needs every class in the training split, but class '{name}' has no sample")))
        }
    }
}

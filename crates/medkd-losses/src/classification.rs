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
    let [n, k] = logits.dims();
    assert_eq!(classes.len(), n, "one target per logit row");
    let weight = |c: usize| class_weights.map_or(1.0, |w| w[c]);
    let normalizer: f32 = classes.iter().map(|&c| weight(c)).sum();
    let mut coefficients = vec![0.0f32; n * k];
    for (row, &target) in coefficients.chunks_mut(k).zip(classes) {
        for (class, coefficient) in row.iter_mut().enumerate() {
            *coefficient = label_smoothing / k as f32 * weight(class);
        }
        row[target] += (1.0 - label_smoothing) * weight(target);
        row.iter_mut().for_each(|c| *c /= normalizer);
    }
    let coefficients = Tensor::<2>::from_data(TensorData::new(coefficients, [n, k]), &logits.device());
    -(log_softmax(logits, 1) * coefficients).sum()
}

/// Binary cross-entropy on logits, mean over all entries, in the overflow-free form
/// `max(z, 0) - z y + log(1 + exp(-|z|))`.
pub fn bce_with_logits(logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    let positive_part = logits.clone().clamp_min(0.0);
    let log_term = logits.clone().abs().neg().exp().add_scalar(1.0).log();
    (positive_part - logits * targets + log_term).mean()
}

/// SSD-KD's class weights `N_total / N_c`, from the training split's class counts.
pub fn inverse_frequency_weights(class_counts: &[usize], class_names: &[String]) -> Result<Vec<f32>, LossError> {
    let total: usize = class_counts.iter().sum();
    class_counts
        .iter()
        .enumerate()
        .map(|(class, &count)| {
            if count == 0 {
                let name = class_names.get(class).map_or_else(|| class.to_string(), Clone::clone);
                Err(LossError::bad(
                    "cross_entropy",
                    format!(
                        "class_weights = \"inverse_frequency\" needs every class in the training split, but class '{name}' has no sample"
                    ),
                ))
            } else {
                Ok(total as f32 / count as f32)
            }
        })
        .collect()
}

use burn::prelude::*;
use burn::tensor::activation::{log_softmax, sigmoid, softmax};

use crate::bce_with_logits;

/// Hinton et al. (2015) soft-target loss: `T^2 * sum_k p_t,k (log p_t,k - log p_s,k) / N` with
/// `p = softmax(z / T)`, i.e. PyTorch's
/// `F.kl_div(F.log_softmax(zs / T, 1), F.softmax(zt / T, 1), reduction='batchmean') * T * T`.
/// The `T^2` keeps the gradient scale independent of the temperature.
pub fn kd_kl(student_logits: Tensor<2>, teacher_logits: Tensor<2>, temperature: f32) -> Tensor<1> {
    let [n, _] = student_logits.dims();
    let teacher = teacher_logits.div_scalar(temperature);
    let log_ratio = log_softmax(teacher.clone(), 1) - log_softmax(student_logits.div_scalar(temperature), 1);
    (softmax(teacher, 1) * log_ratio).sum().mul_scalar(temperature * temperature / n as f32)
}

/// Multi-label (sigmoid) soft-target loss: mean over all entries of
/// `BCE(sigmoid(z_s / T), sigmoid(z_t / T))`, computed from the student's logits in the stable
/// form of [`bce_with_logits`]; PyTorch's
/// `F.binary_cross_entropy_with_logits(zs / T, torch.sigmoid(zt / T))`.
///
/// Unlike [`kd_kl`] there is no `T^2` factor: this is the plain mean BCE, so scale the term's
/// weight yourself if the temperature should not change the loss scale.
pub fn kd_bce(student_logits: Tensor<2>, teacher_logits: Tensor<2>, temperature: f32) -> Tensor<1> {
    bce_with_logits(student_logits.div_scalar(temperature), sigmoid(teacher_logits.div_scalar(temperature)))
}

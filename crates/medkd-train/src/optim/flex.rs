//! The `flex` tensors the one-pass optimizers (`adam`, `sgd`) update in place.

use burn::backend::tensor::FloatTensor;
use burn::backend::{DType, DispatchDevice, Flex};
use burn::tensor::Tensor;

/// Values per parallel task: the update of one value does not depend on any other, so the split
/// does not change the result.
pub const VALUES_PER_TASK: usize = 1 << 15;

/// Whether the one-pass kernels take this tensor: f32 on the `flex` device.
pub fn on_flex<const D: usize>(x: &Tensor<D>) -> bool {
    matches!(x.device().inner().as_dispatch(), DispatchDevice::Flex(_)) && x.dtype() == DType::F32
}

/// `t` contiguous (a copy only when it is not).
pub fn dense(t: FloatTensor<Flex>) -> FloatTensor<Flex> {
    if t.is_contiguous() { t } else { t.to_contiguous() }
}

/// A dense tensor's values, to update in place; a buffer shared with another tensor is copied
/// first, so only this step's tensors change.
pub fn values_mut(t: &mut FloatTensor<Flex>) -> &mut [f32] {
    let (start, end) = t.layout().contiguous_offsets().expect("dense tensors are contiguous");
    &mut t.storage_mut::<f32>()[start..end]
}

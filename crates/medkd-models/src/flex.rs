//! Moving f32 data in and out of `flex` tensors for medkd's own kernels ([`crate::conv`],
//! [`crate::norm`]).

use burn::backend::tensor::FloatTensor;
use burn::backend::{DType, Flex, TensorMetadata};
use burn::tensor::TensorData;

/// A contiguous copy of the tensor when it is not contiguous already, and its shape.
pub(crate) fn contiguous(tensor: &FloatTensor<Flex>) -> (Vec<usize>, FloatTensor<Flex>) {
    assert_eq!(tensor.dtype(), DType::F32, "medkd's kernels run on f32 tensors only");
    (tensor.shape().to_vec(), tensor.to_contiguous())
}

pub(crate) fn flex_tensor(values: Vec<f32>, shape: &[usize]) -> FloatTensor<Flex> {
    FloatTensor::<Flex>::from_data(TensorData::new(values, shape.to_vec()))
}

//! Moving f32 data in and out of `flex` tensors for medkd's own kernels ([`crate::conv`],
//! [`crate::norm`], [`crate::transformer_ops`]), and the buffer, reduction and gemm they share.

use std::mem::MaybeUninit;

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

/// A buffer of `len` floats, every one written by `fill`, not zeroed first: zero-filling output
/// buffers that are overwritten anyway cost a tenth of a training step (BENCHMARKS.md, "Where the
/// time goes"). Debug builds, the tests', start it at NaN, so an entry `fill` misses shows in
/// their results.
///
/// # Safety
/// `fill` writes every one of the `len` entries.
pub(crate) unsafe fn written_in_full(len: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut values: Vec<f32> = Vec::with_capacity(len);
    let spare = &mut values.spare_capacity_mut()[..len];
    if cfg!(debug_assertions) {
        spare.fill(MaybeUninit::new(f32::NAN));
    }
    fill(spare);
    // SAFETY: the caller's `fill` wrote all `len` entries.
    unsafe { values.set_len(len) };
    values
}

/// `Σ f(a[i], b[i])` in 8 lanes, which the compiler turns into SIMD (a plain float sum is
/// sequential by the language's rules); the order is fixed, so the result is reproducible.
pub(crate) fn lane_sum(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut lanes = [0.0f32; 8];
    for (a, b) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for lane in 0..8 {
            lanes[lane] += f(a[lane], b[lane]);
        }
    }
    let tail: f32 = a.chunks_exact(8).remainder().iter().zip(b.chunks_exact(8).remainder()).map(|(a, b)| f(*a, *b)).sum();
    lanes.iter().sum::<f32>() + tail
}

/// A matrix operand for [`gemm`]: data with its column and row strides.
#[derive(Clone, Copy)]
pub(crate) struct Operand<'a> {
    data: &'a [f32],
    col_stride: usize,
    row_stride: usize,
}

impl<'a> Operand<'a> {
    pub(crate) fn row_major(data: &'a [f32], columns: usize) -> Self {
        Self { data, col_stride: 1, row_stride: columns }
    }
    pub(crate) fn transposed(data: &'a [f32], columns: usize) -> Self {
        Self { data, col_stride: columns, row_stride: 1 }
    }
    /// Entry (r, c) at `data[r · row_stride + c · col_stride]`: a block of a wider matrix.
    pub(crate) fn strided(data: &'a [f32], row_stride: usize, col_stride: usize) -> Self {
        Self { data, col_stride, row_stride }
    }
}

/// `values`, every entry of which has been written, as floats.
///
/// # Safety
/// Every entry of `values` is initialized.
pub(crate) unsafe fn assume_init(values: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: MaybeUninit<f32> has f32's layout, and the caller vouches for every entry.
    unsafe { &mut *(values as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// `values` as a [`gemm`] destination, which it overwrites.
///
/// # Safety
/// Only initialized values are written through the result (as [`gemm`] writes).
pub(crate) unsafe fn as_destination(values: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: the same layout; the caller writes only initialized values.
    unsafe { &mut *(values as *mut [f32] as *mut [MaybeUninit<f32>]) }
}

/// `dst[m x n] = lhs[m x k] · rhs[k x n]`, dst row-major: writes every entry without reading any.
pub(crate) fn gemm(dst: &mut [MaybeUninit<f32>], m: usize, n: usize, k: usize, lhs: Operand, rhs: Operand, threads: gemm::Parallelism) {
    let reach = |op: &Operand, rows: usize, cols: usize| (rows - 1) * op.row_stride + (cols - 1) * op.col_stride;
    assert!(dst.len() >= m * n && lhs.data.len() > reach(&lhs, m, k) && rhs.data.len() > reach(&rhs, k, n));
    // SAFETY: the assertion above keeps every index gemm computes from these sizes and strides
    // inside the three slices, and dst is borrowed mutably, so it aliases neither operand. With
    // `read_dst` false gemm only writes dst (MaybeUninit<f32> has f32's layout).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr().cast::<f32>(),
            1,
            n as isize,
            false,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            threads,
        )
    }
}

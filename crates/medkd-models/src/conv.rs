//! Convolutions on the `flex` CPU backend: dense ones as batched im2col + gemm, forward and
//! backward; depthwise ones with burn's forward and a direct per-plane backward ([`depthwise`]).
//!
//! Written by hand because burn 0.22.1's `flex` backend convolves one sample (or one tile of it) per
//! gemm and derives both gradients from other convolutions (the weight gradient is a convolution
//! with the output gradient as its kernel, the input gradient a transposed convolution), so the
//! gemm sees small or badly shaped matrices: a ResNet-18 step at 64 px spends about 90% of its time
//! in convolutions running at a fraction of what the same `gemm` crate reaches on one well-shaped
//! product (BENCHMARKS.md, issue #5). Here every pass is one gemm per chunk of samples, with the
//! chunk's columns side by side:
//!
//! - forward: `y[O, cols] = W[O, C·k·k] × im2col(x)[C·k·k, cols]`;
//! - weight gradient: `dW += dy[O, cols] × im2col(x)ᵀ`, summed over chunks;
//! - input gradient: `col2im(Wᵀ × dy[O, cols])`.
//!
//! Both run through burn's backend extension (`ConvBackend`) with a hand-written backward pass.
//! For inference, [`conv_bn`] also applies the BatchNorm after the convolution (its running
//! statistics as a per-channel scale and shift) and a ReLU or ReLU6 while the output is written,
//! where burn would make a pass and a buffer for each.
//!
//! [`conv2d`] falls back to burn's own convolution for everything else: other backends (CUDA,
//! wgpu, LibTorch), grouped convolutions that are not depthwise, dilated ones, uneven stride or
//! padding, non-f32 tensors.

use crate::flex::{Operand, contiguous, flex_tensor, gemm, written_in_full};
use crate::layers::relu6;
use crate::norm::{batch_norm, running_affine};
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::ModuleOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, DType, Dispatch, DispatchDevice, Flex, TensorMetadata, backend_extension};
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, PaddingConfig2d};
use burn::tensor::Tensor;
use burn::tensor::activation::relu;
use burn::tensor::ops::ConvOptions;
use rayon::prelude::*;
use std::borrow::Cow;
use std::mem::MaybeUninit;

mod depthwise;

/// Columns (output positions, over as many samples as it takes) per gemm: enough to keep the
/// gemm kernels busy on the small feature maps of late stages, few enough that the im2col buffer
/// of one chunk stays within a few MB.
const CHUNK_COLUMNS: usize = 1024;

/// A zero written into the not yet initialized im2col buffer.
const ZERO: MaybeUninit<f32> = MaybeUninit::new(0.0);

#[backend_extension(Flex, Autodiff)]
pub trait ConvBackend: Backend {
    /// Bias-free 2-D convolution of `x` [N, C, H, W], dilation 1, the same stride and zero padding
    /// on both axes: dense (`weight` [O, C, k, k], groups 1) or depthwise (`weight` [C, 1, k, k],
    /// groups C).
    fn medkd_conv2d(x: FloatTensor<Self>, weight: FloatTensor<Self>, stride: usize, padding: usize, depthwise: bool) -> FloatTensor<Self>;
}

/// The inference-only fused convolution, on `flex` without autodiff.
#[backend_extension(Flex)]
pub trait ConvInferenceBackend: Backend {
    /// [`ConvBackend::medkd_conv2d`], then `y · scale[o] + shift[o]`, plus `residual` (of the
    /// output's shape; empty for none: burn's extension macro passes no `Option` of a tensor on),
    /// clamped to `[floor, ceiling]` (ReLU: floor 0; ReLU6: floor 0,
    /// ceiling 6; neither: ±∞), NaN kept as PyTorch's ReLU does.
    #[allow(clippy::too_many_arguments)]
    fn medkd_conv2d_affine(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: usize,
        padding: usize,
        depthwise: bool,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        floor: f32,
        ceiling: f32,
    ) -> FloatTensor<Self>;
}

/// The activation after a convolution and its BatchNorm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Identity,
    Relu,
    Relu6,
}

impl Activation {
    fn apply(self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Self::Identity => x,
            Self::Relu => relu(x),
            Self::Relu6 => relu6(x),
        }
    }
    /// The `[floor, ceiling]` the activation clamps to.
    fn bounds(self) -> (f32, f32) {
        match self {
            Self::Identity => (f32::NEG_INFINITY, f32::INFINITY),
            Self::Relu => (0.0, f32::INFINITY),
            Self::Relu6 => (0.0, 6.0),
        }
    }
}

/// `activation(bn.forward(conv.forward(x)) + residual)` (no residual: nothing added). Without
/// autodiff (inference), BatchNorm, the residual and the activation are applied as the kernels
/// write the convolution's output: the same values, without the passes over the output and their
/// buffers.
pub fn conv_bn(conv: &Conv2d, bn: &BatchNorm, x: Tensor<4>, residual: Option<Tensor<4>>, activation: Activation) -> Tensor<4> {
    let device = x.device();
    let fused = fast_path(conv, &x).filter(|_| !device.is_autodiff() && conv.bias.is_none());
    let Some((padding, depthwise)) = fused else {
        let y = batch_norm(bn, conv2d(conv, x));
        return activation.apply(match residual {
            Some(residual) => y + residual,
            None => y,
        });
    };
    let (scale, shift) = running_affine(bn, &device);
    let (floor, ceiling) = activation.bounds();
    Tensor::from_dispatch(<Dispatch as ConvInferenceBackend>::medkd_conv2d_affine(
        x.into_dispatch(),
        conv.weight.val().into_dispatch(),
        conv.stride[0],
        padding,
        depthwise,
        scale.into_dispatch(),
        shift.into_dispatch(),
        residual.unwrap_or_else(|| Tensor::empty([0, 0, 0, 0], &device)).into_dispatch(),
        floor,
        ceiling,
    ))
}

/// `conv.forward(x)`, through the batched kernels where they apply.
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let Some((padding, depthwise)) = fast_path(conv, &x) else {
        return conv.forward(x);
    };
    let weight = conv.weight.val();
    let out_channels = weight.dims()[0];
    let y = Tensor::from_dispatch(<Dispatch as ConvBackend>::medkd_conv2d(
        x.into_dispatch(),
        weight.into_dispatch(),
        conv.stride[0],
        padding,
        depthwise,
    ));
    match &conv.bias {
        Some(bias) => y + bias.val().reshape([1, out_channels, 1, 1]),
        None => y,
    }
}

/// The padding of a convolution these kernels compute and whether it is depthwise, `None` for one
/// they leave to burn.
fn fast_path(conv: &Conv2d, x: &Tensor<4>) -> Option<(usize, bool)> {
    let on_flex = matches!(x.device().inner().as_dispatch(), DispatchDevice::Flex(_));
    let square = conv.kernel_size[0] == conv.kernel_size[1] && conv.stride[0] == conv.stride[1];
    let padding = match conv.padding {
        PaddingConfig2d::Explicit(top, left, bottom, right) if [left, bottom, right] == [top; 3] => Some(top),
        PaddingConfig2d::Valid => Some(0),
        _ => None,
    };
    let [out_channels, group_channels, _, _] = conv.weight.dims();
    let depthwise = conv.groups > 1 && group_channels == 1 && out_channels == conv.groups;
    let plain = (conv.groups == 1 || depthwise) && conv.dilation == [1, 1] && x.dtype() == DType::F32;
    (on_flex && square && plain).then_some(padding.map(|p| (p, depthwise))).flatten()
}

/// Sizes of one convolution.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    batch: usize,
    channels: usize,
    height: usize,
    width: usize,
    out_channels: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    out_height: usize,
    out_width: usize,
}

impl Geometry {
    fn new(x: &[usize], weight: &[usize], stride: usize, padding: usize, depthwise: bool) -> Self {
        let (kernel, channels) = (weight[2], x[1]);
        let group_channels = if depthwise { 1 } else { channels };
        assert_eq!(weight[1], group_channels, "medkd_conv2d: weight has {} input channels per group, x has {channels}", weight[1]);
        let out = |size: usize| (size + 2 * padding - kernel) / stride + 1;
        Self {
            batch: x[0],
            channels,
            height: x[2],
            width: x[3],
            out_channels: weight[0],
            kernel,
            stride,
            padding,
            out_height: out(x[2]),
            out_width: out(x[3]),
        }
    }
    /// Rows of the im2col matrix: C·k·k.
    fn patch(&self) -> usize {
        self.channels * self.kernel * self.kernel
    }
    fn in_plane(&self) -> usize {
        self.height * self.width
    }
    fn out_plane(&self) -> usize {
        self.out_height * self.out_width
    }
    /// Samples per gemm.
    fn chunk(&self) -> usize {
        CHUNK_COLUMNS.div_ceil(self.out_plane()).clamp(1, self.batch)
    }

    /// One channel's im2col rows: `rows[(kh, kw), first + p]` for the output positions `p` of
    /// the input plane `x`; `rows` holds the channel's k·k rows of `ld` columns.
    fn im2col(&self, x: &[f32], rows: &mut [MaybeUninit<f32>], ld: usize, first: usize) {
        match self.same_plane() {
            true => self.im2col_planes(x, rows, ld, first),
            false => self.im2col_rows(x, rows, ld, first),
        }
    }

    /// [`Self::im2col`] of a [`Self::same_plane`] convolution, a flat block per tap.
    fn im2col_planes(&self, x: &[f32], rows: &mut [MaybeUninit<f32>], ld: usize, first: usize) {
        let plane = self.in_plane();
        for (tap, Shift { src, lo, hi }) in self.taps() {
            let row = &mut rows[tap.index * ld + first..][..plane];
            row[..lo].fill(ZERO);
            row[hi..].fill(ZERO);
            row[lo..hi].write_copy_of_slice(&x[src..][..hi - lo]);
            tap.clear_wrapped(&mut row[lo..hi], lo, self.width, ZERO);
        }
    }

    /// [`Self::im2col`] row of output positions by row.
    fn im2col_rows(&self, x: &[f32], rows: &mut [MaybeUninit<f32>], ld: usize, first: usize) {
        self.for_each_row(|tap, oh, ih, Columns { lo, hi, start }| {
            let row = &mut rows[tap * ld + first + oh * self.out_width..][..self.out_width];
            let Some(ih) = ih else {
                row.fill(ZERO);
                return;
            };
            let input = &x[ih * self.width..][..self.width];
            row[..lo].fill(ZERO);
            row[hi..].fill(ZERO);
            if self.stride == 1 {
                row[lo..hi].write_copy_of_slice(&input[start..start + hi - lo]);
            } else {
                row[lo..hi].iter_mut().zip(input[start..].iter().step_by(self.stride)).for_each(|(o, i)| *o = MaybeUninit::new(*i));
            }
        });
    }

    /// The adjoint of [`Self::im2col`]: adds one channel's `rows` back onto the input gradient
    /// plane `dx`. Entries that im2col fills with padding zeros may be cleared in `rows` on the way.
    fn col2im(&self, rows: &mut [f32], ld: usize, first: usize, dx: &mut [f32]) {
        match self.same_plane() {
            true => self.col2im_planes(rows, ld, first, dx),
            false => self.col2im_rows(rows, ld, first, dx),
        }
    }

    fn col2im_planes(&self, rows: &mut [f32], ld: usize, first: usize, dx: &mut [f32]) {
        for (tap, Shift { src, lo, hi }) in self.taps() {
            let row = &mut rows[tap.index * ld + first..][lo..hi];
            tap.clear_wrapped(row, lo, self.width, 0.0);
            dx[src..][..hi - lo].iter_mut().zip(row.iter()).for_each(|(i, o)| *i += *o);
        }
    }

    fn col2im_rows(&self, rows: &[f32], ld: usize, first: usize, dx: &mut [f32]) {
        self.for_each_row(|tap, oh, ih, Columns { lo, hi, start }| {
            let Some(ih) = ih else { return };
            let row = &rows[tap * ld + first + oh * self.out_width..][lo..hi];
            let input = &mut dx[ih * self.width..][..self.width];
            if self.stride == 1 {
                input[start..start + hi - lo].iter_mut().zip(row).for_each(|(i, o)| *i += *o);
            } else {
                input[start..].iter_mut().step_by(self.stride).zip(row).for_each(|(i, o)| *i += *o);
            }
        });
    }

    /// Stride 1 with "same" padding: each kernel tap's im2col row is the input plane shifted by
    /// (kh - padding, kw - padding), so it is copied as one flat block instead of row by row,
    /// which on the 2x2 to 16x16 maps of a 64 px ResNet costs a call per 2 to 16 floats.
    fn same_plane(&self) -> bool {
        self.stride == 1 && self.out_height == self.height && self.out_width == self.width
    }

    /// The kernel taps of a [`Self::same_plane`] convolution with their shifts.
    fn taps(&self) -> impl Iterator<Item = (Tap, Shift)> + '_ {
        let (plane, width) = (self.in_plane() as isize, self.width as isize);
        (0..self.kernel * self.kernel).map(move |index| {
            let (dy, dx) = ((index / self.kernel) as isize - self.padding as isize, (index % self.kernel) as isize - self.padding as isize);
            // Output position p reads input p + start; rows shifted out of the plane read
            // nothing, and within the flat copy the columns that wrap to the neighbouring row
            // are cleared by `Tap::clear_wrapped`.
            let start = dy * width + dx;
            let lo = (-start).clamp(0, plane) as usize;
            let hi = (plane - start).clamp(lo as isize, plane) as usize;
            // With nothing inside the plane, `src` is never read past: 0 keeps slicing in bounds.
            let src = if lo < hi { (start + lo as isize) as usize } else { 0 };
            (Tap { index, dx }, Shift { src, lo, hi })
        })
    }

    /// Calls `f(tap = kh·k + kw, oh, input row or None where it falls in the padding, valid
    /// columns)` for every row of output positions of every kernel tap.
    fn for_each_row(&self, mut f: impl FnMut(usize, usize, Option<usize>, Columns)) {
        for kh in 0..self.kernel {
            for kw in 0..self.kernel {
                let columns = self.valid_columns(kw);
                for oh in 0..self.out_height {
                    let ih = (oh * self.stride + kh).checked_sub(self.padding).filter(|&ih| ih < self.height);
                    f(kh * self.kernel + kw, oh, ih, columns);
                }
            }
        }
    }

    /// The output columns whose input column for kernel column `kw` lies inside the image.
    fn valid_columns(&self, kw: usize) -> Columns {
        // ow * stride + kw - padding >= 0  and  < width
        let lo = self.padding.saturating_sub(kw).div_ceil(self.stride);
        let hi = (self.width + self.padding).saturating_sub(kw).div_ceil(self.stride).min(self.out_width);
        let lo = lo.min(hi);
        // With no valid column, `start` is never read past: 0 keeps slicing at it in bounds.
        let start = if lo < hi { lo * self.stride + kw - self.padding } else { 0 };
        Columns { lo, hi, start }
    }

    /// The im2col matrix of samples `first..first + count`, their columns side by side, filled a
    /// channel per task where the chunk's gemm is the parallel part (see [`min_len`]: on one
    /// thread these copies were about 40% of a ResNet-18 step's serial time); for one sample
    /// under a 1x1 stride-1 unpadded kernel (ResNet-50's bottlenecks), the sample itself.
    fn chunk_cols<'a>(&self, x: &'a [f32], first: usize, count: usize, threads: gemm::Parallelism) -> Cow<'a, [f32]> {
        let (sample, in_plane, out_plane) = (self.channels * self.in_plane(), self.in_plane(), self.out_plane());
        if count == 1 && self.pointwise() {
            return Cow::Borrowed(&x[first * sample..][..sample]);
        }
        let (ld, len) = (count * out_plane, self.patch() * count * out_plane);
        // SAFETY: the chunks are the channels' k·k rows of `ld` columns, and im2col writes each
        // sample's `out_plane` columns of every row, so all `len` entries are written.
        let cols = unsafe {
            written_in_full(len, |cols| {
                cols.par_chunks_mut(self.kernel * self.kernel * ld).with_min_len(min_len(threads)).enumerate().for_each(|(c, rows)| {
                    for s in 0..count {
                        self.im2col(&x[(first + s) * sample + c * in_plane..][..in_plane], rows, ld, s * out_plane);
                    }
                })
            })
        };
        Cow::Owned(cols)
    }

    /// The adjoint of [`Self::chunk_cols`]: adds `cols` (`count` samples side by side) onto the
    /// input gradient `dx` of those samples, a channel per task (see [`min_len`]).
    fn chunk_col2im(&self, cols: &mut [f32], count: usize, dx: &mut [f32], threads: gemm::Parallelism) {
        let (ld, out_plane) = (count * self.out_plane(), self.out_plane());
        // dx is [samples, C, plane]: gather each channel's planes, one per sample.
        let mut planes: Vec<Vec<&mut [f32]>> = (0..self.channels).map(|_| Vec::with_capacity(count)).collect();
        for (index, plane) in dx.chunks_mut(self.in_plane()).enumerate() {
            planes[index % self.channels].push(plane);
        }
        cols.par_chunks_mut(self.kernel * self.kernel * ld).zip(planes).with_min_len(min_len(threads)).for_each(|(rows, planes)| {
            for (s, dx) in planes.into_iter().enumerate() {
                self.col2im(rows, ld, s * out_plane, dx);
            }
        });
    }

    /// A 1x1 kernel at stride 1 without padding: im2col is the identity.
    fn pointwise(&self) -> bool {
        self.kernel == 1 && self.stride == 1 && self.padding == 0
    }

    /// `dy` of samples `first..first + count` as `[O, samples·plane]` (for one sample, `dy`'s own
    /// `[O, plane]` block).
    fn channel_major<'a>(&self, dy: &'a [f32], first: usize, count: usize, threads: gemm::Parallelism) -> Cow<'a, [f32]> {
        let (plane, out_channels) = (self.out_plane(), self.out_channels);
        if count == 1 {
            return Cow::Borrowed(&dy[first * out_channels * plane..][..out_channels * plane]);
        }
        let columns = count * plane;
        // SAFETY: row o holds `count` planes, each copied from dy.
        let out = unsafe {
            written_in_full(out_channels * columns, |out| {
                out.par_chunks_mut(columns).with_min_len(min_len(threads)).enumerate().for_each(|(o, row)| {
                    for (s, part) in row.chunks_mut(plane).enumerate() {
                        part.write_copy_of_slice(&dy[((first + s) * out_channels + o) * plane..][..plane]);
                    }
                })
            })
        };
        Cow::Owned(out)
    }
}

/// Output columns `lo..hi` of a kernel column whose inputs lie inside the image; `start` is the
/// input column of output column `lo`.
#[derive(Clone, Copy, Debug)]
struct Columns {
    lo: usize,
    hi: usize,
    start: usize,
}

/// A kernel tap of a [`Geometry::same_plane`] convolution: its im2col row and column shift.
#[derive(Clone, Copy, Debug)]
struct Tap {
    index: usize,
    dx: isize,
}

impl Tap {
    /// Zeroes the entries of `row` (output positions `first..`) whose input column lies outside
    /// the image: the first `-dx` or last `dx` columns of each output row.
    fn clear_wrapped<T: Copy>(&self, row: &mut [T], first: usize, width: usize, zero: T) {
        if self.dx == 0 {
            return;
        }
        let (from, to) = if self.dx < 0 { (0, (-self.dx) as usize) } else { (width - self.dx as usize, width) };
        let end = first + row.len();
        for row_start in (first - first % width..end).step_by(width) {
            for q in (row_start + from).max(first)..(row_start + to).min(end) {
                row[q - first] = zero;
            }
        }
    }
}

/// The output positions `lo..hi` of a [`Tap`] whose input lies inside the plane, and `src`, the
/// input position output position `lo` reads.
#[derive(Clone, Copy, Debug)]
struct Shift {
    src: usize,
    lo: usize,
    hi: usize,
}

/// Chunks of samples run in parallel, each gemm on one thread, when there are enough of them to
/// share out; otherwise chunks run in turn and each gemm is parallel.
fn gemm_threads(chunks: usize) -> gemm::Parallelism {
    if chunks >= rayon::current_num_threads() { gemm::Parallelism::None } else { gemm::Parallelism::Rayon(0) }
}

/// The least items per task of the copy loops inside a chunk: split them up while the chunk's
/// gemm is the parallel part (chunks run in turn), keep them on the chunk's thread otherwise.
fn min_len(threads: gemm::Parallelism) -> usize {
    match threads {
        gemm::Parallelism::None => usize::MAX,
        _ => 1,
    }
}

/// Maps `f(chunk index, piece)` over the chunks' pieces, in parallel when each gemm runs on one
/// thread, and returns the results in chunk order, so that sums over them do not depend on
/// thread scheduling (same seed, same result).
fn map_chunks<P: Send, T: Send>(pieces: Vec<P>, threads: gemm::Parallelism, f: impl Fn(usize, P) -> T + Sync) -> Vec<T> {
    match threads {
        gemm::Parallelism::None => pieces.into_par_iter().enumerate().map(|(i, p)| f(i, p)).collect(),
        _ => pieces.into_iter().enumerate().map(|(i, p)| f(i, p)).collect(),
    }
}

/// A BatchNorm with fixed statistics, a residual and an activation, applied to a convolution's
/// output as it is written (see [`ConvInferenceBackend`]).
struct Epilogue<'a> {
    scale: &'a [f32],
    shift: &'a [f32],
    /// Added to the whole output, element by element.
    residual: Option<&'a [f32]>,
    floor: f32,
    ceiling: f32,
}

impl Epilogue<'_> {
    /// Output channel `o`'s value `y` after BatchNorm, computed as `norm::batch_norm` computes it.
    fn affine(&self, o: usize, y: f32) -> f32 {
        self.scale[o] * y + self.shift[o]
    }
    /// The activation, as burn's ReLU and clamp compute it.
    fn clamp(&self, y: f32) -> f32 {
        let y = if y.is_nan() || y > self.floor { y } else { self.floor };
        if y > self.ceiling { self.ceiling } else { y }
    }
    /// Finishes in place output channel `o`'s plane `values`, which starts at element `at` of the
    /// output (the residual's offset).
    fn finish(&self, o: usize, at: usize, values: &mut [f32]) {
        match self.residual {
            Some(residual) => {
                let residual = &residual[at..][..values.len()];
                values.iter_mut().zip(residual).for_each(|(y, &r)| *y = self.clamp(self.affine(o, *y) + r))
            }
            None => values.iter_mut().for_each(|y| *y = self.clamp(self.affine(o, *y))),
        }
    }
    /// [`Epilogue::finish`] from `src` into `dst`.
    fn write(&self, o: usize, at: usize, src: &[f32], dst: &mut [MaybeUninit<f32>]) {
        let finished = |y: f32, r: f32| MaybeUninit::new(self.clamp(self.affine(o, y) + r));
        match self.residual {
            Some(residual) => dst.iter_mut().zip(src).zip(&residual[at..][..src.len()]).for_each(|((dst, &y), &r)| *dst = finished(y, r)),
            None => dst.iter_mut().zip(src).for_each(|(dst, &y)| *dst = MaybeUninit::new(self.clamp(self.affine(o, y)))),
        }
    }
}

/// The convolution of `x` by `weight`, each output plane of channel o finished by `epilogue`
/// when there is one.
fn forward(g: &Geometry, x: &[f32], weight: &[f32], epilogue: Option<&Epilogue>) -> Vec<f32> {
    let (chunk, plane, out_channels) = (g.chunk(), g.out_plane(), g.out_channels);
    let threads = gemm_threads(g.batch.div_ceil(chunk));
    let run = |index: usize, y: &mut [MaybeUninit<f32>]| {
        let count = y.len() / (out_channels * plane);
        let cols = g.chunk_cols(x, index * chunk, count, threads);
        let columns = count * plane;
        let product = |dst: &mut [MaybeUninit<f32>]| {
            gemm(dst, out_channels, columns, g.patch(), Operand::row_major(weight, g.patch()), Operand::row_major(&cols, columns), threads)
        };
        // Where this chunk starts in the output.
        let start = index * chunk * out_channels * plane;
        if count == 1 {
            product(y);
            if let Some(epilogue) = epilogue {
                y.par_chunks_mut(plane).with_min_len(min_len(threads)).enumerate().for_each(|(o, part)| {
                    // SAFETY: gemm wrote every entry of y.
                    let values = unsafe { &mut *(part as *mut [MaybeUninit<f32>] as *mut [f32]) };
                    epilogue.finish(o, start + o * plane, values);
                });
            }
            return;
        }
        // SAFETY: gemm writes every entry.
        let samples_side_by_side = unsafe { written_in_full(out_channels * columns, product) };
        // [O, samples·plane] -> [samples, O, plane]
        y.par_chunks_mut(plane).with_min_len(min_len(threads)).enumerate().for_each(|(index, part)| {
            let (s, o) = (index / out_channels, index % out_channels);
            let src = &samples_side_by_side[o * columns + s * plane..][..plane];
            match epilogue {
                Some(epilogue) => epilogue.write(o, start + index * plane, src, part),
                None => {
                    part.write_copy_of_slice(src);
                }
            }
        });
    };
    // SAFETY: each chunk of samples is written in full, by its gemm (one sample) or by the copies
    // of every plane of its samples.
    unsafe {
        written_in_full(g.batch * out_channels * plane, |y| {
            map_chunks(y.chunks_mut(chunk * out_channels * plane).collect(), threads, run);
        })
    }
}

/// Input and weight gradients (each only when asked for).
fn backward(g: &Geometry, x: &[f32], weight: &[f32], dy: &[f32], want_dx: bool, want_dw: bool) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    let (chunk, plane, out_channels, patch) = (g.chunk(), g.out_plane(), g.out_channels, g.patch());
    let sample = g.channels * g.in_plane();
    // Zeroed: col2im adds onto it.
    let mut dx = vec![0.0; if want_dx { g.batch * sample } else { 0 }];
    let threads = gemm_threads(g.batch.div_ceil(chunk));
    // Returns this chunk's weight gradient (empty when not wanted).
    let run = |index: usize, dx: Option<&mut [f32]>| -> Vec<f32> {
        let first = index * chunk;
        let count = chunk.min(g.batch - first);
        let columns = count * plane;
        let dy_chunk = g.channel_major(dy, first, count, threads);
        let mut dw = Vec::new();
        if want_dw {
            let cols = g.chunk_cols(x, first, count, threads);
            // SAFETY: gemm writes every entry.
            dw = unsafe {
                written_in_full(out_channels * patch, |dw| {
                    gemm(
                        dw,
                        out_channels,
                        patch,
                        columns,
                        Operand::row_major(&dy_chunk, columns),
                        Operand::transposed(&cols, columns),
                        threads,
                    )
                })
            };
        }
        if let Some(dx) = dx {
            let input_columns = |dst: &mut [MaybeUninit<f32>]| {
                gemm(dst, patch, columns, out_channels, Operand::transposed(weight, patch), Operand::row_major(&dy_chunk, columns), threads)
            };
            if count == 1 && g.pointwise() {
                // SAFETY: MaybeUninit<f32> has f32's layout, and gemm writes only floats into it.
                input_columns(unsafe { std::slice::from_raw_parts_mut(dx.as_mut_ptr().cast(), dx.len()) });
            } else {
                // SAFETY: gemm writes every entry.
                let mut dcols = unsafe { written_in_full(patch * columns, input_columns) };
                g.chunk_col2im(&mut dcols, count, dx, threads);
            }
        }
        dw
    };
    let pieces: Vec<Option<&mut [f32]>> = match want_dx {
        true => dx.chunks_mut(chunk * sample).map(Some).collect(),
        false => (0..g.batch.div_ceil(chunk)).map(|_| None).collect(),
    };
    let parts = map_chunks(pieces, threads, run);
    // The chunks' weight gradients, added in chunk order.
    let dw = want_dw.then(|| {
        let sum = parts.into_iter().reduce(|mut sum, part| {
            sum.iter_mut().zip(&part).for_each(|(sum, part)| *sum += part);
            sum
        });
        sum.expect("a batch has a chunk")
    });
    (want_dx.then_some(dx), dw)
}

fn forward_flex(x: &FloatTensor<Flex>, weight: &FloatTensor<Flex>, stride: usize, padding: usize, depthwise: bool) -> FloatTensor<Flex> {
    forward_flex_then(x, weight, stride, padding, depthwise, None)
}

/// [`forward_flex`], each output plane finished by `epilogue` when there is one.
fn forward_flex_then(
    x: &FloatTensor<Flex>,
    weight: &FloatTensor<Flex>,
    stride: usize,
    padding: usize,
    depthwise: bool,
    epilogue: Option<&Epilogue>,
) -> FloatTensor<Flex> {
    if depthwise {
        // burn's own depthwise forward is a direct per-plane loop already; the epilogue is one
        // more pass over its output.
        let groups = x.shape()[1];
        let y = Flex::conv2d(x.clone(), weight.clone(), None, ConvOptions::new([stride; 2], [padding; 2], [1, 1], groups));
        let Some(epilogue) = epilogue else { return y };
        let (shape, y) = contiguous(&y);
        let plane = shape[2] * shape[3];
        // SAFETY: every plane of the output is written from the same plane of y.
        let finished = unsafe {
            written_in_full(y.storage::<f32>().len(), |out| {
                out.par_chunks_mut(plane)
                    .zip(y.storage::<f32>().par_chunks(plane))
                    .enumerate()
                    .for_each(|(index, (out, y))| epilogue.write(index % groups, index * plane, y, out))
            })
        };
        return flex_tensor(finished, &shape);
    }
    let ((x_shape, x), (w_shape, weight)) = (contiguous(x), contiguous(weight));
    let g = Geometry::new(&x_shape, &w_shape, stride, padding, false);
    let y = forward(&g, x.storage(), weight.storage(), epilogue);
    flex_tensor(y, &[g.batch, g.out_channels, g.out_height, g.out_width])
}

impl ConvBackend for Flex {
    fn medkd_conv2d(x: FloatTensor<Self>, weight: FloatTensor<Self>, stride: usize, padding: usize, depthwise: bool) -> FloatTensor<Self> {
        forward_flex(&x, &weight, stride, padding, depthwise)
    }
}

impl ConvInferenceBackend for Flex {
    fn medkd_conv2d_affine(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: usize,
        padding: usize,
        depthwise: bool,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        floor: f32,
        ceiling: f32,
    ) -> FloatTensor<Self> {
        let ((_, scale), (_, shift), (_, residual)) = (contiguous(&scale), contiguous(&shift), contiguous(&residual));
        let residual = Some(residual.storage::<f32>()).filter(|values| !values.is_empty());
        let epilogue = Epilogue { scale: scale.storage(), shift: shift.storage(), residual, floor, ceiling };
        forward_flex_then(&x, &weight, stride, padding, depthwise, Some(&epilogue))
    }
}

#[derive(Debug)]
struct ConvBackward;

impl Backward<Flex, 2> for ConvBackward {
    type State = (NodeId, NodeId, usize, usize, bool);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_weight] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (x_state, weight_state, stride, padding, depthwise) = ops.state;
        let x: FloatTensor<Flex> = checkpointer.retrieve_node_output(x_state);
        let weight: FloatTensor<Flex> = checkpointer.retrieve_node_output(weight_state);
        let ((x_shape, x), (w_shape, weight), (_, dy)) = (contiguous(&x), contiguous(&weight), contiguous(&dy));
        let g = Geometry::new(&x_shape, &w_shape, stride, padding, depthwise);
        let gradients = if depthwise { depthwise::backward } else { backward };
        let (dx, dw) = gradients(&g, x.storage(), weight.storage(), dy.storage(), node_x.is_some(), node_weight.is_some());
        if let (Some(node), Some(dx)) = (node_x, dx) {
            grads.register::<Flex>(node.id, flex_tensor(dx, &[g.batch, g.channels, g.height, g.width]));
        }
        if let (Some(node), Some(dw)) = (node_weight, dw) {
            grads.register::<Flex>(node.id, flex_tensor(dw, &[g.out_channels, w_shape[1], g.kernel, g.kernel]));
        }
    }
}

impl<C: CheckpointStrategy> ConvBackend for Autodiff<Flex, C> {
    fn medkd_conv2d(x: FloatTensor<Self>, weight: FloatTensor<Self>, stride: usize, padding: usize, depthwise: bool) -> FloatTensor<Self> {
        match ConvBackward.prepare::<C>([x.node(), weight.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let weight_state = prep.checkpoint(&weight);
                let y = forward_flex(x.primitive(), weight.primitive(), stride, padding, depthwise);
                prep.finish((x_state, weight_state, stride, padding, depthwise), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(forward_flex(x.primitive(), weight.primitive(), stride, padding, depthwise)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::Device;

    #[test]
    fn kernels_take_dense_and_depthwise_convolutions_on_flex_only() {
        let x = |device: &Device| Tensor::<4>::zeros([1, 4, 8, 8], device);
        let config = Conv2dConfig::new([4, 4], [3, 3]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1));
        for device in [Device::flex(), Device::flex().autodiff()] {
            assert_eq!(fast_path(&config.init(&device), &x(&device)), Some((1, false)));
            assert_eq!(fast_path(&config.clone().with_padding(PaddingConfig2d::Valid).init(&device), &x(&device)), Some((0, false)));
            assert_eq!(fast_path(&config.clone().with_groups(4).init(&device), &x(&device)), Some((1, true)));
        }
        let device = Device::flex();
        let uneven = config.clone().with_padding(PaddingConfig2d::Explicit(1, 0, 1, 0));
        for other in [config.clone().with_groups(2), config.clone().with_dilation([2, 2]), config.clone().with_stride([1, 2]), uneven] {
            assert_eq!(fast_path(&other.init(&device), &x(&device)), None);
        }
    }

    /// (input shape, weight shape, stride, padding): strided, same-plane 3x3 and 5x5, a 1x1 map.
    const GEOMETRIES: [([usize; 4], [usize; 4], usize, usize); 4] = [
        ([1, 2, 5, 4], [3, 2, 3, 3], 2, 1),
        ([1, 2, 5, 4], [3, 2, 3, 3], 1, 1),
        ([1, 3, 6, 5], [2, 3, 5, 5], 1, 2),
        ([1, 3, 1, 1], [2, 3, 3, 3], 1, 1),
    ];

    fn ramp(n: usize, step: f32) -> Vec<f32> {
        (0..n).map(|i| (i as f32 * step).sin()).collect()
    }

    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        // <im2col(x), c> == <x, col2im(c)> for any x and c, the property the input gradient needs;
        // two samples side by side.
        for (input, weight, stride, padding) in GEOMETRIES {
            let g = Geometry::new(&[2, input[1], input[2], input[3]], &weight, stride, padding, false);
            let x = ramp(2 * input.iter().product::<usize>(), 0.37);
            let c = ramp(g.patch() * 2 * g.out_plane(), 0.11);
            let cols = g.chunk_cols(&x, 0, 2, gemm::Parallelism::Rayon(0));
            let mut back = vec![0.0; x.len()];
            g.chunk_col2im(&mut c.clone(), 2, &mut back, gemm::Parallelism::Rayon(0));
            let left: f32 = cols.iter().zip(&c).map(|(a, b)| a * b).sum();
            let right: f32 = x.iter().zip(&back).map(|(a, b)| a * b).sum();
            assert!((left - right).abs() < 1e-4, "{input:?} {weight:?}: {left} vs {right}");
        }
    }

    /// The flat per-tap copies of same-plane convolutions give exactly the row-by-row results,
    /// also for a sample placed after another in a wider chunk matrix.
    #[test]
    fn same_plane_copies_equal_the_row_by_row_ones() {
        for (input, weight, stride, padding) in GEOMETRIES.into_iter().filter(|g| g.2 == 1) {
            let g = Geometry::new(&input, &weight, stride, padding, false);
            assert!(g.same_plane());
            let (plane, ld, taps) = (g.out_plane(), 3 * g.out_plane(), g.kernel * g.kernel);
            let x = ramp(g.in_plane(), 0.37);
            let nan = MaybeUninit::new(f32::NAN);
            let (mut planes, mut rows) = (vec![nan; taps * ld], vec![nan; taps * ld]);
            g.im2col_planes(&x, &mut planes, ld, plane);
            g.im2col_rows(&x, &mut rows, ld, plane);
            // SAFETY: every entry was initialized (to NaN where im2col did not write).
            let written = |m: &[MaybeUninit<f32>]| {
                m.chunks(ld).flat_map(|r| r[plane..2 * plane].iter().map(|v| unsafe { v.assume_init() })).collect::<Vec<f32>>()
            };
            assert_eq!(written(&planes), written(&rows), "im2col {input:?} {weight:?}");

            let c = ramp(taps * ld, 0.11);
            let (mut by_planes, mut by_rows) = (vec![0.0; x.len()], vec![0.0; x.len()]);
            g.col2im_planes(&mut c.clone(), ld, plane, &mut by_planes);
            g.col2im_rows(&c, ld, plane, &mut by_rows);
            assert_eq!(by_planes, by_rows, "col2im {input:?} {weight:?}");
        }
    }

    #[test]
    fn inference_conv_bn_gives_the_values_of_its_separate_steps() {
        use burn::module::{Param, RunningState};
        use burn::nn::BatchNormConfig;
        use burn::tensor::Distribution;
        let device = Device::flex();
        // (batch, channels, side, out channels, kernel, stride, padding, depthwise)
        let cases = [
            (1, 3, 6, 4, 3, 1, 1, false),  // one sample: the gemm writes the output itself
            (70, 4, 4, 8, 3, 1, 1, false), // chunks of samples side by side, a short last one
            (3, 5, 9, 6, 3, 2, 1, false),  // strided
            (3, 5, 9, 5, 3, 1, 1, true),   // depthwise
            (4, 6, 8, 6, 3, 2, 1, true),   // depthwise, strided
        ];
        for (n, c, side, o, k, stride, padding, depthwise) in cases {
            let conv = Conv2dConfig::new([c, o], [k, k])
                .with_stride([stride; 2])
                .with_padding(PaddingConfig2d::Explicit(padding, padding, padding, padding))
                .with_groups(if depthwise { c } else { 1 })
                .with_bias(false)
                .init(&device);
            // Statistics and affine parameters away from their defaults.
            let mut bn = BatchNormConfig::new(o).init(&device);
            let uniform = |low, high| Tensor::<1>::random([o], Distribution::Uniform(low, high), &device);
            bn.gamma = Param::from_tensor(uniform(0.5, 1.5));
            bn.beta = Param::from_tensor(uniform(-0.5, 0.5));
            bn.running_mean = RunningState::new(uniform(-0.5, 0.5));
            bn.running_var = RunningState::new(uniform(0.5, 2.0));
            // Wide enough that ReLU6 clips values at 6.
            let x = Tensor::<4>::random([n, c, side, side], Distribution::Normal(0.0, 8.0), &device);
            let unfused = batch_norm(&bn, conv2d(&conv, x.clone()));
            // A residual such as a ResNet block's shortcut, of the output's shape.
            let residual = Tensor::<4>::random(unfused.dims(), Distribution::Normal(0.0, 4.0), &device);
            for activation in [Activation::Identity, Activation::Relu, Activation::Relu6] {
                for residual in [None, Some(residual.clone())] {
                    let fused = conv_bn(&conv, &bn, x.clone(), residual.clone(), activation).into_data().try_to_vec::<f32>().unwrap();
                    let added = match &residual {
                        Some(residual) => unfused.clone() + residual.clone(),
                        None => unfused.clone(),
                    };
                    let steps = activation.apply(added).into_data().try_to_vec::<f32>().unwrap();
                    let what =
                        format!("{:?} {activation:?} residual {}", (n, c, side, o, k, stride, padding, depthwise), residual.is_some());
                    assert!(activation != Activation::Relu6 || fused.contains(&6.0), "{what}: nothing reaches 6");
                    assert_eq!(fused, steps, "{what}");
                }
            }
        }
    }
}

//! A transformer's LayerNorm, softmax, exact GELU, token-wise linear layers and multi-head
//! attention on the `flex` CPU backend.
//!
//! Written by hand because burn 0.22.1's autodiff composes LayerNorm and softmax from generic
//! tensor operations (about eight passes, each into a new buffer, forward and as many backward),
//! and flex's GELU calls libm's scalar `erff` per element: together with the page faults of
//! those buffers they took about a fifth of a ViT-Tiny training step (BENCHMARKS.md, issue #31).
//! Forward, LayerNorm and softmax are flex's own fused kernels; their backward passes, and GELU
//! both ways, are here. flex's matmul zero-fills each output and then copies it into an aligned
//! buffer, on the calling thread while the others wait: the linear layers and the attention here
//! write their outputs and gradients once, through the same gemm, the attention reading q, k and v
//! in place from the qkv projection rather than from permuted copies. Other backends and dtypes
//! get burn's operations.

use crate::flex::{Operand, as_destination, assume_init, contiguous, flex_tensor, gemm, lane_sum, written_in_full};
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::{ActivationOps, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, DType, Dispatch, DispatchDevice, Flex, TensorMetadata, backend_extension};
use burn::nn::{LayerNorm, Linear};
use burn::tensor::Tensor;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Rows per parallel task. Fixed, not derived from the thread count, so that the sums across
/// rows (LayerNorm's parameter gradients) add up in the same order on any machine.
const ROWS_PER_TASK: usize = 64;
/// Values per parallel task of the element-wise GELU.
const VALUES_PER_TASK: usize = 1 << 14;

#[backend_extension(Flex, Autodiff)]
pub trait TransformerBackend: Backend {
    /// LayerNorm over the last axis: `(x − mean) / sqrt(var + epsilon) · gamma + beta`.
    fn medkd_layer_norm(x: FloatTensor<Self>, gamma: FloatTensor<Self>, beta: FloatTensor<Self>, epsilon: f64) -> FloatTensor<Self>;
    /// Softmax over the last axis.
    fn medkd_softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// The exact GELU, `x · Φ(x)`.
    fn medkd_gelu(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// `x · weight + bias` for `x` `[rows, in]`, `weight` `[in, out]` (burn's layout), `bias` `[out]`.
    fn medkd_linear(x: FloatTensor<Self>, weight: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self>;
    /// Multi-head self-attention of a qkv projection `[B, T, 3·D]` (timm's layout): softmax(q·kᵀ /
    /// √(D/heads))·v per head, `[B, T, D]` with the heads side by side.
    fn medkd_attention(qkv: FloatTensor<Self>, heads: usize) -> FloatTensor<Self>;
}

/// Whether medkd's kernels take this tensor: f32 on the `flex` device.
fn on_flex<const D: usize>(x: &Tensor<D>) -> bool {
    matches!(x.device().inner().as_dispatch(), DispatchDevice::Flex(_)) && x.dtype() == DType::F32
}

/// `norm.forward(x)` for a LayerNorm with a bias whose epsilon is `epsilon` (burn keeps a
/// LayerNorm's epsilon private, so the caller names it).
pub(crate) fn layer_norm<const D: usize>(norm: &LayerNorm, x: Tensor<D>, epsilon: f64) -> Tensor<D> {
    match &norm.beta {
        Some(beta) if on_flex(&x) => Tensor::from_dispatch(<Dispatch as TransformerBackend>::medkd_layer_norm(
            x.into_dispatch(),
            norm.gamma.val().into_dispatch(),
            beta.val().into_dispatch(),
            epsilon,
        )),
        _ => norm.forward(x),
    }
}

/// Softmax over the last axis.
pub(crate) fn softmax_last<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if !on_flex(&x) {
        return burn::tensor::activation::softmax(x, D - 1);
    }
    Tensor::from_dispatch(<Dispatch as TransformerBackend>::medkd_softmax_last(x.into_dispatch()))
}

/// The exact GELU.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if !on_flex(&x) {
        return burn::tensor::activation::gelu(x);
    }
    Tensor::from_dispatch(<Dispatch as TransformerBackend>::medkd_gelu(x.into_dispatch()))
}

/// `layer.forward(x)` for a linear layer with a bias.
pub(crate) fn linear(layer: &Linear, x: Tensor<2>) -> Tensor<2> {
    match &layer.bias {
        Some(bias) if on_flex(&x) => Tensor::from_dispatch(<Dispatch as TransformerBackend>::medkd_linear(
            x.into_dispatch(),
            layer.weight.val().into_dispatch(),
            bias.val().into_dispatch(),
        )),
        _ => layer.forward(x),
    }
}

/// Multi-head self-attention of a qkv projection `[B, T, 3·D]` (timm's layout): softmax(q·kᵀ /
/// √(D/heads))·v per head, `[B, T, D]` with the heads side by side; medkd's kernel on flex (no
/// permuted copies of q, k and v, no zero-filled products), burn's operations elsewhere.
pub(crate) fn attention(qkv: Tensor<3>, heads: usize) -> Tensor<3> {
    if on_flex(&qkv) {
        return Tensor::from_dispatch(<Dispatch as TransformerBackend>::medkd_attention(qkv.into_dispatch(), heads));
    }
    composed_attention(qkv, heads)
}

/// [`attention`] by burn's operations.
fn composed_attention(qkv: Tensor<3>, heads: usize) -> Tensor<3> {
    let [batch, tokens, width] = qkv.dims();
    let (weights, values) = attention_weights(qkv, heads);
    weights.matmul(values).swap_dims(1, 2).reshape([batch, tokens, width / 3])
}

/// The softmaxed attention `[B, heads, T, T]` and the values `[B, heads, T, D/heads]` of a qkv
/// projection `[B, T, 3·D]`, by burn's operations (timm's reshape and permute).
pub(crate) fn attention_weights(qkv: Tensor<3>, heads: usize) -> (Tensor<4>, Tensor<4>) {
    let [batch, tokens, width] = qkv.dims();
    let head_dim = width / 3 / heads;
    // timm: qkv.reshape(B, N, 3, heads, head_dim).permute(2, 0, 3, 1, 4).
    let qkv = qkv.reshape([batch, tokens, 3, heads, head_dim]).permute([2, 0, 3, 1, 4]);
    let part = |index: usize| qkv.clone().narrow(0, index, 1).reshape([batch, heads, tokens, head_dim]);
    let (q, k, v) = (part(0), part(1), part(2));
    let scores = q.mul_scalar((head_dim as f64).powf(-0.5)).matmul(k.swap_dims(2, 3));
    (softmax_last(scores), v)
}

/// gemm threads for an `m × n × k` product: one below flex's own threshold (192³ multiply-adds),
/// where splitting costs more than it gains.
fn gemm_parallelism(m: usize, n: usize, k: usize) -> gemm::Parallelism {
    if m * n * k >= 192 * 192 * 192 { gemm::Parallelism::Rayon(0) } else { gemm::Parallelism::None }
}

/// `x · weight + bias`, `x` `[rows, inputs]` and `weight` `[inputs, outputs]` row-major.
fn linear_forward(x: &[f32], weight: &[f32], bias: &[f32], rows: usize) -> Vec<f32> {
    let (inputs, outputs) = (weight.len() / bias.len(), bias.len());
    let threads = gemm_parallelism(rows, outputs, inputs);
    // SAFETY: gemm writes all rows × outputs entries.
    let mut y = unsafe {
        written_in_full(rows * outputs, |dst| {
            gemm(dst, rows, outputs, inputs, Operand::row_major(x, inputs), Operand::row_major(weight, outputs), threads)
        })
    };
    y.par_chunks_mut(outputs).with_min_len(ROWS_PER_TASK).for_each(|row| row.iter_mut().zip(bias).for_each(|(y, b)| *y += b));
    y
}

/// The gradients of [`linear_forward`] for the output gradient `dy`: x's `dy · weightᵀ`, the
/// weight's `xᵀ · dy` and the bias's column sums of `dy` (added row after row, in a fixed order).
fn linear_backward(x: &[f32], weight: &[f32], dy: &[f32], rows: usize, outputs: usize) -> [Vec<f32>; 3] {
    let inputs = weight.len() / outputs;
    // SAFETY: each gemm writes all entries of its output.
    let dx = unsafe {
        written_in_full(rows * inputs, |dst| {
            let threads = gemm_parallelism(rows, inputs, outputs);
            gemm(dst, rows, inputs, outputs, Operand::row_major(dy, outputs), Operand::transposed(weight, outputs), threads)
        })
    };
    let dweight = unsafe {
        written_in_full(inputs * outputs, |dst| {
            let threads = gemm_parallelism(inputs, outputs, rows);
            gemm(dst, inputs, outputs, rows, Operand::transposed(x, inputs), Operand::row_major(dy, outputs), threads)
        })
    };
    let mut dbias = vec![0.0f32; outputs];
    for row in dy.chunks_exact(outputs) {
        dbias.iter_mut().zip(row).for_each(|(sum, d)| *sum += d);
    }
    [dx, dweight, dbias]
}

/// Multi-head self-attention's geometry in a qkv projection `[B, T, 3·D]` (timm's layout: q, k and
/// v side by side, each `heads` blocks of D / heads).
#[derive(Clone, Copy, Debug)]
struct Heads {
    tokens: usize,
    dim: usize,
    heads: usize,
}

impl Heads {
    fn new(shape: &[usize], heads: usize) -> Heads {
        assert!(
            shape.len() == 3 && heads > 0 && shape[2].is_multiple_of(3 * heads),
            "attention: qkv {shape:?} is not [B, T, 3·D] for {heads} heads"
        );
        Heads { tokens: shape[1], dim: shape[2] / 3, heads }
    }
    fn head_dim(&self) -> usize {
        self.dim / self.heads
    }
    /// One sample's qkv rows.
    fn sample(&self) -> usize {
        self.tokens * 3 * self.dim
    }
    /// Head `head`'s queries (`part` 0), keys (1) or values (2) in a sample's qkv rows, `T × D/heads`.
    fn part<'a>(&self, qkv: &'a [f32], part: usize, head: usize) -> Operand<'a> {
        Operand::strided(&qkv[part * self.dim + head * self.head_dim()..], 3 * self.dim, 1)
    }
    /// The same block transposed, `D/heads × T`.
    fn part_transposed<'a>(&self, qkv: &'a [f32], part: usize, head: usize) -> Operand<'a> {
        Operand::strided(&qkv[part * self.dim + head * self.head_dim()..], 1, 3 * self.dim)
    }
    /// Writes `block` (`T × D/heads`) into columns `offset..` of `rows`, rows of `width`.
    fn scatter(&self, block: &[f32], rows: &mut [MaybeUninit<f32>], width: usize, offset: usize) {
        for (source, row) in block.chunks_exact(self.head_dim()).zip(rows.chunks_exact_mut(width)) {
            row[offset..][..source.len()].write_copy_of_slice(source);
        }
    }
    /// The scores' scale, 1 / √(D/heads).
    fn scale(&self) -> f32 {
        (self.head_dim() as f32).powf(-0.5)
    }

    /// One sample's attention: every head's T × T `weights` and its D/heads columns of the
    /// `output` rows (`T × D`), all written.
    fn attend(&self, qkv: &[f32], output: &mut [MaybeUninit<f32>], weights: &mut [MaybeUninit<f32>]) {
        let (tokens, head_dim, serial) = (self.tokens, self.head_dim(), gemm::Parallelism::None);
        let mut mixed = vec![0.0; tokens * head_dim];
        for (head, scores) in weights.chunks_exact_mut(tokens * tokens).enumerate() {
            gemm(scores, tokens, tokens, head_dim, self.part(qkv, 0, head), self.part_transposed(qkv, 1, head), serial);
            // SAFETY: gemm wrote every score; the mixed values are written by gemm only.
            let (probabilities, destination) = unsafe { (assume_init(scores), as_destination(&mut mixed)) };
            softmax_rows(probabilities, tokens, self.scale());
            gemm(destination, tokens, head_dim, tokens, Operand::row_major(probabilities, tokens), self.part(qkv, 2, head), serial);
            self.scatter(&mixed, output, self.dim, head * head_dim);
        }
    }

    /// One sample's qkv gradient rows (`T × 3·D`, all written) from its attention `weights` p and
    /// output gradient `dy`: per head, v's pᵀ·dy; the scores' s = p ⊙ (dy·vᵀ − rowsum(p ⊙ dy·vᵀ))
    /// · scale; q's s·k and k's sᵀ·q.
    fn attend_backward(&self, qkv: &[f32], weights: &[f32], dy: &[f32], dqkv: &mut [MaybeUninit<f32>]) {
        let (tokens, dim, head_dim, scale, serial) = (self.tokens, self.dim, self.head_dim(), self.scale(), gemm::Parallelism::None);
        let (mut scores, mut block) = (vec![0.0; tokens * tokens], vec![0.0; tokens * head_dim]);
        for (head, p) in weights.chunks_exact(tokens * tokens).enumerate() {
            let dy = Operand::strided(&dy[head * head_dim..], dim, 1);
            // q's (0), k's (1) or v's (2) gradient of this head: lhs · rhs into its columns.
            let mut write = |part: usize, lhs: Operand, rhs: Operand| {
                // SAFETY: gemm writes only values into the block.
                gemm(unsafe { as_destination(&mut block) }, tokens, head_dim, tokens, lhs, rhs, serial);
                self.scatter(&block, dqkv, 3 * dim, part * dim + head * head_dim);
            };
            write(2, Operand::transposed(p, tokens), dy);
            // SAFETY: gemm writes only values into the scores.
            gemm(unsafe { as_destination(&mut scores) }, tokens, tokens, head_dim, dy, self.part_transposed(qkv, 2, head), serial);
            for (ds, p) in scores.chunks_exact_mut(tokens).zip(p.chunks_exact(tokens)) {
                let dot = lane_sum(p, ds, |p, ds| p * ds);
                ds.iter_mut().zip(p).for_each(|(ds, p)| *ds = p * (*ds - dot) * scale);
            }
            write(0, Operand::row_major(&scores, tokens), self.part(qkv, 1, head));
            write(1, Operand::transposed(&scores, tokens), self.part(qkv, 0, head));
        }
    }
}

/// Rows of `width` scores, scaled by `scale` and softmaxed in place.
fn softmax_rows(scores: &mut [f32], width: usize, scale: f32) {
    for row in scores.chunks_exact_mut(width) {
        let max = row.iter().fold(f32::NEG_INFINITY, |max, &s| max.max(s));
        row.iter_mut().for_each(|s| *s = exp((*s - max) * scale));
        let sum = lane_sum(row, row, |p, _| p);
        row.iter_mut().for_each(|p| *p /= sum);
    }
}

/// softmax(q·kᵀ / √(D/heads))·v of every head of every sample: the output `[B, T, D]` (heads side
/// by side) and the weights `[B, heads, T, T]`. A task per sample, its products on one thread
/// (small: 50 × 50 × 64 for ViT-Tiny/4), read from the qkv rows in place, with no permuted copies.
fn attention_forward(qkv: &[f32], batch: usize, geometry: Heads) -> (Vec<f32>, Vec<f32>) {
    let (tokens, dim) = (geometry.tokens, geometry.dim);
    let mut weights = Vec::new();
    // SAFETY: `attend` writes every entry of a sample's output rows and weights.
    let output = unsafe {
        written_in_full(batch * tokens * dim, |output| {
            weights = written_in_full(batch * geometry.heads * tokens * tokens, |weights| {
                output
                    .par_chunks_mut(tokens * dim)
                    .zip(weights.par_chunks_mut(geometry.heads * tokens * tokens))
                    .zip(qkv.par_chunks(geometry.sample()))
                    .for_each(|((output, weights), qkv)| geometry.attend(qkv, output, weights))
            })
        })
    };
    (output, weights)
}

/// The qkv gradient `[B, T, 3·D]` of [`attention_forward`] for the output gradient `dy`, from its
/// `weights`, a task per sample (see [`Heads::attend_backward`]).
fn attention_backward(qkv: &[f32], weights: &[f32], dy: &[f32], batch: usize, geometry: Heads) -> Vec<f32> {
    let (tokens, dim) = (geometry.tokens, geometry.dim);
    // SAFETY: `attend_backward` writes every entry of a sample's gradient rows.
    unsafe {
        written_in_full(batch * geometry.sample(), |dqkv| {
            dqkv.par_chunks_mut(geometry.sample())
                .zip(qkv.par_chunks(geometry.sample()))
                .zip(weights.par_chunks(geometry.heads * tokens * tokens))
                .zip(dy.par_chunks(tokens * dim))
                .for_each(|(((dqkv, qkv), weights), dy)| geometry.attend_backward(qkv, weights, dy, dqkv))
        })
    }
}

/// `e^x` in plain arithmetic that the compiler vectorizes (libm's `expf` is a call per value):
/// Cephes' `expf`, 2^n · e^r with r in ±ln2/2, within 3e-7 relative over the range used here.
fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 in two parts, so that n · LN2_HI is exact.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5 · 2^23 rounds to the nearest integer without a call.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = ((((1.987_569_2e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1) * r + 5.000_000_1e-1;
    let e_r = p * r * r + r + 1.0;
    e_r * f32::from_bits(((n as i32 + 127) << 23) as u32)
}

/// `erf(x)` as a rational function that the compiler vectorizes (Eigen's and XLA's float erf,
/// within 5e-7 of the exact value; erf is ±1 in f32 beyond ±4).
fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let p = (((((-2.726_142_3e-10 * x2 + 2.770_681_4e-8) * x2 - 2.101_024e-6) * x2 - 5.692_506_4e-5) * x2 - 7.349_906_3e-4) * x2
        - 2.954_600_1e-3)
        * x2
        - 1.609_603_3e-2;
    let q = (((-1.456_607_2e-5 * x2 - 2.133_740_6e-4) * x2 - 1.682_827e-3) * x2 - 7.373_329_3e-3) * x2 - 1.426_474e-2;
    x * p / q
}

/// The standard normal's distribution function Φ.
fn normal_cdf(x: f32) -> f32 {
    0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// `f` applied to every value of `x` (and `y`, of the same length), in parallel.
fn map_values(x: &[f32], y: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    assert_eq!(x.len(), y.len(), "map_values: x and y differ in length");
    // SAFETY: out, x and y have the same length and are split alike, so every entry is mapped.
    unsafe {
        written_in_full(x.len(), |out| {
            out.par_chunks_mut(VALUES_PER_TASK).zip(x.par_chunks(VALUES_PER_TASK)).zip(y.par_chunks(VALUES_PER_TASK)).for_each(
                |((out, x), y)| {
                    out.iter_mut().zip(x).zip(y).for_each(|((out, &x), &y)| *out = MaybeUninit::new(f(x, y)));
                },
            )
        })
    }
}

fn gelu_forward(x: &FloatTensor<Flex>) -> FloatTensor<Flex> {
    let (shape, x) = contiguous(x);
    let x = x.storage::<f32>();
    flex_tensor(map_values(x, x, |x, _| x * normal_cdf(x)), &shape)
}

/// `dy · (Φ(x) + x · φ(x))`.
fn gelu_backward(x: &[f32], dy: &[f32]) -> Vec<f32> {
    let inv_sqrt_2pi = 1.0 / (2.0 * std::f32::consts::PI).sqrt();
    map_values(x, dy, |x, dy| dy * (normal_cdf(x) + x * inv_sqrt_2pi * exp(-0.5 * x * x)))
}

/// `dx = y · (dy − Σ dy·y)` per row of `width` values.
fn softmax_backward(y: &[f32], dy: &[f32], width: usize) -> Vec<f32> {
    assert!(y.len() == dy.len() && y.len().is_multiple_of(width), "softmax_backward: y and dy must be the same whole rows");
    let task = ROWS_PER_TASK * width;
    // SAFETY: dx, y and dy are the same whole rows, split alike, and every row of dx is written.
    unsafe {
        written_in_full(y.len(), |dx| {
            dx.par_chunks_mut(task).zip(y.par_chunks(task)).zip(dy.par_chunks(task)).for_each(|((dx, y), dy)| {
                for ((dx, y), dy) in dx.chunks_exact_mut(width).zip(y.chunks_exact(width)).zip(dy.chunks_exact(width)) {
                    let dot = lane_sum(y, dy, |y, dy| y * dy);
                    dx.iter_mut().zip(y).zip(dy).for_each(|((dx, y), dy)| *dx = MaybeUninit::new(y * (dy - dot)));
                }
            })
        })
    }
}

/// The gradients of LayerNorm with respect to x, gamma and beta. Per row, with x̂ the
/// normalized row and g = dy · gamma: dx = (g − mean(g) − x̂ · mean(g · x̂)) / std; gamma's
/// gradient is Σ dy · x̂ over the rows, beta's Σ dy.
fn layer_norm_backward(x: &[f32], gamma: &[f32], dy: &[f32], epsilon: f64) -> [Vec<f32>; 3] {
    let width = gamma.len();
    assert!(x.len() == dy.len() && x.len().is_multiple_of(width), "layer_norm_backward: x and dy must be the same whole rows");
    let task = ROWS_PER_TASK * width;
    // Each task's partial sums for gamma and beta, added in task order below.
    let mut partials: Vec<(Vec<f32>, Vec<f32>)> = Vec::new();
    // SAFETY: dx, x and dy are the same whole rows, split alike, and each row's loop writes
    // all `width` entries of dx.
    let dx = unsafe {
        written_in_full(x.len(), |dx| {
            partials = dx
                .par_chunks_mut(task)
                .zip(x.par_chunks(task))
                .zip(dy.par_chunks(task))
                .map(|((dx, x), dy)| {
                    let (mut dgamma, mut dbeta) = (vec![0.0; width], vec![0.0; width]);
                    let mut normalized = vec![0.0; width];
                    for ((dx, x), dy) in dx.chunks_exact_mut(width).zip(x.chunks_exact(width)).zip(dy.chunks_exact(width)) {
                        let mean = lane_sum(x, x, |x, _| x) / width as f32;
                        let variance = lane_sum(x, x, |x, _| (x - mean) * (x - mean)) / width as f32;
                        let inv_std = 1.0 / (variance + epsilon as f32).sqrt();
                        normalized.iter_mut().zip(x).for_each(|(n, x)| *n = (x - mean) * inv_std);
                        let (mut sum_g, mut sum_g_normalized) = (0.0, 0.0);
                        for i in 0..width {
                            let g = dy[i] * gamma[i];
                            sum_g += g;
                            sum_g_normalized += g * normalized[i];
                            dgamma[i] += dy[i] * normalized[i];
                            dbeta[i] += dy[i];
                        }
                        let (mean_g, mean_g_normalized) = (sum_g / width as f32, sum_g_normalized / width as f32);
                        for i in 0..width {
                            dx[i] = MaybeUninit::new((dy[i] * gamma[i] - mean_g - normalized[i] * mean_g_normalized) * inv_std);
                        }
                    }
                    (dgamma, dbeta)
                })
                .collect()
        })
    };
    let (mut dgamma, mut dbeta) = (vec![0.0; width], vec![0.0; width]);
    for (partial_gamma, partial_beta) in partials {
        dgamma.iter_mut().zip(partial_gamma).for_each(|(total, part)| *total += part);
        dbeta.iter_mut().zip(partial_beta).for_each(|(total, part)| *total += part);
    }
    [dx, dgamma, dbeta]
}

impl TransformerBackend for Flex {
    fn medkd_layer_norm(x: FloatTensor<Self>, gamma: FloatTensor<Self>, beta: FloatTensor<Self>, epsilon: f64) -> FloatTensor<Self> {
        Flex::layer_norm(x, gamma, Some(beta), epsilon)
    }
    fn medkd_softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let last = x.shape().num_dims() - 1;
        Flex::softmax(x, last)
    }
    fn medkd_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        gelu_forward(&x)
    }
    fn medkd_linear(x: FloatTensor<Self>, weight: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self> {
        let ((shape, x), (_, weight), (_, bias)) = (contiguous(&x), contiguous(&weight), contiguous(&bias));
        let y = linear_forward(x.storage(), weight.storage(), bias.storage(), shape[0]);
        flex_tensor(y, &[shape[0], bias.storage::<f32>().len()])
    }
    fn medkd_attention(qkv: FloatTensor<Self>, heads: usize) -> FloatTensor<Self> {
        flex_attention(&qkv, heads).0
    }
}

/// [`attention_forward`] on a flex tensor: the output and the weights.
fn flex_attention(qkv: &FloatTensor<Flex>, heads: usize) -> (FloatTensor<Flex>, FloatTensor<Flex>) {
    let (shape, qkv) = contiguous(qkv);
    let geometry = Heads::new(&shape, heads);
    let (output, weights) = attention_forward(qkv.storage(), shape[0], geometry);
    let tokens = geometry.tokens;
    (flex_tensor(output, &[shape[0], tokens, geometry.dim]), flex_tensor(weights, &[shape[0], heads, tokens, tokens]))
}

/// Registers each gradient with its parent's node, where the parent is tracked.
fn register<const N: usize>(grads: &mut Gradients, parents: [Option<NodeId>; N], gradients: [FloatTensor<Flex>; N]) {
    for (node, gradient) in parents.into_iter().zip(gradients) {
        if let Some(node) = node {
            grads.register::<Flex>(node, gradient);
        }
    }
}

#[derive(Debug)]
struct LayerNormBackward;

impl Backward<Flex, 3> for LayerNormBackward {
    /// x and gamma (checkpointed), epsilon.
    type State = (NodeId, NodeId, f64);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let dy = grads.consume::<Flex>(&ops.node);
        let (x_state, gamma_state, epsilon) = ops.state;
        let x: FloatTensor<Flex> = checkpointer.retrieve_node_output(x_state);
        let gamma: FloatTensor<Flex> = checkpointer.retrieve_node_output(gamma_state);
        let ((shape, x), (_, gamma), (_, dy)) = (contiguous(&x), contiguous(&gamma), contiguous(&dy));
        let [dx, dgamma, dbeta] = layer_norm_backward(x.storage(), gamma.storage(), dy.storage(), epsilon);
        let width = dgamma.len();
        register(
            grads,
            ops.parents.map(|parent| parent.map(|node| node.id)),
            [flex_tensor(dx, &shape), flex_tensor(dgamma, &[width]), flex_tensor(dbeta, &[width])],
        );
    }
}

#[derive(Debug)]
struct SoftmaxBackward;

impl Backward<Flex, 1> for SoftmaxBackward {
    /// The output.
    type State = FloatTensor<Flex>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = grads.consume::<Flex>(&ops.node);
        let ((shape, y), (_, dy)) = (contiguous(&ops.state), contiguous(&dy));
        let dx = softmax_backward(y.storage(), dy.storage(), shape[shape.len() - 1]);
        register(grads, ops.parents.map(|parent| parent.map(|node| node.id)), [flex_tensor(dx, &shape)]);
    }
}

#[derive(Debug)]
struct GeluBackward;

impl Backward<Flex, 1> for GeluBackward {
    /// x (checkpointed).
    type State = NodeId;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let dy = grads.consume::<Flex>(&ops.node);
        let x: FloatTensor<Flex> = checkpointer.retrieve_node_output(ops.state);
        let ((shape, x), (_, dy)) = (contiguous(&x), contiguous(&dy));
        register(
            grads,
            ops.parents.map(|parent| parent.map(|node| node.id)),
            [flex_tensor(gelu_backward(x.storage(), dy.storage()), &shape)],
        );
    }
}

#[derive(Debug)]
struct LinearBackward;

impl Backward<Flex, 3> for LinearBackward {
    /// x and the weight (checkpointed).
    type State = (NodeId, NodeId);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let dy = grads.consume::<Flex>(&ops.node);
        let x: FloatTensor<Flex> = checkpointer.retrieve_node_output(ops.state.0);
        let weight: FloatTensor<Flex> = checkpointer.retrieve_node_output(ops.state.1);
        let ((x_shape, x), (weight_shape, weight), (_, dy)) = (contiguous(&x), contiguous(&weight), contiguous(&dy));
        let [dx, dweight, dbias] = linear_backward(x.storage(), weight.storage(), dy.storage(), x_shape[0], weight_shape[1]);
        register(
            grads,
            ops.parents.map(|parent| parent.map(|node| node.id)),
            [flex_tensor(dx, &x_shape), flex_tensor(dweight, &weight_shape), flex_tensor(dbias, &weight_shape[1..])],
        );
    }
}

#[derive(Debug)]
struct AttentionBackward;

impl Backward<Flex, 1> for AttentionBackward {
    /// qkv (checkpointed), the attention weights and the number of heads.
    type State = (NodeId, FloatTensor<Flex>, usize);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let dy = grads.consume::<Flex>(&ops.node);
        let (qkv_state, weights, heads) = ops.state;
        let qkv: FloatTensor<Flex> = checkpointer.retrieve_node_output(qkv_state);
        let ((shape, qkv), (_, weights), (_, dy)) = (contiguous(&qkv), contiguous(&weights), contiguous(&dy));
        let dqkv = attention_backward(qkv.storage(), weights.storage(), dy.storage(), shape[0], Heads::new(&shape, heads));
        register(grads, ops.parents.map(|parent| parent.map(|node| node.id)), [flex_tensor(dqkv, &shape)]);
    }
}

impl<C: CheckpointStrategy> TransformerBackend for Autodiff<Flex, C> {
    fn medkd_layer_norm(x: FloatTensor<Self>, gamma: FloatTensor<Self>, beta: FloatTensor<Self>, epsilon: f64) -> FloatTensor<Self> {
        let forward = || Flex::medkd_layer_norm(x.primitive().clone(), gamma.primitive().clone(), beta.primitive().clone(), epsilon);
        match LayerNormBackward.prepare::<C>([x.node(), gamma.node(), beta.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let state = (prep.checkpoint(&x), prep.checkpoint(&gamma), epsilon);
                prep.finish(state, forward())
            }
            OpsKind::UnTracked(prep) => prep.finish(forward()),
        }
    }
    fn medkd_softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let y = Flex::medkd_softmax_last(x.primitive().clone());
        match SoftmaxBackward.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(y.clone(), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }
    fn medkd_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let forward = || gelu_forward(x.primitive());
        match GeluBackward.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let state = prep.checkpoint(&x);
                prep.finish(state, forward())
            }
            OpsKind::UnTracked(prep) => prep.finish(forward()),
        }
    }
    fn medkd_linear(x: FloatTensor<Self>, weight: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self> {
        let forward = || Flex::medkd_linear(x.primitive().clone(), weight.primitive().clone(), bias.primitive().clone());
        match LinearBackward.prepare::<C>([x.node(), weight.node(), bias.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let state = (prep.checkpoint(&x), prep.checkpoint(&weight));
                prep.finish(state, forward())
            }
            OpsKind::UnTracked(prep) => prep.finish(forward()),
        }
    }
    fn medkd_attention(qkv: FloatTensor<Self>, heads: usize) -> FloatTensor<Self> {
        match AttentionBackward.prepare::<C>([qkv.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let (output, weights) = flex_attention(qkv.primitive(), heads);
                let state = (prep.checkpoint(&qkv), weights, heads);
                prep.finish(state, output)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::medkd_attention(qkv.primitive().clone(), heads)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::nn::LayerNormConfig;
    use burn::tensor::{Device, Distribution, TensorData};

    /// (rows…, width): widths that are and are not multiples of 8, and more rows than one task.
    const SHAPES: [[usize; 3]; 3] = [[2, 5, 192], [3, 7, 13], [130, 1, 24]];

    fn assert_close<const D: usize>(ours: Tensor<D>, reference: Tensor<D>, tolerance: f32, what: &str) {
        let (ours, reference) = (ours.into_data().try_to_vec::<f32>().unwrap(), reference.into_data().try_to_vec::<f32>().unwrap());
        assert_eq!(ours.len(), reference.len(), "{what}: sizes differ");
        let scale = reference.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        for (i, (a, b)) in ours.iter().zip(&reference).enumerate() {
            assert!((a - b).abs() <= tolerance * scale, "{what}[{i}]: medkd {a}, burn {b}");
        }
    }

    /// The output and the input gradient (under a random weighting of the outputs) of `f` and of
    /// burn's `reference`, on the same input.
    fn compare(
        shape: [usize; 3],
        mean: f64,
        f: impl Fn(Tensor<3>) -> Tensor<3>,
        reference: impl Fn(Tensor<3>) -> Tensor<3>,
        tolerance: f32,
        what: &str,
    ) {
        let device = Device::flex().autodiff();
        let x = Tensor::<3>::random(shape, Distribution::Normal(mean, 2.0), &device);
        let run = |f: &dyn Fn(Tensor<3>) -> Tensor<3>| {
            let x = x.clone().require_grad();
            let y = f(x.clone());
            // A fixed weighting of the outputs, whatever their shape.
            let weights: Vec<f32> = (0..y.shape().num_elements()).map(|i| (i as f32 * 0.37).sin()).collect();
            let weights = Tensor::<3>::from_data(TensorData::new(weights, y.dims()), &device);
            let grads = (y.clone() * weights).sum().backward();
            (y.inner(), x.grad(&grads).unwrap())
        };
        let ((y, dx), (y_ref, dx_ref)) = (run(&f), run(&reference));
        assert_close(y, y_ref, tolerance, &format!("{what} output {shape:?}"));
        assert_close(dx, dx_ref, tolerance, &format!("{what} input gradient {shape:?}"));
    }

    #[test]
    fn layer_norm_output_and_gradients_match_burns() {
        let device = Device::flex().autodiff();
        for shape in SHAPES {
            let width = shape[2];
            let values = |seed: usize, offset: f32| -> Param<Tensor<1>> {
                let data: Vec<f32> = (0..width).map(|c| offset + ((c * 7 + seed) as f32 * 0.61).sin()).collect();
                Param::from_tensor(Tensor::from_data(TensorData::new(data, [width]), &device))
            };
            let mut norm = LayerNormConfig::new(width).with_epsilon(1e-6).init(&device);
            norm.gamma = values(1, 1.0);
            norm.beta = Some(values(2, 0.0));
            // An input far from zero mean, so that centring matters.
            compare(shape, 3.0, |x| layer_norm(&norm, x, 1e-6), |x| norm.forward(x), 2e-5, "layer norm");
            // The parameters' gradients, summed over every row.
            let x = Tensor::<3>::random(shape, Distribution::Normal(3.0, 2.0), &device);
            let weights = Tensor::<3>::random(shape, Distribution::Normal(0.0, 1.0), &device);
            let gradients = |medkd: bool| {
                let y = if medkd { layer_norm(&norm, x.clone(), 1e-6) } else { norm.forward(x.clone()) };
                let grads = (y * weights.clone()).sum().backward();
                (norm.gamma.val().grad(&grads).unwrap(), norm.beta.as_ref().unwrap().val().grad(&grads).unwrap())
            };
            let ((dgamma, dbeta), (dgamma_ref, dbeta_ref)) = (gradients(true), gradients(false));
            assert_close(dgamma, dgamma_ref, 2e-5, &format!("gamma gradient {shape:?}"));
            assert_close(dbeta, dbeta_ref, 2e-5, &format!("beta gradient {shape:?}"));
        }
    }

    #[test]
    fn softmax_output_and_gradient_match_burns() {
        for shape in SHAPES {
            compare(shape, 1.0, softmax_last, |x| burn::tensor::activation::softmax(x, 2), 1e-6, "softmax");
        }
    }

    #[test]
    fn gelu_output_and_gradient_match_burns() {
        // burn's GELU calls libm's erf: within erf's approximation error of it.
        for shape in SHAPES {
            compare(shape, 0.0, gelu, burn::tensor::activation::gelu, 2e-6, "gelu");
        }
        let x = Tensor::<3>::random([4, 3, 50], Distribution::Normal(0.0, 3.0), &Device::flex());
        assert_close(gelu(x.clone()), burn::tensor::activation::gelu(x), 2e-6, "gelu without autodiff");
    }

    /// Output and the gradients of x, weight and bias against burn's `Linear`, for widths that are
    /// and are not multiples of 8 and one product large enough for the parallel gemm.
    #[test]
    fn linear_output_and_gradients_match_burns() {
        let device = Device::flex().autodiff();
        for [rows, inputs, outputs] in [[7, 13, 24], [130, 24, 5], [200, 192, 200]] {
            let mut layer = burn::nn::LinearConfig::new(inputs, outputs).init(&device);
            layer.bias = Some(Param::from_tensor(Tensor::random([outputs], Distribution::Normal(0.0, 1.0), &device)));
            let x = Tensor::<2>::random([rows, inputs], Distribution::Normal(0.5, 2.0), &device);
            let weights = Tensor::<2>::random([rows, outputs], Distribution::Normal(0.0, 1.0), &device);
            let run = |medkd: bool| {
                let x = x.clone().require_grad();
                let y = if medkd { linear(&layer, x.clone()) } else { layer.forward(x.clone()) };
                let grads = (y.clone() * weights.clone()).sum().backward();
                let bias = layer.bias.as_ref().unwrap().val().grad(&grads).unwrap();
                (y.inner(), x.grad(&grads).unwrap(), layer.weight.val().grad(&grads).unwrap(), bias)
            };
            let ((y, dx, dw, db), (y_ref, dx_ref, dw_ref, db_ref)) = (run(true), run(false));
            let shape = [rows, inputs, outputs];
            assert_close(y, y_ref, 1e-5, &format!("linear output {shape:?}"));
            assert_close(dx, dx_ref, 1e-5, &format!("linear input gradient {shape:?}"));
            assert_close(dw, dw_ref, 1e-5, &format!("linear weight gradient {shape:?}"));
            assert_close(db, db_ref, 1e-5, &format!("linear bias gradient {shape:?}"));
        }
        let x = Tensor::<2>::random([3, 8], Distribution::Normal(0.0, 1.0), &Device::flex());
        let layer = burn::nn::LinearConfig::new(8, 4).init(&Device::flex());
        assert_close(linear(&layer, x.clone()), layer.forward(x), 1e-6, "linear without autodiff");
    }

    /// Attention against burn's operations (timm's reshape, permute, products and softmax): the
    /// output and the qkv gradient, for a small odd shape, ViT-Tiny/4's (50 tokens, 3 heads of
    /// 64) and one head; and without autodiff.
    #[test]
    fn attention_output_and_gradient_match_burns() {
        for (shape, heads) in [([2, 5, 36], 3), ([3, 50, 576], 3), ([2, 7, 24], 1)] {
            compare(
                shape,
                0.0,
                |qkv| attention(qkv, heads),
                |qkv| composed_attention(qkv, heads),
                2e-6,
                &format!("attention, {heads} heads"),
            );
        }
        let qkv = Tensor::<3>::random([4, 17, 48], Distribution::Normal(0.0, 2.0), &Device::flex());
        assert_close(attention(qkv.clone(), 2), composed_attention(qkv, 2), 2e-6, "attention without autodiff");
    }

    /// erf's Maclaurin series, in f64 (its terms stay below 1e5 for |x| ≤ 4, so it keeps 1e-10).
    fn erf_series(x: f64) -> f64 {
        let (mut term, mut sum) = (x, 0.0);
        for n in 0..120 {
            sum += term / (2 * n + 1) as f64;
            term *= -x * x / (n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn exp_and_erf_are_close_to_exact_values() {
        for i in -1000..=1000 {
            let x = i as f32 / 200.0;
            assert!((exp(x) - x.exp()).abs() <= 3e-7 * x.exp(), "exp({x}): {} against {}", exp(x), x.exp());
            let exact = erf_series(x as f64) as f32;
            assert!((erf(x) - exact).abs() <= 5e-7, "erf({x}): {} against {exact}", erf(x));
        }
        assert_eq!(exp(-200.0), exp(-87.0));
        assert_eq!(erf(9.0), erf(4.0));
    }
}

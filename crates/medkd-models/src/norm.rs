//! BatchNorm on the `flex` CPU backend: two passes over the activation forward (statistics, then
//! output) and two backward (per-channel sums, then the input gradient).
//!
//! Written by hand because burn 0.22.1 composes batch normalization from generic tensor
//! operations: a training step swaps the batch and channel axes into a copy twice forward and
//! twice backward and runs about twenty element-wise passes, each into a new buffer, which took
//! about 15% of a MobileNetV2 training step at 64 px (BENCHMARKS.md, issue #5). Inference
//! applies the running statistics as one per-channel scale and shift. [`batch_norm`] falls back
//! to burn's `BatchNorm::forward` on other backends and dtypes.

use crate::flex::{contiguous, flex_tensor, lane_sum, written_in_full};
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, DType, Dispatch, DispatchDevice, Flex, Shape, TensorMetadata, backend_extension};
use burn::nn::BatchNorm;
use burn::tensor::{Device, Tensor};
use rayon::prelude::*;
use std::mem::MaybeUninit;

#[backend_extension(Flex, Autodiff)]
pub trait NormBackend: Backend {
    /// Batch normalization of `x` [N, C, H, W] with the batch's own statistics: the output, the
    /// mean and the biased variance per channel, as burn's `batch_norm_train`.
    fn medkd_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
    /// `x · scale[c] + shift[c]` for `x` [N, C, H, W]: batch normalization with fixed statistics.
    fn medkd_channel_affine(x: FloatTensor<Self>, scale: FloatTensor<Self>, shift: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// `bn.forward(x)`, through medkd's kernels on the `flex` device: with the batch's statistics
/// (updating the running ones) where burn's BatchNorm would train, with the running statistics
/// otherwise.
pub fn batch_norm(bn: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
    let device = x.device();
    if !matches!(device.clone().inner().as_dispatch(), DispatchDevice::Flex(_)) || x.dtype() != DType::F32 {
        return bn.forward(x);
    }
    if device.is_autodiff() && bn.training.is_enabled() {
        let (y, mean, variance) = <Dispatch as NormBackend>::medkd_batch_norm_train(
            x.into_dispatch(),
            bn.gamma.val().into_dispatch(),
            bn.beta.val().into_dispatch(),
            bn.epsilon,
        );
        // The running statistics' update of burn's BatchNorm::forward_train (private there).
        let update = |state: &burn::module::RunningState<Tensor<1>>, batch: Tensor<1>| {
            let running = state.value_sync().to_device(&device);
            state.update(running.mul_scalar(1.0 - bn.momentum).add(batch.detach().mul_scalar(bn.momentum)).detach());
        };
        update(&bn.running_mean, Tensor::from_dispatch(mean));
        update(&bn.running_var, Tensor::from_dispatch(variance));
        return Tensor::from_dispatch(y);
    }
    let (scale, shift) = running_affine(bn, &device);
    Tensor::from_dispatch(<Dispatch as NormBackend>::medkd_channel_affine(x.into_dispatch(), scale.into_dispatch(), shift.into_dispatch()))
}

/// BatchNorm with its running statistics as `x · scale[c] + shift[c]`: `(scale, shift)` on `device`.
pub(crate) fn running_affine(bn: &BatchNorm, device: &Device) -> (Tensor<1>, Tensor<1>) {
    let mean = bn.running_mean.value().to_device(device);
    let variance = bn.running_var.value().to_device(device);
    let scale = bn.gamma.val() / (variance + bn.epsilon).sqrt();
    let shift = bn.beta.val() - mean * scale.clone();
    (scale, shift)
}

/// Sizes of an [N, C, ...] activation: `plane` values per sample and channel.
#[derive(Clone, Copy, Debug)]
struct Layout {
    channels: usize,
    plane: usize,
}

impl Layout {
    fn of(shape: &[usize]) -> Self {
        Self { channels: shape[1], plane: shape[2..].iter().product() }
    }
    /// `f(channel)` for every channel in parallel, the results in channel order.
    fn per_channel<T: Send>(&self, f: impl Fn(usize) -> T + Sync + Send) -> Vec<T> {
        (0..self.channels).into_par_iter().map(f).collect()
    }
    /// Σ over the channel's planes of `plane_sum(planes of the inputs)`, accumulated in f64.
    fn channel_sum<const K: usize>(&self, inputs: [&[f32]; K], channel: usize, plane_sum: impl Fn([&[f32]; K]) -> f32) -> f64 {
        let samples = inputs[0].len() / (self.channels * self.plane);
        (0..samples)
            .map(|sample| plane_sum(inputs.map(|values| &values[(sample * self.channels + channel) * self.plane..][..self.plane])) as f64)
            .sum()
    }
    /// `a[c] · x + b[c]` over every plane of every channel.
    fn affine(&self, x: &[f32], a: &[f32], b: &[f32]) -> Vec<f32> {
        self.map_planes(x.len(), |channel, range, out| {
            let (a, b) = (a[channel], b[channel]);
            out.iter_mut().zip(&x[range]).for_each(|(out, x)| *out = MaybeUninit::new(a * x + b));
        })
    }
    /// A buffer of `len` values written plane by plane in parallel by `f(channel, the plane's
    /// range, the plane)`, which writes the whole plane.
    fn map_planes(&self, len: usize, f: impl Fn(usize, std::ops::Range<usize>, &mut [MaybeUninit<f32>]) + Sync + Send) -> Vec<f32> {
        // SAFETY: `f` writes each plane in full (both callers map every value of it).
        unsafe {
            written_in_full(len, |out| {
                out.par_chunks_mut(self.plane)
                    .enumerate()
                    .for_each(|(index, out)| f(index % self.channels, index * self.plane..(index + 1) * self.plane, out))
            })
        }
    }
}

/// Output, mean and biased variance of batch normalization with the batch's statistics.
fn train_forward(x: &FloatTensor<Flex>, gamma: &FloatTensor<Flex>, beta: &FloatTensor<Flex>, epsilon: f64) -> [FloatTensor<Flex>; 3] {
    let ((shape, x), (_, gamma), (_, beta)) = (contiguous(x), contiguous(gamma), contiguous(beta));
    let (x, gamma, beta) = (x.storage::<f32>(), gamma.storage::<f32>(), beta.storage::<f32>());
    let layout = Layout::of(&shape);
    let count = (x.len() / layout.channels) as f64;
    let (mean, variance): (Vec<f32>, Vec<f32>) = layout
        .per_channel(|c| {
            let mean = layout.channel_sum([x], c, |[x]| lane_sum(x, x, |x, _| x)) / count;
            let centred = mean as f32;
            let variance = layout.channel_sum([x], c, |[x]| lane_sum(x, x, |x, _| (x - centred) * (x - centred))) / count;
            (mean as f32, variance as f32)
        })
        .into_iter()
        .unzip();
    let scale: Vec<f32> = (0..layout.channels).map(|c| gamma[c] / (variance[c] + epsilon as f32).sqrt()).collect();
    let shift: Vec<f32> = (0..layout.channels).map(|c| beta[c] - mean[c] * scale[c]).collect();
    let y = layout.affine(x, &scale, &shift);
    let channels = layout.channels;
    [flex_tensor(y, &shape), flex_tensor(mean, &[channels]), flex_tensor(variance, &[channels])]
}

/// Gradients of [`train_forward`]'s output with respect to x, gamma and beta.
fn train_backward(x: &[f32], shape: &[usize], gamma: &[f32], mean: &[f32], variance: &[f32], epsilon: f64, dy: &[f32]) -> [Vec<f32>; 3] {
    let layout = Layout::of(shape);
    let count = (x.len() / layout.channels) as f32;
    let inv_std: Vec<f32> = variance.iter().map(|v| 1.0 / (v + epsilon as f32).sqrt()).collect();
    // Σ dy and Σ dy·(x - mean) per channel.
    let (dbeta, dy_centred): (Vec<f32>, Vec<f32>) = layout
        .per_channel(|c| {
            let sum_dy = layout.channel_sum([dy], c, |[dy]| lane_sum(dy, dy, |dy, _| dy));
            let m = mean[c];
            let sum_dy_centred = layout.channel_sum([dy, x], c, |[dy, x]| lane_sum(dy, x, |dy, x| dy * (x - m)));
            (sum_dy as f32, sum_dy_centred as f32)
        })
        .into_iter()
        .unzip();
    let dgamma: Vec<f32> = dy_centred.iter().zip(&inv_std).map(|(s, i)| s * i).collect();
    // dx = gamma·inv_std·(dy - Σdy/M - x̂·Σ(dy·x̂)/M) with x̂ = (x - mean)·inv_std, as
    // k_dy·dy + k_x·x + offset per channel.
    let k_dy = |c: usize| gamma[c] * inv_std[c];
    let k_x = |c: usize| -k_dy(c) * inv_std[c] * dgamma[c] / count;
    let dx = layout.map_planes(x.len(), |c, range, dx| {
        let (k_dy, k_x) = (k_dy(c), k_x(c));
        let offset = -k_dy * dbeta[c] / count - k_x * mean[c];
        dx.iter_mut().zip(&dy[range.clone()]).zip(&x[range]).for_each(|((dx, dy), x)| *dx = MaybeUninit::new(k_dy * dy + k_x * x + offset));
    });
    [dx, dgamma, dbeta]
}

impl NormBackend for Flex {
    fn medkd_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let [y, mean, variance] = train_forward(&x, &gamma, &beta, epsilon);
        (y, mean, variance)
    }
    fn medkd_channel_affine(x: FloatTensor<Self>, scale: FloatTensor<Self>, shift: FloatTensor<Self>) -> FloatTensor<Self> {
        let ((shape, x), (_, scale), (_, shift)) = (contiguous(&x), contiguous(&scale), contiguous(&shift));
        let y = Layout::of(&shape).affine(x.storage(), scale.storage(), shift.storage());
        flex_tensor(y, &shape)
    }
}

#[derive(Debug)]
struct BatchNormBackward;

impl Backward<Flex, 3> for BatchNormBackward {
    /// x and gamma (checkpointed), the batch mean and variance, epsilon.
    type State = (NodeId, NodeId, FloatTensor<Flex>, FloatTensor<Flex>, f64);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (x_state, gamma_state, mean, variance, epsilon) = ops.state;
        let x: FloatTensor<Flex> = checkpointer.retrieve_node_output(x_state);
        let gamma: FloatTensor<Flex> = checkpointer.retrieve_node_output(gamma_state);
        let ((shape, x), (_, gamma), (_, dy)) = (contiguous(&x), contiguous(&gamma), contiguous(&dy));
        let (mean, variance) = (mean.to_contiguous(), variance.to_contiguous());
        let [dx, dgamma, dbeta] =
            train_backward(x.storage(), &shape, gamma.storage(), mean.storage(), variance.storage(), epsilon, dy.storage());
        let channels = dgamma.len();
        for (node, gradient) in [
            (node_x, flex_tensor(dx, &shape)),
            (node_gamma, flex_tensor(dgamma, &[channels])),
            (node_beta, flex_tensor(dbeta, &[channels])),
        ] {
            if let Some(node) = node {
                grads.register::<Flex>(node.id, gradient);
            }
        }
    }
}

impl<C: CheckpointStrategy> NormBackend for Autodiff<Flex, C> {
    fn medkd_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let forward = || train_forward(x.primitive(), gamma.primitive(), beta.primitive(), epsilon);
        let (y, mean, variance) = match BatchNormBackward.prepare::<C>([x.node(), gamma.node(), beta.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let gamma_state = prep.checkpoint(&gamma);
                let [y, mean, variance] = forward();
                (prep.finish((x_state, gamma_state, mean.clone(), variance.clone(), epsilon), y), mean, variance)
            }
            OpsKind::UnTracked(prep) => {
                let [y, mean, variance] = forward();
                (prep.finish(y), mean, variance)
            }
        };
        // The statistics feed the running ones only, outside the graph.
        (y, FloatTensor::<Self>::new(mean), FloatTensor::<Self>::new(variance))
    }
    fn medkd_channel_affine(x: FloatTensor<Self>, scale: FloatTensor<Self>, shift: FloatTensor<Self>) -> FloatTensor<Self> {
        // Frozen BatchNorm on a training device: autodiff's own operations record the gradients.
        let per_channel = Shape::new([1, x.shape()[1], 1, 1]);
        let scale = Self::float_reshape(scale, per_channel.clone());
        let shift = Self::float_reshape(shift, per_channel);
        Self::float_add(Self::float_mul(x, scale), shift)
    }
}

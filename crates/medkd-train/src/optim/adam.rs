//! Adam and AdamW in one pass over each parameter on the `flex` CPU backend.
//!
//! Written by hand because burn 0.22.1's `Adam` and `AdamW` compose each step from eight to ten
//! element-wise operations, each a pass into a new buffer, most of them on one thread: 63 ms of a
//! 250 ms ResNet-18 training step (batch 64, 28 px, 2 threads), where the update reads and writes
//! five values per weight. Here each element's update is the same f32 operations in the same
//! order as burn's, so the weights come out bit for bit as burn's would, and the state is burn's
//! own `AdamState`, so checkpoints written by either load in the other. Other backends (and
//! dtypes) get burn's optimizers.

use std::mem::MaybeUninit;

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, AdamState, AdamW, AdamWConfig, AdamWState, AdaptiveMomentumState, LearningRate, Optimizer};
use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;

use super::flex::{VALUES_PER_TASK, dense, on_flex, values_mut};

/// How the weight decay enters.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Decay {
    /// Adam's L2 penalty: `penalty · weight` added to the gradient.
    L2(f32),
    /// AdamW's decoupled decay: the weight shrunk by `1 − lr · rate` before the update.
    Decoupled(f32),
}

/// One optimizer's hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FusedAdam {
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    decay: Decay,
}

impl FusedAdam {
    /// torch.optim.Adam's update with an L2 `weight_decay`, as burn's `Adam`.
    pub fn adam(betas: [f32; 2], epsilon: f32, weight_decay: f32) -> FusedAdam {
        FusedAdam { beta_1: betas[0], beta_2: betas[1], epsilon, decay: Decay::L2(weight_decay) }
    }

    /// torch.optim.AdamW's update with decoupled `weight_decay`, as burn's `AdamW`.
    pub fn adamw(betas: [f32; 2], epsilon: f32, weight_decay: f32) -> FusedAdam {
        FusedAdam { beta_1: betas[0], beta_2: betas[1], epsilon, decay: Decay::Decoupled(weight_decay) }
    }

    /// burn's step, for tensors medkd's kernel does not take.
    fn burn_step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<AdamState<D>>,
    ) -> (Tensor<D>, Option<AdamState<D>>) {
        let momentum = state.map(|s| s.momentum);
        let (tensor, state) = match self.decay {
            Decay::L2(penalty) => {
                let adam = AdamConfig::new()
                    .with_beta_1(self.beta_1)
                    .with_beta_2(self.beta_2)
                    .with_epsilon(self.epsilon)
                    .with_weight_decay((penalty > 0.0).then(|| WeightDecayConfig { penalty }))
                    .build();
                let (tensor, state) = adam.step(lr, tensor, grad, momentum.map(AdamState::new));
                (tensor, state.map(|s| s.momentum))
            }
            Decay::Decoupled(rate) => {
                let adamw: AdamW = AdamWConfig::new()
                    .with_beta_1(self.beta_1)
                    .with_beta_2(self.beta_2)
                    .with_epsilon(self.epsilon)
                    .with_weight_decay(rate)
                    .build();
                let (tensor, state) = adamw.step(lr, tensor, grad, momentum.map(AdamWState::new));
                (tensor, state.map(|s| s.momentum))
            }
        };
        (tensor, state.map(AdamState::new))
    }
}

#[backend_extension(Flex)]
pub trait AdamBackend: Backend {
    /// One step of `optimizer` at `time` (1 at the first step) on a weight, its gradient and
    /// its two moments; the new weight and moments.
    fn medkd_adam_step(
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        optimizer: FusedAdam,
        lr: f64,
        time: u32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// [`AdamBackend::medkd_adam_step`] at time 1, from zero moments that it creates as it goes.
    fn medkd_adam_first_step(
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        optimizer: FusedAdam,
        lr: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

impl AdamBackend for Flex {
    fn medkd_adam_step(
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        optimizer: FusedAdam,
        lr: f64,
        time: u32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let update = Update::new(&optimizer, lr, time as i32);
        let [mut weight, grad, mut moment_1, mut moment_2] = [weight, grad, moment_1, moment_2].map(dense);
        let (w, m, v) = (values_mut(&mut weight), values_mut(&mut moment_1), values_mut(&mut moment_2));
        let g = grad.as_slice::<f32>().expect("a dense f32 tensor");
        assert!(w.len() == g.len() && m.len() == g.len() && v.len() == g.len(), "a weight, its gradient and its moments have one shape");
        w.par_chunks_mut(VALUES_PER_TASK)
            .zip(m.par_chunks_mut(VALUES_PER_TASK))
            .zip(v.par_chunks_mut(VALUES_PER_TASK))
            .zip(g.par_chunks(VALUES_PER_TASK))
            .for_each(|(((w, m), v), g)| update.apply(w, m, v, g));
        (weight, moment_1, moment_2)
    }

    fn medkd_adam_first_step(
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        optimizer: FusedAdam,
        lr: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let update = Update::new(&optimizer, lr, 1);
        let shape = grad.shape().to_vec();
        let [mut weight, grad] = [weight, grad].map(dense);
        let w = values_mut(&mut weight);
        let g = grad.as_slice::<f32>().expect("a dense f32 tensor");
        assert_eq!(w.len(), g.len(), "a weight and its gradient have one shape");
        // Zeroing the moments chunk by chunk just before their update touches their fresh pages
        // once, on every thread; zeros_like's buffers were zeroed, then copied, on one thread
        // (0.17 s of the README demo's first step for a ResNet-18's 90 MB of moments).
        let (mut m, mut v) = (Vec::with_capacity(g.len()), Vec::with_capacity(g.len()));
        w.par_chunks_mut(VALUES_PER_TASK)
            .zip(m.spare_capacity_mut()[..g.len()].par_chunks_mut(VALUES_PER_TASK))
            .zip(v.spare_capacity_mut()[..g.len()].par_chunks_mut(VALUES_PER_TASK))
            .zip(g.par_chunks(VALUES_PER_TASK))
            .for_each(|(((w, m), v), g)| update.apply(w, zeroed(m), zeroed(v), g));
        // SAFETY: every chunk of both was zeroed above, so all `g.len()` entries are written.
        unsafe {
            m.set_len(g.len());
            v.set_len(g.len());
        }
        let moment = |values: Vec<f32>| FloatTensor::<Flex>::from_data(TensorData::new(values, shape.clone()));
        (weight, moment(m), moment(v))
    }
}

/// `chunk` set to zeros, as the moments are before the first step.
fn zeroed(chunk: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    chunk.fill(MaybeUninit::new(0.0));
    // SAFETY: every entry was written just above.
    unsafe { &mut *(chunk as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// The scalars of one step, computed once as burn computes them.
struct Update {
    beta_1: f32,
    beta_2: f32,
    /// `1 − β1` and `1 − β2`.
    factor_1: f32,
    factor_2: f32,
    kind: UpdateKind,
    /// The learning rate as the f32 burn's `mul_scalar` multiplies by.
    lr: f32,
}

enum UpdateKind {
    /// burn's `Adam`: `w − lr · (m · c) / (√v + ε · √(1 − β2^t))`, `c = √(1 − β2^t) / (1 − β1^t)`.
    Adam { penalty: f32, combined_factor: f32, epsilon: f32 },
    /// burn's `AdamW`: `w · (1 − lr · rate) − lr · (m / (1 − β1^t)) / (√(v / (1 − β2^t)) + ε)`.
    AdamW { keep: Option<f32>, correction_1: f32, correction_2: f32, epsilon: f32 },
}

impl Update {
    fn new(optimizer: &FusedAdam, lr: f64, time: i32) -> Update {
        let (beta_1, beta_2) = (optimizer.beta_1, optimizer.beta_2);
        let kind = match optimizer.decay {
            Decay::L2(penalty) => {
                let bias_correction2_sqrt = (1.0 - beta_2.powi(time)).sqrt();
                let combined_factor = bias_correction2_sqrt / (1.0 - beta_1.powi(time));
                UpdateKind::Adam { penalty, combined_factor, epsilon: optimizer.epsilon * bias_correction2_sqrt }
            }
            Decay::Decoupled(rate) => {
                let decay_rate = lr * rate as f64;
                UpdateKind::AdamW {
                    keep: (decay_rate != 0.0).then(|| (1.0 - decay_rate) as f32),
                    correction_1: 1.0 - beta_1.powi(time),
                    correction_2: 1.0 - beta_2.powi(time),
                    epsilon: optimizer.epsilon,
                }
            }
        };
        Update { beta_1, beta_2, factor_1: 1.0 - beta_1, factor_2: 1.0 - beta_2, kind, lr: lr as f32 }
    }

    /// Updates weights `w` and moments `m`, `v` in place from gradients `g`.
    fn apply(&self, w: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32]) {
        let moments = |m: &mut f32, v: &mut f32, g: f32| {
            *m = *m * self.beta_1 + g * self.factor_1;
            *v = *v * self.beta_2 + (g * g) * self.factor_2;
        };
        match self.kind {
            UpdateKind::Adam { penalty, combined_factor, epsilon } => {
                for (((w, m), v), &g) in w.iter_mut().zip(m).zip(v).zip(g) {
                    let g = if penalty > 0.0 { *w * penalty + g } else { g };
                    moments(m, v, g);
                    *w -= (*m * combined_factor) / (v.sqrt() + epsilon) * self.lr;
                }
            }
            UpdateKind::AdamW { keep, correction_1, correction_2, epsilon } => {
                for (((w, m), v), &g) in w.iter_mut().zip(m).zip(v).zip(g) {
                    moments(m, v, g);
                    let delta = (*m / correction_1) / ((*v / correction_2).sqrt() + epsilon);
                    let decayed = match keep {
                        Some(keep) => *w * keep,
                        None => *w,
                    };
                    *w = decayed - delta * self.lr;
                }
            }
        }
    }
}

impl Optimizer for FusedAdam {
    type State<const D: usize> = AdamState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        if !on_flex(&tensor) || state.as_ref().is_some_and(|s| s.momentum.max_moment_2.is_some()) {
            return self.burn_step(lr, tensor, grad, state);
        }
        let (weight, grad) = (tensor.into_dispatch(), grad.into_dispatch());
        // The first step starts from zero moments, as burn's: 0 · β + g · (1 − β).
        let (time, (weight, moment_1, moment_2)) = match state {
            Some(state) => {
                let (moment_1, moment_2) = (state.momentum.moment_1.into_dispatch(), state.momentum.moment_2.into_dispatch());
                let time = state.momentum.time + 1;
                (time, <Dispatch as AdamBackend>::medkd_adam_step(weight, grad, moment_1, moment_2, *self, lr, time as u32))
            }
            None => (1, <Dispatch as AdamBackend>::medkd_adam_first_step(weight, grad, *self, lr)),
        };
        let momentum = AdaptiveMomentumState::new(time, Tensor::from_dispatch(moment_1), Tensor::from_dispatch(moment_2));
        (Tensor::from_dispatch(weight), Some(AdamState::new(momentum)))
    }

    fn to_device<const D: usize>(mut state: Self::State<D>, device: &Device) -> Self::State<D> {
        state.momentum = state.momentum.to_device(device);
        state
    }
}

#[cfg(test)]
mod tests {
    use burn::optim::ModuleOptimizer;

    use super::super::against_burn::assert_steps_as_burns;
    use super::*;

    /// Adam and AdamW, with and without weight decay: medkd's steps are burn's to the bit, and
    /// an optimizer state saved by burn's resumes in medkd's and the reverse.
    #[test]
    fn steps_are_burns_to_the_bit_and_states_load_in_either() {
        let cases: [(FusedAdam, fn() -> ModuleOptimizer); 4] = [
            (FusedAdam::adam([0.9, 0.999], 1e-8, 0.0), || AdamConfig::new().with_epsilon(1e-8).init()),
            (FusedAdam::adam([0.8, 0.99], 1e-6, 0.01), || {
                AdamConfig::new()
                    .with_beta_1(0.8)
                    .with_beta_2(0.99)
                    .with_epsilon(1e-6)
                    .with_weight_decay(Some(WeightDecayConfig { penalty: 0.01 }))
                    .init()
            }),
            (FusedAdam::adamw([0.9, 0.999], 1e-8, 0.05), || AdamWConfig::new().with_epsilon(1e-8).with_weight_decay(0.05).init()),
            (FusedAdam::adamw([0.9, 0.95], 1e-8, 0.0), || {
                AdamWConfig::new().with_beta_2(0.95).with_epsilon(1e-8).with_weight_decay(0.0).init()
            }),
        ];
        for (ours, burns) in cases {
            assert_steps_as_burns(|| ModuleOptimizer::from(ours), burns, &format!("{ours:?}"));
        }
    }
}

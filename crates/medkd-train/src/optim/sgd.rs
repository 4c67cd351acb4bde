//! SGD with momentum in one pass over each parameter on the `flex` CPU backend.
//!
//! Written by hand for the reason `adam` is: burn 0.22.1's `Sgd` composes a momentum step from
//! five to seven element-wise operations, each a pass into a new buffer. Each element's update
//! here is the same f32 operations in the same order as burn's (weight decay `w·λ + g`, velocity
//! `g + v·μ`, Nesterov `v·μ + g`, then `w − d·lr`), so the weights come out bit for bit as
//! burn's would. burn's `SgdState` cannot be taken apart outside burn (its velocity is private),
//! so the state is medkd's own [`SgdVelocity`], stored under burn's names: optimizer files load
//! either way. Other backends and dtypes, and SGD without momentum, take the same steps as
//! tensor operations.

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, backend_extension};
use burn::optim::momentum::MomentumState;
use burn::optim::{LearningRate, Optimizer, RecordState, SgdState, StateSink, StateSource, join_path};
use burn::tensor::{Device, Tensor};
use rayon::prelude::*;

use super::flex::{VALUES_PER_TASK, dense, on_flex, values_mut};

/// torch.optim.SGD's update (dampening 0).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FusedSgd {
    momentum: f32,
    nesterov: bool,
    /// The L2 penalty `λ·w` added to the gradient.
    weight_decay: f32,
}

impl FusedSgd {
    pub fn new(momentum: f32, nesterov: bool, weight_decay: f32) -> FusedSgd {
        FusedSgd { momentum, nesterov, weight_decay }
    }

    /// The step as burn's `Sgd` takes it, one tensor operation at a time.
    fn tensor_step<const D: usize>(
        &self,
        lr: LearningRate,
        weight: Tensor<D>,
        grad: Tensor<D>,
        velocity: Option<Tensor<D>>,
    ) -> (Tensor<D>, Option<Tensor<D>>) {
        let grad = if self.weight_decay > 0.0 { weight.clone().mul_scalar(self.weight_decay).add(grad) } else { grad };
        if self.momentum == 0.0 {
            return (weight - grad.mul_scalar(lr), None);
        }
        let velocity = match velocity {
            Some(velocity) => grad.clone().add(velocity.mul_scalar(self.momentum)),
            None => grad.clone(),
        };
        let direction = if self.nesterov { velocity.clone().mul_scalar(self.momentum).add(grad) } else { velocity.clone() };
        (weight - direction.mul_scalar(lr), Some(velocity))
    }
}

/// One parameter's momentum buffer, flattened under burn's `SgdState` names
/// (`momentum.velocity`), so a state saved by burn's `Sgd` loads here and the reverse.
#[derive(Clone)]
pub struct SgdVelocity<const D: usize> {
    velocity: Tensor<D>,
}

impl<const D: usize> RecordState for SgdVelocity<D> {
    fn state_flatten(&self, prefix: &str, out: &mut StateSink) {
        SgdState::new(Some(MomentumState::new(self.velocity.clone()))).state_flatten(prefix, out);
    }

    fn state_unflatten(prefix: &str, src: &mut StateSource, device: &Device) -> Option<Self> {
        let data = src.take_tensor(&join_path(prefix, "momentum"), "velocity")?;
        Some(SgdVelocity { velocity: Tensor::from_data(data, device) })
    }
}

#[backend_extension(Flex)]
pub trait SgdBackend: Backend {
    /// One momentum step on a weight and its gradient; `velocity` is the buffer before it, ignored
    /// at the `first` step (where the velocity becomes the gradient). The new weight and velocity.
    #[allow(clippy::too_many_arguments)]
    fn medkd_sgd_step(
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        velocity: FloatTensor<Self>,
        first: bool,
        lr: f64,
        momentum: f32,
        nesterov: bool,
        weight_decay: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
}

impl SgdBackend for Flex {
    fn medkd_sgd_step(
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        velocity: FloatTensor<Self>,
        first: bool,
        lr: f64,
        momentum: f32,
        nesterov: bool,
        weight_decay: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        // burn multiplies by the learning rate as an f32.
        let lr = lr as f32;
        let [mut weight, grad, mut velocity] = [weight, grad, velocity].map(dense);
        let (w, v) = (values_mut(&mut weight), values_mut(&mut velocity));
        let g = grad.as_slice::<f32>().expect("a dense f32 tensor");
        assert!(w.len() == g.len() && v.len() == g.len(), "a weight, its gradient and its velocity have one shape");
        w.par_chunks_mut(VALUES_PER_TASK).zip(v.par_chunks_mut(VALUES_PER_TASK)).zip(g.par_chunks(VALUES_PER_TASK)).for_each(
            |((w, v), g)| {
                for ((w, v), &g) in w.iter_mut().zip(v).zip(g) {
                    let g = if weight_decay > 0.0 { *w * weight_decay + g } else { g };
                    *v = if first { g } else { g + *v * momentum };
                    let direction = if nesterov { *v * momentum + g } else { *v };
                    *w -= direction * lr;
                }
            },
        );
        (weight, velocity)
    }
}

impl Optimizer for FusedSgd {
    type State<const D: usize> = SgdVelocity<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let velocity = state.map(|s| s.velocity);
        if !on_flex(&tensor) || self.momentum == 0.0 {
            let (tensor, velocity) = self.tensor_step(lr, tensor, grad, velocity);
            return (tensor, velocity.map(|velocity| SgdVelocity { velocity }));
        }
        let first = velocity.is_none();
        let velocity = velocity.unwrap_or_else(|| tensor.zeros_like());
        let (weight, velocity) = <Dispatch as SgdBackend>::medkd_sgd_step(
            tensor.into_dispatch(),
            grad.into_dispatch(),
            velocity.into_dispatch(),
            first,
            lr,
            self.momentum,
            self.nesterov,
            self.weight_decay,
        );
        (Tensor::from_dispatch(weight), Some(SgdVelocity { velocity: Tensor::from_dispatch(velocity) }))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        SgdVelocity { velocity: state.velocity.to_device(device) }
    }
}

#[cfg(test)]
mod tests {
    use burn::optim::decay::WeightDecayConfig;
    use burn::optim::momentum::MomentumConfig;
    use burn::optim::{ModuleOptimizer, SgdConfig};

    use super::super::against_burn::assert_steps_as_burns;
    use super::*;

    /// With and without weight decay and Nesterov momentum, and without momentum: medkd's steps
    /// are burn's to the bit (dampening 0, torch's), and an optimizer state saved by burn's
    /// resumes in medkd's and the reverse.
    #[test]
    fn steps_are_burns_to_the_bit_and_states_load_in_either() {
        for (momentum, nesterov, weight_decay) in [(0.9, false, 0.0), (0.9, true, 1e-3), (0.8, false, 5e-4), (0.0, false, 1e-3)] {
            let ours = FusedSgd::new(momentum, nesterov, weight_decay);
            let burns = || {
                SgdConfig::new()
                    .with_weight_decay((weight_decay > 0.0).then_some(WeightDecayConfig { penalty: weight_decay }))
                    .with_momentum((momentum > 0.0).then_some(MomentumConfig { momentum: momentum as f64, dampening: 0.0, nesterov }))
                    .init()
            };
            assert_steps_as_burns(|| ModuleOptimizer::from(ours), burns, &format!("{ours:?}"));
        }
    }
}

//! The optimizer a run's config names (`build_optimizer`), with medkd's one-pass SGD, Adam and
//! AdamW on the `flex` backend.

use burn::module::{Module, ModuleVisitor, Param, ParamGroup, ParamId};
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{ModuleOptimizer, Optimizer};
use burn::prelude::*;

use crate::config::OptimizerConfig;
use adam::FusedAdam;
use sgd::FusedSgd;

pub mod adam;
#[cfg(test)]
mod against_burn;
mod flex;
pub mod sgd;

/// Builds the optimizer with torch's semantics for the same settings, for `module`'s
/// parameters. Without `decay_biases_and_norms`, every 1-D parameter (biases, norm scales and
/// shifts) learns without weight decay, as DINO's and timm's parameter groups; with `clip`, each
/// parameter's gradient is scaled down to at most that L2 norm (DINO's per-parameter
/// `clip_gradients`). See `train.decay_biases_and_norms` and `train.grad_clip_norm`.
pub fn build_optimizer<M: Module>(
    config: &OptimizerConfig,
    decay_biases_and_norms: bool,
    clip: Option<f64>,
    module: &M,
) -> ModuleOptimizer {
    let undecayed = if decay_biases_and_norms { Vec::new() } else { one_dimensional(module) };
    match config {
        // medkd's one-pass SGD, Adam and AdamW: the same updates as burn's (see `sgd`, `adam`),
        // with torch's semantics (SGD's dampening is 0; burn's MomentumConfig defaults to 0.1).
        OptimizerConfig::Sgd { momentum, nesterov, weight_decay, .. } => {
            let sgd = |decay: f64| FusedSgd::new(*momentum as f32, *nesterov, decay as f32);
            grouped(sgd(*weight_decay), sgd(0.0), undecayed, clip)
        }
        OptimizerConfig::Adam { betas, eps, weight_decay, .. } => {
            let adam = |decay: f64| FusedAdam::adam([betas[0] as f32, betas[1] as f32], *eps as f32, decay as f32);
            grouped(adam(*weight_decay), adam(0.0), undecayed, clip)
        }
        OptimizerConfig::AdamW { betas, eps, weight_decay, .. } => {
            let adamw = |decay: f64| FusedAdam::adamw([betas[0] as f32, betas[1] as f32], *eps as f32, decay as f32);
            grouped(adamw(*weight_decay), adamw(0.0), undecayed, clip)
        }
    }
}

/// `decayed` for every parameter but `undecayed_ids`, which get `undecayed`; both clipped.
fn grouped<O: Optimizer + 'static>(decayed: O, undecayed: O, undecayed_ids: Vec<ParamId>, clip: Option<f64>) -> ModuleOptimizer {
    let clipping = || clip.map(|norm| GradientClippingConfig::Norm(norm as f32).init());
    let mut optimizer = ModuleOptimizer::from(decayed);
    if let Some(clipping) = clipping() {
        optimizer = optimizer.with_grad_clipping(clipping);
    }
    if !undecayed_ids.is_empty() {
        optimizer = optimizer.with_group(ParamGroup::from_ids(undecayed_ids), undecayed, clipping());
    }
    optimizer
}

/// The ids of a module's 1-D float parameters.
fn one_dimensional<M: Module>(module: &M) -> Vec<ParamId> {
    struct Collect(Vec<ParamId>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if D == 1 {
                self.0.push(param.id);
            }
        }
    }
    let mut collect = Collect(Vec::new());
    module.visit(&mut collect);
    collect.0
}

#[cfg(test)]
mod tests {
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::GradientsParams;

    use super::*;

    fn values<const D: usize>(param: &Param<Tensor<D>>) -> Vec<f32> {
        param.val().into_data().try_to_vec::<f32>().unwrap()
    }

    /// One step on `loss_of(layer)` with `config`; the weight and bias before and after.
    fn step(config: &OptimizerConfig, decay_biases_and_norms: bool, clip: Option<f64>, scale: f32) -> [Vec<f32>; 4] {
        let device = medkd_models::test_device().autodiff();
        let layer: Linear = LinearConfig::new(3, 2).init(&device);
        let before = [values(&layer.weight), values(layer.bias.as_ref().unwrap())];
        let mut optimizer = build_optimizer(config, decay_biases_and_norms, clip, &layer);
        let loss = (layer.weight.val().sum() + layer.bias.as_ref().unwrap().val().sum()).mul_scalar(scale);
        let grads = GradientsParams::from_grads(loss.backward(), &layer);
        let layer = optimizer.step(config.lr(), layer, grads);
        let [weight, bias] = before;
        [weight, bias, values(&layer.weight), values(layer.bias.as_ref().unwrap())]
    }

    fn change(before: &[f32], after: &[f32]) -> f32 {
        before.iter().zip(after).map(|(b, a)| (a - b) * (a - b)).sum::<f32>().sqrt()
    }

    /// Each parameter's gradient is clipped to the norm on its own: with SGD at lr 1, the weight
    /// (6 entries) and the bias (2) each move by exactly 1 instead of 1000·√6 and 1000·√2.
    #[test]
    fn gradients_are_clipped_per_parameter() {
        let sgd = OptimizerConfig::Sgd { lr: 1.0, momentum: 0.0, nesterov: false, weight_decay: 0.0 };
        let [weight, bias, weight_after, bias_after] = step(&sgd, true, Some(1.0), 1000.0);
        assert!((change(&weight, &weight_after) - 1.0).abs() < 1e-4);
        assert!((change(&bias, &bias_after) - 1.0).abs() < 1e-4);
        let [weight, _, weight_after, _] = step(&sgd, true, None, 1000.0);
        assert!((change(&weight, &weight_after) - 1000.0 * 6f32.sqrt()).abs() < 1e-1);
    }

    /// With zero gradients AdamW only decays: weights shrink by `1 − lr · wd`, and the bias too
    /// unless biases and norms are left undecayed.
    #[test]
    fn biases_and_norms_can_learn_without_weight_decay() {
        let adamw = OptimizerConfig::AdamW { lr: 0.1, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.5 };
        for decay_biases in [true, false] {
            let [weight, bias, weight_after, bias_after] = step(&adamw, decay_biases, None, 0.0);
            assert!(bias.iter().all(|b| b.abs() > 1e-6), "a nonzero bias shows whether it decays: {bias:?}");
            for (b, a) in weight.iter().zip(&weight_after) {
                assert!((a - b * 0.95).abs() < 1e-6, "weight {b} -> {a}");
            }
            let factor = if decay_biases { 0.95 } else { 1.0 };
            for (b, a) in bias.iter().zip(&bias_after) {
                assert!((a - b * factor).abs() < 1e-6, "bias {b} -> {a} (decayed: {decay_biases})");
            }
        }
    }
}

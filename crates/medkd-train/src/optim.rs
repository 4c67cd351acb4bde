use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, AdamWConfig, ModuleOptimizer, SgdConfig};

use crate::config::OptimizerConfig;

/// Builds burn's optimizer with torch's semantics for the same settings.
pub fn build_optimizer(config: &OptimizerConfig) -> ModuleOptimizer {
    let l2 = |decay: f64| (decay > 0.0).then(|| WeightDecayConfig { penalty: decay as f32 });
    match config {
        OptimizerConfig::Sgd { momentum, nesterov, weight_decay, .. } => SgdConfig::new()
            .with_weight_decay(l2(*weight_decay))
            // torch's dampening is 0; burn's MomentumConfig defaults to 0.1.
            .with_momentum((*momentum > 0.0).then(|| MomentumConfig { momentum: *momentum, dampening: 0.0, nesterov: *nesterov }))
            .init(),
        OptimizerConfig::Adam { betas, eps, weight_decay, .. } => AdamConfig::new()
            .with_beta_1(betas[0] as f32)
            .with_beta_2(betas[1] as f32)
            .with_epsilon(*eps as f32)
            .with_weight_decay(l2(*weight_decay))
            .init(),
        OptimizerConfig::AdamW { betas, eps, weight_decay, .. } => AdamWConfig::new()
            .with_beta_1(betas[0] as f32)
            .with_beta_2(betas[1] as f32)
            .with_epsilon(*eps as f32)
            .with_weight_decay(*weight_decay as f32)
            .init(),
    }
}

//! Tests' check that a one-pass optimizer steps as burn's does, to the bit.

use burn::nn::{Linear, LinearConfig};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Tensor, TensorData};

fn bits(layer: &Linear) -> Vec<u32> {
    let weight = layer.weight.val().into_data().try_to_vec::<f32>().unwrap();
    let bias = layer.bias.as_ref().unwrap().val().into_data().try_to_vec::<f32>().unwrap();
    weight.iter().chain(&bias).map(|v| v.to_bits()).collect()
}

/// How many of two layers' values differ in any bit.
fn differing(a: &Linear, b: &Linear) -> usize {
    bits(a).iter().zip(bits(b)).filter(|(a, b)| **a != *b).count()
}

/// `steps` steps of `optimizer` on a layer of 60,000 weights (two parallel tasks and a ragged
/// one) and 200 biases, from the same start and inputs each time.
fn train(mut optimizer: ModuleOptimizer, mut layer: Linear, steps: usize) -> (Linear, ModuleOptimizer) {
    let device = layer.weight.val().device();
    for step in 0..steps {
        // Inputs from a formula, not the backend's generator, which other tests share.
        let values: Vec<f32> = (0..8 * 300).map(|i| ((i * 7 + step * 13) as f32 * 0.37).sin() * (step as f32 + 1.0)).collect();
        let x = Tensor::<2>::from_data(TensorData::new(values, [8, 300]), &device);
        let loss = layer.forward(x).powf_scalar(2.0).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &layer);
        layer = optimizer.step(1e-2 / (step as f64 + 1.0), layer, grads);
    }
    (layer, optimizer)
}

/// Five steps of `ours` give the weights of five of `burns` to the bit, and a sixth step after
/// loading each one's saved state into the other gives the same weights both ways.
pub fn assert_steps_as_burns(ours: impl Fn() -> ModuleOptimizer, burns: impl Fn() -> ModuleOptimizer, case: &str) {
    let device = medkd_models::test_device().autodiff();
    let layer: Linear = LinearConfig::new(300, 200).init(&device);
    let start = bits(&layer);
    let (by_burn, burn_optimizer) = train(burns(), layer.clone(), 5);
    let (by_medkd, medkd_optimizer) = train(ours(), layer.clone(), 5);
    assert_eq!(bits(&layer), start, "{case}: the starting layer is untouched");
    assert_ne!(bits(&by_medkd), start, "{case}: the weights moved");
    assert_eq!(differing(&by_medkd, &by_burn), 0, "{case}: values where medkd's steps are not burn's");

    let reload = |saved: ModuleOptimizer, into: ModuleOptimizer| into.from_bytes(saved.into_bytes().unwrap()).unwrap();
    let (burn_after_ours, _) = train(reload(medkd_optimizer, burns()), by_medkd.clone(), 1);
    let (ours_after_burn, _) = train(reload(burn_optimizer, ours()), by_burn.clone(), 1);
    assert_eq!(differing(&burn_after_ours, &ours_after_burn), 0, "{case}: values where the resumed states differ");
}

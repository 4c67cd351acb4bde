//! medkd's BatchNorm kernels against burn's own `BatchNorm::forward`, the plain implementation,
//! on the same inputs: training output, running statistics, the three gradients, and inference.

use burn::module::Param;
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::prelude::*;
use burn::tensor::Distribution;

/// (batch, channels, height, width): a typical map, a 1x1 map (a ResNet's last stage at 32 px),
/// odd sizes with one sample per batch element count not a multiple of 8.
const SHAPES: [[usize; 4]; 4] = [[4, 3, 5, 5], [6, 8, 1, 1], [3, 5, 7, 6], [2, 2, 16, 16]];

/// Two BatchNorms with the same random gamma, beta and running statistics.
fn twins(channels: usize, device: &Device) -> (BatchNorm, BatchNorm) {
    let make = || {
        let mut bn = BatchNormConfig::new(channels).init(device);
        let values = |seed: usize, offset: f32| -> Tensor<1> {
            let data: Vec<f32> = (0..channels).map(|c| offset + ((c * 7 + seed) as f32 * 0.61).sin()).collect();
            Tensor::from_data(TensorData::new(data, [channels]), device)
        };
        bn.gamma = Param::from_tensor(values(1, 1.0));
        bn.beta = Param::from_tensor(values(2, 0.0));
        bn.running_mean.update(values(3, 0.0));
        bn.running_var.update(values(4, 1.5));
        bn
    };
    (make(), make())
}

fn assert_close<const D: usize>(ours: Tensor<D>, reference: Tensor<D>, what: &str) {
    let (ours, reference) = (ours.into_data().try_to_vec::<f32>().unwrap(), reference.into_data().try_to_vec::<f32>().unwrap());
    assert_eq!(ours.len(), reference.len(), "{what}: sizes differ");
    let scale = reference.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    for (i, (a, b)) in ours.iter().zip(&reference).enumerate() {
        assert!((a - b).abs() <= 2e-5 * scale, "{what}[{i}]: medkd {a}, burn {b}");
    }
}

#[test]
fn training_output_statistics_and_gradients_match_burns_batch_norm() {
    let device = Device::flex().autodiff();
    for shape in SHAPES {
        let what = format!("{shape:?}");
        let (ours, reference) = twins(shape[1], &device);
        // An input far from zero mean, as after a ReLU, so centring matters.
        let x = Tensor::<4>::random(shape, Distribution::Normal(3.0, 2.0), &device);
        let weights = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let run = |bn: &BatchNorm, medkd: bool| {
            let x = x.clone().require_grad();
            let y = if medkd { medkd_models::batch_norm(bn, x.clone()) } else { bn.forward(x.clone()) };
            let grads = (y.clone() * weights.clone()).sum().backward();
            let gradients = (x.grad(&grads).unwrap(), bn.gamma.val().grad(&grads).unwrap(), bn.beta.val().grad(&grads).unwrap());
            (y.inner(), gradients)
        };
        let (y, (dx, dgamma, dbeta)) = run(&ours, true);
        let (y_ref, (dx_ref, dgamma_ref, dbeta_ref)) = run(&reference, false);
        assert_close(y, y_ref, &format!("output {what}"));
        assert_close(dx, dx_ref, &format!("input gradient {what}"));
        assert_close(dgamma, dgamma_ref, &format!("gamma gradient {what}"));
        assert_close(dbeta, dbeta_ref, &format!("beta gradient {what}"));
        assert_close(ours.running_mean.value(), reference.running_mean.value(), &format!("running mean {what}"));
        assert_close(ours.running_var.value(), reference.running_var.value(), &format!("running variance {what}"));
    }
}

#[test]
fn inference_uses_the_running_statistics_like_burn() {
    for device in [Device::flex(), Device::flex().autodiff()] {
        for shape in SHAPES {
            let (ours, reference) = twins(shape[1], &device);
            let ours = if device.is_autodiff() { ours.no_grad().freeze() } else { ours };
            let reference = if device.is_autodiff() { reference.no_grad().freeze() } else { reference };
            let x = Tensor::<4>::random(shape, Distribution::Normal(1.0, 2.0), &device);
            assert_close(medkd_models::batch_norm(&ours, x.clone()), reference.forward(x), &format!("{shape:?} on {device:?}"));
        }
    }
}

#[test]
fn training_gradients_are_bit_identical_across_runs() {
    let device = Device::flex().autodiff();
    let (bn, _) = twins(16, &device);
    let x = Tensor::<4>::random([64, 16, 9, 9], Distribution::Normal(0.5, 1.0), &device);
    let gradients = || {
        let x = x.clone().require_grad();
        let y = medkd_models::batch_norm(&bn, x.clone());
        let grads = y.powf_scalar(3.0).sum().backward();
        (x.grad(&grads).unwrap().into_data(), bn.gamma.val().grad(&grads).unwrap().into_data())
    };
    let first = gradients();
    for _ in 0..3 {
        assert_eq!(gradients(), first);
    }
}

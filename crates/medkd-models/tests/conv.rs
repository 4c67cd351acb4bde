//! medkd's convolution kernels (dense and depthwise) against burn's own `conv2d`, the plain
//! implementation, on the same inputs: outputs and both gradients.

use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::module::conv2d as burn_conv2d;
use burn::tensor::ops::ConvOptions;

/// (batch, in channels, side, out channels, kernel, stride, padding)
const SHAPES: [(usize, usize, usize, usize, usize, usize, usize); 11] = [
    (3, 5, 9, 4, 3, 1, 1),   // one chunk, 3x3 same padding
    (5, 3, 17, 6, 7, 2, 3),  // ResNet stem geometry, odd side
    (70, 4, 4, 8, 3, 1, 1),  // many chunks with a short last one (1024 columns = 64 samples)
    (4, 6, 8, 5, 1, 2, 0),   // strided 1x1 (ResNet downsample)
    (2, 3, 6, 2, 3, 2, 0),   // no padding, stride 2
    (2, 8, 2, 16, 3, 1, 1),  // 2x2 map, padding larger than half the map
    (300, 2, 2, 3, 1, 1, 0), // tiny planes: 512 samples' worth of columns per chunk
    (2, 4, 1, 3, 3, 1, 1),   // 1x1 map under a padded 3x3 (ResNet's last stage at 28-32 px)
    (3, 3, 7, 4, 5, 1, 2),   // 5x5 same padding: columns shifted by 2
    (2, 2, 32, 3, 1, 1, 0),  // 1x1 on a 32x32 map: one sample per gemm, no im2col copy
    (1, 3, 6, 2, 3, 1, 1),   // batch 1: the output written by the gemm itself
];

/// Depthwise cases (channels = groups): (batch, channels, side, kernel, stride, padding)
const DEPTHWISE: [(usize, usize, usize, usize, usize, usize); 3] = [
    (3, 5, 9, 3, 1, 1), // MobileNetV2's stride-1 block
    (4, 6, 8, 3, 2, 1), // its stride-2 block
    (2, 3, 7, 5, 2, 0), // odd side, no padding
];

fn conv(channels: usize, out: usize, kernel: usize, stride: usize, padding: usize, groups: usize, bias: bool, device: &Device) -> Conv2d {
    Conv2dConfig::new([channels, out], [kernel; 2])
        .with_stride([stride; 2])
        .with_padding(PaddingConfig2d::Explicit(padding, padding, padding, padding))
        .with_groups(groups)
        .with_bias(bias)
        .init(device)
}

fn assert_close(ours: Tensor<4>, reference: Tensor<4>, what: &str) {
    let (ours, reference) = (ours.into_data().try_to_vec::<f32>().unwrap(), reference.into_data().try_to_vec::<f32>().unwrap());
    assert_eq!(ours.len(), reference.len(), "{what}: sizes differ");
    let scale = reference.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    for (i, (a, b)) in ours.iter().zip(&reference).enumerate() {
        assert!((a - b).abs() <= 1e-4 * scale, "{what}[{i}]: medkd {a}, burn {b}");
    }
}

/// medkd's `conv2d` against burn's: output, input gradient and weight gradient, under an output
/// gradient that weighs every position differently.
fn check(layer: &Conv2d, input_shape: [usize; 4], what: &str) {
    let device = Device::flex().autodiff();
    let x = Tensor::<4>::random(input_shape, Distribution::Normal(0.0, 1.0), &device).require_grad();
    let ours = medkd_models::conv2d(layer, x.clone());
    let weights = Tensor::<4>::random(ours.dims(), Distribution::Normal(0.0, 1.0), &device);
    let grads = (ours.clone() * weights.clone()).sum().backward();
    let (dx, dw) = (x.grad(&grads).unwrap(), layer.weight.val().grad(&grads).unwrap());

    let padding = match layer.padding {
        PaddingConfig2d::Explicit(p, ..) => p,
        _ => unreachable!("the tests use explicit padding"),
    };
    let options = ConvOptions::new(layer.stride, [padding; 2], [1, 1], layer.groups);
    let reference = burn_conv2d(x.clone(), layer.weight.val(), layer.bias.as_ref().map(|b| b.val()), options);
    let grads = (reference.clone() * weights).sum().backward();
    assert_close(ours, reference, &format!("{what} output"));
    assert_close(Tensor::from_inner(dx), Tensor::from_inner(x.grad(&grads).unwrap()), &format!("{what} input gradient"));
    assert_close(Tensor::from_inner(dw), Tensor::from_inner(layer.weight.val().grad(&grads).unwrap()), &format!("{what} weight gradient"));
}

#[test]
fn forward_and_gradients_match_burns_convolution() {
    let device = Device::flex().autodiff();
    for (case, &(n, c, side, o, k, stride, padding)) in SHAPES.iter().enumerate() {
        let layer = conv(c, o, k, stride, padding, 1, case % 2 == 0, &device);
        check(&layer, [n, c, side, side], &format!("case {case} {:?}", SHAPES[case]));
    }
}

#[test]
fn depthwise_forward_and_gradients_match_burns_convolution() {
    let device = Device::flex().autodiff();
    for (case, &(n, c, side, k, stride, padding)) in DEPTHWISE.iter().enumerate() {
        let layer = conv(c, c, k, stride, padding, c, false, &device);
        check(&layer, [n, c, side, side], &format!("depthwise case {case} {:?}", DEPTHWISE[case]));
    }
}

#[test]
fn inference_device_matches_and_other_convolutions_fall_back() {
    let device = Device::flex();
    let x = Tensor::<4>::random([3, 4, 10, 10], Distribution::Normal(0.0, 1.0), &device);
    let layer = conv(4, 6, 3, 2, 1, 1, true, &device);
    assert_close(medkd_models::conv2d(&layer, x.clone()), layer.forward(x.clone()), "inference");
    // Grouped (not depthwise) and dilated convolutions are burn's own.
    let grouped = Conv2dConfig::new([4, 4], [3, 3]).with_groups(2).init(&device);
    assert_close(medkd_models::conv2d(&grouped, x.clone()), grouped.forward(x.clone()), "grouped");
    let dilated = Conv2dConfig::new([4, 2], [3, 3]).with_dilation([2, 2]).init(&device);
    assert_close(medkd_models::conv2d(&dilated, x.clone()), dilated.forward(x), "dilated");
}

#[test]
fn gradients_are_bit_identical_across_runs() {
    // 600 samples of 2x2 maps: several chunks whose weight gradients are summed. The sum must not
    // depend on which thread finishes first, or the same seed would not give the same run.
    let device = Device::flex().autodiff();
    let layer = conv(16, 8, 3, 1, 1, 1, false, &device);
    let x = Tensor::<4>::random([600, 16, 2, 2], Distribution::Normal(0.0, 1.0), &device);
    let weight_gradient = || {
        let grads = medkd_models::conv2d(&layer, x.clone()).powf_scalar(2.0).sum().backward();
        layer.weight.val().grad(&grads).unwrap().into_data()
    };
    let first = weight_gradient();
    for _ in 0..5 {
        assert_eq!(weight_gradient(), first);
    }
}

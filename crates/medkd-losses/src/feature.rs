use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;

/// `x / max(||x||_2, 1e-12)` along `dim`, as `F.normalize`. The clamp is applied to the squared
/// norm before the square root, so an all-zero vector gets a zero gradient rather than NaN.
pub fn l2_normalize<const D: usize>(x: Tensor<D>, dim: usize) -> Tensor<D> {
    let norm = x.clone().square().sum_dim(dim).clamp_min(1e-24).sqrt();
    x / norm
}

fn mean_squared_error<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> Tensor<1> {
    (a - b).square().mean()
}

/// Zagoruyko & Komodakis (2017) attention transfer: with `a(F) = normalize(mean_c(F^2))`, the
/// spatial attention map flattened over `H x W` and L2-normalized per sample, the loss is
/// `mean_{n,hw} (a(F_s) - a(F_t))^2`, as szagoruyko/attention-transfer's
/// `(at(x) - at(y)).pow(2).mean()`.
///
/// Channel counts may differ; the spatial sizes must match (resizing is the caller's job).
pub fn attention_transfer(student_map: Tensor<4>, teacher_map: Tensor<4>) -> Tensor<1> {
    let attention = |map: Tensor<4>| {
        let [n, _, h, w] = map.dims();
        l2_normalize(map.square().mean_dim(1).reshape([n, h * w]), 1)
    };
    let (student_hw, teacher_hw) = (&student_map.dims()[2..], &teacher_map.dims()[2..]);
    assert_eq!(student_hw, teacher_hw, "attention transfer needs equal spatial sizes");
    mean_squared_error(attention(student_map), attention(teacher_map))
}

/// FitNets (Romero et al. 2015) hint loss: `mean (r(F_s) - F_t)^2` over all entries, where
/// `r(F_s)` is the student map already passed through a regressor such as [`ConvRegressor`].
pub fn hint_mse(student_regressed: Tensor<4>, teacher_map: Tensor<4>) -> Tensor<1> {
    assert_eq!(student_regressed.dims(), teacher_map.dims(), "hint needs the regressed student map in the teacher's shape");
    mean_squared_error(student_regressed, teacher_map)
}

/// SSD-KD's (Wang et al. 2023) channel-relation term `cr_dist`: per instance the `C x C` Gram
/// matrix `G = F F^T / (C H W)` of `F` (`C x HW`), and the loss `sqrt(mean (G_s - G_t)^2)`.
/// The student map must already be regressed to the teacher's shape.
///
/// On maps with fewer positions than channels (a ResNet-50's last map is 2048 x 2x2 at 64 px)
/// the squared distance comes from `HW x HW` products instead, by the identity
/// `||A Aᵀ - B Bᵀ||² = ||AᵀA||² - 2 ||AᵀB||² + ||BᵀB||²`: the `C x C` Gram matrices of a batch
/// of 128 such maps take 2 GB and dominated D-KD's and SSD-KD's steps (BENCHMARKS.md).
pub fn channel_gram_rmse(student_map: Tensor<4>, teacher_map: Tensor<4>) -> Tensor<1> {
    assert_eq!(student_map.dims(), teacher_map.dims(), "channel Gram needs the regressed student map in the teacher's shape");
    let [n, c, h, w] = student_map.dims();
    // F / sqrt(C H W), so that F Fᵀ is G itself.
    let scaled = |map: Tensor<4>| map.reshape([n, c, h * w]).div_scalar(((c * h * w) as f32).sqrt());
    let (s, t) = (scaled(student_map), scaled(teacher_map));
    let squared_distance = if h * w < c {
        let product = |a: &Tensor<3>, b: &Tensor<3>| a.clone().swap_dims(1, 2).matmul(b.clone()).square().sum();
        // Rounding can take the difference of the three sums a little below zero.
        (product(&s, &s) - product(&s, &t).mul_scalar(2.0) + product(&t, &t)).clamp_min(0.0)
    } else {
        let gram = |f: Tensor<3>| f.clone().matmul(f.swap_dims(1, 2));
        (gram(s) - gram(t)).square().sum()
    };
    squared_distance.div_scalar((n * c * c) as f32).sqrt()
}

/// The student-side regressor of FitNets-style hints, as SSD-KD's `ConvReg`: a 1x1 convolution
/// (with bias) from the student's to the teacher's channel count, BatchNorm, ReLU. Conv and
/// BatchNorm start from PyTorch's default initialization.
#[derive(Module, Debug)]
pub struct ConvRegressor {
    conv: Conv2d,
    bn: BatchNorm,
}

impl ConvRegressor {
    pub fn new(in_channels: usize, out_channels: usize, device: &Device) -> Self {
        Self {
            conv: Conv2dConfig::new([in_channels, out_channels], [1, 1]).init(device),
            bn: BatchNormConfig::new(out_channels).init(device),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        relu(self.bn.forward(self.conv.forward(x)))
    }
}

//! Building blocks shared by the architectures.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use medkd_onnx::{Graph, OnnxError, Value};

use crate::conv::{Activation, conv_bn};

/// Which fan torchvision's Kaiming-normal conv init uses: ResNet and MobileNetV2 use `fan_out`,
/// DenseNet the default `fan_in`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum KaimingFan {
    In,
    Out,
}

/// One bias-free convolution as the architectures describe it. Construction and MAC counting
/// both read these, so the two cannot drift apart. Padding is always `kernel / 2`: true of every
/// conv in these networks.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvSpec {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub groups: usize,
}

impl ConvSpec {
    pub fn new(in_channels: usize, out_channels: usize, kernel: usize, stride: usize) -> Self {
        Self { in_channels, out_channels, kernel, stride, groups: 1 }
    }

    pub fn depthwise(channels: usize, kernel: usize, stride: usize) -> Self {
        Self { groups: channels, ..Self::new(channels, channels, kernel, stride) }
    }

    pub fn conv(&self, fan: KaimingFan, device: &Device) -> Conv2d {
        // PyTorch's fans count the whole weight tensor: fan_out = out * k * k is NOT divided by
        // groups (burn's Kaiming initializer divides it), which matters for depthwise convs.
        let receptive = self.kernel * self.kernel;
        let fan = match fan {
            KaimingFan::In => self.in_channels / self.groups * receptive,
            KaimingFan::Out => self.out_channels * receptive,
        };
        let pad = self.kernel / 2;
        Conv2dConfig::new([self.in_channels, self.out_channels], [self.kernel; 2])
            .with_stride([self.stride; 2])
            .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
            .with_groups(self.groups)
            .with_bias(false)
            .with_initializer(Initializer::Normal { mean: 0.0, std: (2.0 / fan as f64).sqrt() })
            .init(device)
    }

    pub fn conv_bn(&self, fan: KaimingFan, device: &Device) -> ConvBn {
        ConvBn { conv: self.conv(fan, device), bn: new_batch_norm(self.out_channels, device) }
    }

    /// This conv as an ONNX node with the state dict's `{name}.weight`.
    pub fn onnx(&self, graph: &mut Graph, x: Value, name: &str) -> Result<Value, OnnxError> {
        graph.conv(x, name, self.stride, [self.kernel / 2; 4], self.groups)
    }

    /// This conv and the BatchNorm `bn` after it (torchvision's epsilon).
    pub fn onnx_bn(&self, graph: &mut Graph, x: Value, conv: &str, bn: &str) -> Result<Value, OnnxError> {
        let y = self.onnx(graph, x, conv)?;
        graph.batch_norm(y, bn, TORCHVISION_BN_EPSILON)
    }
}

/// torchvision's (and burn's) BatchNorm epsilon.
pub(crate) const TORCHVISION_BN_EPSILON: f64 = 1e-5;

/// BatchNorm with torchvision's defaults (eps 1e-5, momentum 0.1, weight 1, bias 0).
pub(crate) fn new_batch_norm(channels: usize, device: &Device) -> BatchNorm {
    BatchNormConfig::new(channels).with_epsilon(TORCHVISION_BN_EPSILON).init(device)
}

/// ReLU6 in ONNX.
pub(crate) fn onnx_relu6(graph: &mut Graph, x: Value) -> Value {
    graph.clip(x, 0.0, 6.0)
}

/// Conv followed by BatchNorm and the activation the caller names.
///
/// Stands for a torchvision `Sequential(conv, bn[, act])`, whose children are named `0` and `1`:
/// see [`CONV_BN_TORCHVISION_KEYS`].
#[derive(Module, Debug)]
pub struct ConvBn {
    conv: Conv2d,
    bn: BatchNorm,
}

impl ConvBn {
    pub fn forward(&self, x: Tensor<4>, activation: Activation) -> Tensor<4> {
        self.forward_adding(x, None, activation)
    }

    /// [`ConvBn::forward`] with `residual` added before the activation (see [`conv_bn`]).
    pub fn forward_adding(&self, x: Tensor<4>, residual: Option<Tensor<4>>, activation: Activation) -> Tensor<4> {
        conv_bn(&self.conv, &self.bn, x, residual, activation)
    }
}

/// burn-path → torchvision-name rules for a [`ConvBn`] that is a torchvision Sequential.
/// Anchored on `.conv.weight` so that a plain conv inside a Sequential named `conv`
/// (MobileNetV2's `features.N.conv.2.weight`) is left alone.
pub(crate) const CONV_BN_TORCHVISION_KEYS: [(&str, &str); 2] = [(r"\.conv\.weight$", ".0.weight"), (r"\.bn\.", ".1.")];

/// The ImageNet stems' 3x3 stride-2 max-pool (ResNet, DenseNet).
pub(crate) fn stem_max_pool() -> MaxPool2d {
    MaxPool2dConfig::new([3, 3]).with_strides([2, 2]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)).init()
}

/// Classifier with PyTorch's default weight bound, or `weight` when given, and a zero bias
/// (torchvision zeroes classifier biases in MobileNetV2 and DenseNet, not in ResNet).
pub(crate) fn classifier(in_features: usize, num_classes: usize, weight: Option<Initializer>, zero_bias: bool, device: &Device) -> Linear {
    let mut config = LinearConfig::new(in_features, num_classes);
    if let Some(weight) = weight {
        config = config.with_initializer(weight);
    }
    let mut linear = config.init(device);
    if zero_bias {
        linear.bias = Some(Initializer::Zeros.init([num_classes], device));
    }
    linear
}

/// Adaptive average pooling to 1x1, flattened: `[B, C, H, W]` → `[B, C]`.
pub(crate) fn global_avg_pool(x: Tensor<4>) -> Tensor<2> {
    let [batch, channels, height, width] = x.dims();
    x.reshape([batch, channels, height * width]).mean_dim(2).reshape([batch, channels])
}

/// `min(max(x, 0), 6)` as `relu` then a clamp at 6. burn's `relu6` is a two-sided clamp, which
/// autodiff records as two compare-and-mask-fill ops (each with a masked backward); `relu` has
/// a dedicated kernel and backward, so this form costs one masked op instead of two. Same
/// values; the gradient differs only at exactly 0 and 6.
pub(crate) fn relu6(x: Tensor<4>) -> Tensor<4> {
    relu(x).clamp_max(6.0)
}

//! Multiply-accumulate counts, derived from the same conv plans the models are built from.

use crate::layers::ConvSpec;
use crate::model::{Arch, ModelSpec, vit_archs};
use crate::resnet::Layout;
use crate::{densenet, efficientnet_lite, mobilenetv2, resnet, vit};

/// Conv + linear multiply-accumulates for one image of `input_hw` (height, width), exact.
///
/// BatchNorm, activations, pooling and residual additions are not counted (the usual
/// convention, e.g. fvcore's); a ViT's attention products are (see `vit::macs`). Reference: ResNet-18 with a 10-class head, 1.8136 GMAC at 224 px,
/// 0.1481 GMAC at 64 px (a 1000-class fc adds 0.0005 GMAC).
pub fn count_macs(spec: &ModelSpec, input_hw: [usize; 2]) -> u64 {
    match spec.arch {
        Arch::ResNet18 => resnet::macs(Layout::RESNET18, spec, input_hw),
        Arch::ResNet34 => resnet::macs(Layout::RESNET34, spec, input_hw),
        Arch::ResNet50 => resnet::macs(Layout::RESNET50, spec, input_hw),
        Arch::MobileNetV2 => mobilenetv2::macs(spec, input_hw),
        Arch::DenseNet121 => densenet::macs(spec, input_hw),
        Arch::EfficientNetLite0 => efficientnet_lite::macs(efficientnet_lite::LITE0, spec, input_hw),
        Arch::EfficientNetLite1 => efficientnet_lite::macs(efficientnet_lite::LITE1, spec, input_hw),
        Arch::EfficientNetLite2 => efficientnet_lite::macs(efficientnet_lite::LITE2, spec, input_hw),
        vit_archs!() => {
            let (size, patch) = spec.arch.vit().expect("a ViT arch");
            vit::macs(size, patch, spec, input_hw)
        }
    }
}

impl ConvSpec {
    fn output_hw(&self, hw: [usize; 2]) -> [usize; 2] {
        hw.map(|size| window_output(size, self.kernel, self.stride, self.kernel / 2))
    }

    fn macs(&self, input_hw: [usize; 2]) -> u64 {
        let [height, width] = self.output_hw(input_hw);
        let per_output = self.in_channels / self.groups * self.kernel * self.kernel;
        (height * width * self.out_channels * per_output) as u64
    }
}

/// Output length of a conv or pooling window along one axis (floor mode, as in PyTorch); 0 when
/// the input is smaller than the window, where PyTorch would refuse to run.
fn window_output(size: usize, kernel: usize, stride: usize, padding: usize) -> usize {
    (size + 2 * padding).checked_sub(kernel).map_or(0, |span| span / stride + 1)
}

/// Walks an architecture's layers in forward order, tracking the activation's spatial size and
/// the MAC total.
pub(crate) struct MacWalk {
    hw: [usize; 2],
    total: u64,
}

impl MacWalk {
    pub fn new(input_hw: [usize; 2]) -> Self {
        Self { hw: input_hw, total: 0 }
    }

    /// A conv applied to the current activation; the walk moves on to its output.
    pub fn conv(&mut self, conv: &ConvSpec) {
        self.total += conv.macs(self.hw);
        self.hw = conv.output_hw(self.hw);
    }

    /// A conv on a side branch that reads the current activation (a downsample shortcut).
    pub fn branch(&mut self, conv: &ConvSpec) {
        self.total += conv.macs(self.hw);
    }

    pub fn pool(&mut self, kernel: usize, stride: usize, padding: usize) {
        self.hw = self.hw.map(|size| window_output(size, kernel, stride, padding));
    }

    /// The classifier on the pooled features; ends the walk.
    pub fn linear(self, in_features: usize, out_features: usize) -> u64 {
        self.total + (in_features * out_features) as u64
    }
}

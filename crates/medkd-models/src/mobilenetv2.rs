//! MobileNetV2 (width 1.0) in torchvision's layout.
//!
//! `small_input` keeps stride 1 in the stem conv and in the first stride-2 inverted-residual
//! stage (features.2, 24 channels), as the usual CIFAR adaptation does: the network then
//! downsamples 8x instead of 32x, so a 32 px image still ends on a 4x4 map.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Dropout, DropoutConfig, Initializer, Linear};
use burn::tensor::{Device, Tensor};

use medkd_onnx::{Graph, OnnxError, Value};

use crate::conv::{Activation, conv_bn, conv2d};
use crate::features::Stages;
use crate::layers::{CONV_BN_TORCHVISION_KEYS, ConvBn, ConvSpec, KaimingFan, classifier, global_avg_pool, new_batch_norm, onnx_relu6};
use crate::macs::MacWalk;
use crate::model::ModelSpec;
use crate::norm::batch_norm;

/// torchvision's inverted-residual settings: (expansion t, output channels c, repeats n, stride s
/// of the first repeat).
const SETTINGS: [(usize, usize, usize, usize); 7] =
    [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)];
const STEM_CHANNELS: usize = 32;
const LAST_CHANNELS: usize = 1280;
/// The `features` entries whose outputs are the four stages.
const STAGE_ENDS: [usize; 4] = [3, 6, 13, 18];

/// One entry of torchvision's `features` Sequential.
enum FeaturePlan {
    ConvBnRelu6(ConvSpec),
    /// Convs in order (expand, absent when t = 1; depthwise; linear projection).
    InvertedResidual {
        convs: Vec<ConvSpec>,
        residual: bool,
    },
}

impl FeaturePlan {
    fn convs(&self) -> &[ConvSpec] {
        match self {
            Self::ConvBnRelu6(conv) => std::slice::from_ref(conv),
            Self::InvertedResidual { convs, .. } => convs,
        }
    }

    fn out_channels(&self) -> usize {
        let convs = self.convs();
        convs[convs.len() - 1].out_channels
    }

    fn build(&self, device: &Device) -> Feature {
        let conv_bn = |spec: &ConvSpec| spec.conv_bn(KaimingFan::Out, device);
        match self {
            Self::ConvBnRelu6(spec) => Feature::ConvBnRelu6(conv_bn(spec)),
            Self::InvertedResidual { convs, residual } => {
                let (project, activated) = convs.split_last().expect("a projection conv");
                let mut conv: Vec<Layer> = activated.iter().map(|spec| Layer::ConvBnRelu6(conv_bn(spec))).collect();
                conv.push(Layer::Conv(project.conv(KaimingFan::Out, device)));
                conv.push(Layer::Norm(new_batch_norm(project.out_channels, device)));
                Feature::InvertedResidual(InvertedResidual { conv, residual: *residual })
            }
        }
    }
}

/// torchvision's `features`: stem, 17 inverted residuals, the 1x1 conv to 1280 channels.
fn features_plan(spec: &ModelSpec) -> Vec<FeaturePlan> {
    let stem_stride = if spec.small_input { 1 } else { 2 };
    let mut plan = vec![FeaturePlan::ConvBnRelu6(ConvSpec::new(spec.in_channels, STEM_CHANNELS, 3, stem_stride))];
    let mut in_channels = STEM_CHANNELS;
    for (setting, &(expansion, out_channels, repeats, stride)) in SETTINGS.iter().enumerate() {
        // SETTINGS[1] is the first stride-2 stage; see the module docs.
        let stride = if spec.small_input && setting == 1 { 1 } else { stride };
        for repeat in 0..repeats {
            let stride = if repeat == 0 { stride } else { 1 };
            let hidden = in_channels * expansion;
            let mut convs = Vec::with_capacity(3);
            if expansion != 1 {
                convs.push(ConvSpec::new(in_channels, hidden, 1, 1));
            }
            convs.push(ConvSpec::depthwise(hidden, 3, stride));
            convs.push(ConvSpec::new(hidden, out_channels, 1, 1));
            let residual = stride == 1 && in_channels == out_channels;
            plan.push(FeaturePlan::InvertedResidual { convs, residual });
            in_channels = out_channels;
        }
    }
    plan.push(FeaturePlan::ConvBnRelu6(ConvSpec::new(in_channels, LAST_CHANNELS, 1, 1)));
    plan
}

#[derive(Module, Debug)]
pub struct MobileNetV2 {
    features: Vec<Feature>,
    /// torchvision's classifier is Sequential(Dropout(0.2), Linear).
    dropout: Dropout,
    pub(crate) classifier: Linear,
    stage_channels: Vec<usize>,
}

/// An entry of `features`. Enum variant names are left out of weight names.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant, reason = "built once; burn has no Module impl for Box")]
enum Feature {
    ConvBnRelu6(ConvBn),
    InvertedResidual(InvertedResidual),
}

/// `conv` mirrors torchvision's Sequential entry for entry, [expand ConvBNReLU6 (absent when
/// t = 1), depthwise ConvBNReLU6, projection Conv2d, BatchNorm], so weight names line up.
#[derive(Module, Debug)]
struct InvertedResidual {
    conv: Vec<Layer>,
    residual: bool,
}

#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant, reason = "built once; burn has no Module impl for Box")]
enum Layer {
    ConvBnRelu6(ConvBn),
    Conv(Conv2d),
    Norm(BatchNorm),
}

impl Feature {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Self::ConvBnRelu6(conv_bn) => conv_bn.forward(x, Activation::Relu6),
            Self::InvertedResidual(block) => {
                let mut layers = block.conv.iter().peekable();
                let mut out = x.clone();
                let mut skip = block.residual.then_some(x);
                while let Some(layer) = layers.next() {
                    out = match layer {
                        Layer::ConvBnRelu6(activated) => activated.forward(out, Activation::Relu6),
                        // The projection conv and its BatchNorm, run as one, the skip added as
                        // they write the block's output.
                        Layer::Conv(conv) => match layers.next_if(|next| matches!(next, Layer::Norm(_))) {
                            Some(Layer::Norm(norm)) => {
                                let last = layers.peek().is_none();
                                conv_bn(conv, norm, out, skip.take_if(|_| last), Activation::Identity)
                            }
                            _ => conv2d(conv, out),
                        },
                        Layer::Norm(norm) => batch_norm(norm, out),
                    };
                }
                match skip {
                    Some(x) => out + x,
                    None => out,
                }
            }
        }
    }
}

impl MobileNetV2 {
    pub(crate) fn new(spec: &ModelSpec, device: &Device) -> Self {
        let plan = features_plan(spec);
        Self {
            features: plan.iter().map(|feature| feature.build(device)).collect(),
            dropout: DropoutConfig::new(0.2).init(),
            classifier: classifier(LAST_CHANNELS, spec.num_classes, Some(Initializer::Normal { mean: 0.0, std: 0.01 }), true, device),
            stage_channels: STAGE_ENDS.iter().map(|&i| plan[i].out_channels()).collect(),
        }
    }

    pub(crate) fn stage_channels(&self) -> &[usize] {
        &self.stage_channels
    }

    /// `(pooled, logits)`.
    pub(crate) fn forward(&self, x: Tensor<4>, stages: &mut Stages) -> (Tensor<2>, Tensor<2>) {
        let mut x = x;
        for (i, feature) in self.features.iter().enumerate() {
            x = feature.forward(x);
            if STAGE_ENDS.contains(&i) {
                stages.record(&x);
            }
        }
        let pooled = global_avg_pool(x);
        let logits = self.classifier.forward(self.dropout.forward(pooled.clone()));
        (pooled, logits)
    }
}

/// The eval forward as ONNX nodes, from the normalized input `x` to the logits.
pub(crate) fn onnx(spec: &ModelSpec, graph: &mut Graph, x: Value) -> Result<Value, OnnxError> {
    let mut x = x;
    for (i, feature) in features_plan(spec).iter().enumerate() {
        x = match feature {
            FeaturePlan::ConvBnRelu6(conv) => {
                let y = conv.onnx_bn(graph, x, &format!("features.{i}.0"), &format!("features.{i}.1"))?;
                onnx_relu6(graph, y)
            }
            FeaturePlan::InvertedResidual { convs, residual } => {
                let (project, activated) = convs.split_last().expect("a projection conv");
                let mut y = x.clone();
                for (j, conv) in activated.iter().enumerate() {
                    y = conv.onnx_bn(graph, y, &format!("features.{i}.conv.{j}.0"), &format!("features.{i}.conv.{j}.1"))?;
                    y = onnx_relu6(graph, y);
                }
                let j = activated.len();
                y = project.onnx_bn(graph, y, &format!("features.{i}.conv.{j}"), &format!("features.{i}.conv.{}", j + 1))?;
                if *residual { graph.add(y, x) } else { y }
            }
        };
    }
    let pooled = graph.global_average_pool(x);
    graph.linear(pooled, "classifier.1")
}

/// burn module path → torchvision state-dict name.
pub(crate) fn torchvision_keys() -> Vec<(String, String)> {
    let mut rules: Vec<(String, String)> = CONV_BN_TORCHVISION_KEYS.map(|(from, to)| (from.to_owned(), to.to_owned())).into();
    rules.push((r"^classifier\.".to_owned(), "classifier.1.".to_owned()));
    rules
}

pub(crate) fn macs(spec: &ModelSpec, input_hw: [usize; 2]) -> u64 {
    let mut walk = MacWalk::new(input_hw);
    for feature in features_plan(spec) {
        feature.convs().iter().for_each(|conv| walk.conv(conv));
    }
    walk.linear(LAST_CHANNELS, spec.num_classes)
}

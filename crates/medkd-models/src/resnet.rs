//! ResNet-18/34/50 in torchvision's layout (v1.5: a Bottleneck strides on its 3x3 conv).

use burn::module::Module;
use burn::nn::Linear;
use burn::nn::pool::MaxPool2d;
use burn::tensor::{Device, Tensor};

use medkd_onnx::{Graph, OnnxError, Value};

use crate::conv::Activation;
use crate::features::Stages;
use crate::layers::{CONV_BN_TORCHVISION_KEYS, ConvBn, ConvSpec, KaimingFan, classifier, global_avg_pool, stem_max_pool};
use crate::macs::MacWalk;
use crate::model::ModelSpec;

/// Blocks per stage and block type of one ResNet depth.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout {
    depths: [usize; 4],
    bottleneck: bool,
}

impl Layout {
    pub const RESNET18: Self = Self { depths: [2, 2, 2, 2], bottleneck: false };
    pub const RESNET34: Self = Self { depths: [3, 4, 6, 3], bottleneck: false };
    pub const RESNET50: Self = Self { depths: [3, 4, 6, 3], bottleneck: true };

    /// Every block's convs, stage by stage (torchvision's layer1..layer4).
    fn stages(&self) -> [Vec<BlockPlan>; 4] {
        let mut in_channels = 64;
        std::array::from_fn(|stage| {
            let width = 64 << stage;
            (0..self.depths[stage])
                .map(|block| {
                    // The first block of layer2..layer4 halves the resolution.
                    let stride = if stage > 0 && block == 0 { 2 } else { 1 };
                    let plan = BlockPlan::new(in_channels, width, stride, self.bottleneck);
                    in_channels = plan.out_channels();
                    plan
                })
                .collect()
        })
    }
}

/// The convs of one residual block, in order, and of its downsample shortcut.
struct BlockPlan {
    convs: Vec<ConvSpec>,
    downsample: Option<ConvSpec>,
}

impl BlockPlan {
    fn new(in_channels: usize, width: usize, stride: usize, bottleneck: bool) -> Self {
        let convs = if bottleneck {
            vec![ConvSpec::new(in_channels, width, 1, 1), ConvSpec::new(width, width, 3, stride), ConvSpec::new(width, width * 4, 1, 1)]
        } else {
            vec![ConvSpec::new(in_channels, width, 3, stride), ConvSpec::new(width, width, 3, 1)]
        };
        let out_channels = convs[convs.len() - 1].out_channels;
        let downsample = (stride != 1 || in_channels != out_channels).then(|| ConvSpec::new(in_channels, out_channels, 1, stride));
        Self { convs, downsample }
    }

    fn out_channels(&self) -> usize {
        self.convs[self.convs.len() - 1].out_channels
    }

    fn build(&self, device: &Device) -> Block {
        let conv_bn = |spec: &ConvSpec| spec.conv_bn(KaimingFan::Out, device);
        Block { convs: self.convs.iter().map(conv_bn).collect(), downsample: self.downsample.as_ref().map(conv_bn) }
    }
}

/// torchvision's conv1 (7x7 stride 2), or 3x3 stride 1 with `small_input`.
fn stem(spec: &ModelSpec) -> ConvSpec {
    match spec.small_input {
        true => ConvSpec::new(spec.in_channels, 64, 3, 1),
        false => ConvSpec::new(spec.in_channels, 64, 7, 2),
    }
}

#[derive(Module, Debug)]
pub struct ResNet {
    /// torchvision's conv1 + bn1.
    stem: ConvBn,
    /// Absent with `small_input`.
    max_pool: Option<MaxPool2d>,
    layer1: Vec<Block>,
    layer2: Vec<Block>,
    layer3: Vec<Block>,
    layer4: Vec<Block>,
    pub(crate) fc: Linear,
    stage_channels: Vec<usize>,
}

/// A BasicBlock (two 3x3 convs) or a Bottleneck (1x1, 3x3, 1x1): ReLU after every conv but the
/// last, then the shortcut is added and ReLU applied.
#[derive(Module, Debug)]
struct Block {
    convs: Vec<ConvBn>,
    downsample: Option<ConvBn>,
}

impl Block {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let shortcut = match &self.downsample {
            Some(downsample) => downsample.forward(x.clone(), Activation::Identity),
            None => x.clone(),
        };
        let (last, first) = self.convs.split_last().expect("a block has convolutions");
        let x = first.iter().fold(x, |x, conv_bn| conv_bn.forward(x, Activation::Relu));
        // The shortcut added and ReLU applied as the last convolution writes its output (at inference).
        last.forward_adding(x, Some(shortcut), Activation::Relu)
    }
}

impl ResNet {
    pub(crate) fn new(layout: Layout, spec: &ModelSpec, device: &Device) -> Self {
        let stages = layout.stages();
        let stage_channels: Vec<usize> = stages.iter().map(|plans| plans[plans.len() - 1].out_channels()).collect();
        let [layer1, layer2, layer3, layer4] = stages.map(|plans| plans.iter().map(|plan| plan.build(device)).collect());
        Self {
            stem: stem(spec).conv_bn(KaimingFan::Out, device),
            max_pool: (!spec.small_input).then(stem_max_pool),
            layer1,
            layer2,
            layer3,
            layer4,
            fc: classifier(stage_channels[3], spec.num_classes, None, false, device),
            stage_channels,
        }
    }

    pub(crate) fn stage_channels(&self) -> &[usize] {
        &self.stage_channels
    }

    /// `(pooled, logits)`.
    pub(crate) fn forward(&self, x: Tensor<4>, stages: &mut Stages) -> (Tensor<2>, Tensor<2>) {
        let mut x = self.stem.forward(x, Activation::Relu);
        if let Some(pool) = &self.max_pool {
            x = pool.forward(x);
        }
        for layer in [&self.layer1, &self.layer2, &self.layer3, &self.layer4] {
            x = layer.iter().fold(x, |x, block| block.forward(x));
            stages.record(&x);
        }
        let pooled = global_avg_pool(x);
        (pooled.clone(), self.fc.forward(pooled))
    }
}

/// The eval forward as ONNX nodes, from the normalized input `x` to the logits.
pub(crate) fn onnx(layout: Layout, spec: &ModelSpec, graph: &mut Graph, x: Value) -> Result<Value, OnnxError> {
    let y = stem(spec).onnx_bn(graph, x, "conv1", "bn1")?;
    let mut x = graph.relu(y);
    if !spec.small_input {
        x = graph.max_pool(x, 3, 2, 1);
    }
    for (stage, plans) in layout.stages().iter().enumerate() {
        for (index, plan) in plans.iter().enumerate() {
            let block = format!("layer{}.{index}", stage + 1);
            let shortcut = match &plan.downsample {
                Some(downsample) => {
                    downsample.onnx_bn(graph, x.clone(), &format!("{block}.downsample.0"), &format!("{block}.downsample.1"))?
                }
                None => x.clone(),
            };
            let last = plan.convs.len() - 1;
            let mut out = x;
            for (i, conv) in plan.convs.iter().enumerate() {
                out = conv.onnx_bn(graph, out, &format!("{block}.conv{}", i + 1), &format!("{block}.bn{}", i + 1))?;
                if i < last {
                    out = graph.relu(out);
                }
            }
            let sum = graph.add(out, shortcut);
            x = graph.relu(sum);
        }
    }
    let pooled = graph.global_average_pool(x);
    graph.linear(pooled, "fc")
}

/// burn module path → torchvision state-dict name.
pub(crate) fn torchvision_keys() -> Vec<(String, String)> {
    let mut rules = vec![(r"^stem\.conv\.".to_owned(), "conv1.".to_owned()), (r"^stem\.bn\.".to_owned(), "bn1.".to_owned())];
    // torchvision numbers a block's convs from 1 (conv1/bn1..conv3/bn3) and a regex cannot add
    // one, hence a rule per index.
    for i in 0..3 {
        rules.push((format!(r"\.convs\.{i}\.conv\."), format!(".conv{}.", i + 1)));
        rules.push((format!(r"\.convs\.{i}\.bn\."), format!(".bn{}.", i + 1)));
    }
    // What is left is the downsample Sequential(conv, bn).
    rules.extend(CONV_BN_TORCHVISION_KEYS.map(|(from, to)| (from.to_owned(), to.to_owned())));
    rules
}

pub(crate) fn macs(layout: Layout, spec: &ModelSpec, input_hw: [usize; 2]) -> u64 {
    let mut walk = MacWalk::new(input_hw);
    walk.conv(&stem(spec));
    if !spec.small_input {
        walk.pool(3, 2, 1);
    }
    let stages = layout.stages();
    for plan in stages.iter().flatten() {
        if let Some(downsample) = &plan.downsample {
            walk.branch(downsample);
        }
        plan.convs.iter().for_each(|conv| walk.conv(conv));
    }
    let features = stages[3][stages[3].len() - 1].out_channels();
    walk.linear(features, spec.num_classes)
}

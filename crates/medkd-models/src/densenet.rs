//! DenseNet-121 in torchvision's layout (growth rate 32, blocks 6/12/24/16, memory-naive: each
//! dense layer concatenates its output onto the running feature map).

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{AvgPool2d, AvgPool2dConfig, MaxPool2d};
use burn::nn::{BatchNorm, Linear};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use medkd_onnx::{Graph, OnnxError, Value};

use crate::conv::conv2d;
use crate::features::Stages;
use crate::layers::{ConvSpec, KaimingFan, TORCHVISION_BN_EPSILON, classifier, global_avg_pool, new_batch_norm, stem_max_pool};
use crate::macs::MacWalk;
use crate::model::ModelSpec;
use crate::norm::batch_norm;

const GROWTH_RATE: usize = 32;
const BLOCK_LAYERS: [usize; 4] = [6, 12, 24, 16];
const INIT_FEATURES: usize = 64;
/// A dense layer's 1x1 bottleneck conv outputs BN_SIZE * GROWTH_RATE channels.
const BN_SIZE: usize = 4;

/// torchvision's conv0 (7x7 stride 2), or 3x3 stride 1 with `small_input`.
fn stem(spec: &ModelSpec) -> ConvSpec {
    match spec.small_input {
        true => ConvSpec::new(spec.in_channels, INIT_FEATURES, 3, 1),
        false => ConvSpec::new(spec.in_channels, INIT_FEATURES, 7, 2),
    }
}

/// Input channels of every dense layer, block by block. A transition after each of the first
/// three blocks halves the channels.
fn layer_inputs() -> [Vec<usize>; 4] {
    let mut channels = INIT_FEATURES;
    std::array::from_fn(|block| {
        let inputs = (0..BLOCK_LAYERS[block]).map(|layer| channels + layer * GROWTH_RATE).collect();
        channels += BLOCK_LAYERS[block] * GROWTH_RATE;
        if block < 3 {
            channels /= 2;
        }
        inputs
    })
}

fn block_output(layer_inputs: &[usize]) -> usize {
    layer_inputs[layer_inputs.len() - 1] + GROWTH_RATE
}

/// conv1 (1x1 bottleneck) and conv2 (3x3) of a dense layer.
fn dense_layer_convs(in_channels: usize) -> [ConvSpec; 2] {
    [ConvSpec::new(in_channels, BN_SIZE * GROWTH_RATE, 1, 1), ConvSpec::new(BN_SIZE * GROWTH_RATE, GROWTH_RATE, 3, 1)]
}

fn transition_conv(in_channels: usize) -> ConvSpec {
    ConvSpec::new(in_channels, in_channels / 2, 1, 1)
}

#[derive(Module, Debug)]
pub struct DenseNet {
    features: DenseFeatures,
    pub(crate) classifier: Linear,
    stage_channels: Vec<usize>,
}

/// torchvision's `features` Sequential, field for field.
#[derive(Module, Debug)]
struct DenseFeatures {
    conv0: Conv2d,
    norm0: BatchNorm,
    /// Absent with `small_input`.
    pool0: Option<MaxPool2d>,
    denseblock1: Vec<DenseLayer>,
    transition1: Transition,
    denseblock2: Vec<DenseLayer>,
    transition2: Transition,
    denseblock3: Vec<DenseLayer>,
    transition3: Transition,
    denseblock4: Vec<DenseLayer>,
    norm5: BatchNorm,
}

/// Pre-activation bottleneck: norm1-relu-conv1 (1x1), norm2-relu-conv2 (3x3).
#[derive(Module, Debug)]
struct DenseLayer {
    norm1: BatchNorm,
    conv1: Conv2d,
    norm2: BatchNorm,
    conv2: Conv2d,
}

#[derive(Module, Debug)]
struct Transition {
    norm: BatchNorm,
    conv: Conv2d,
    pool: AvgPool2d,
}

impl DenseLayer {
    fn new(in_channels: usize, device: &Device) -> Self {
        let [conv1, conv2] = dense_layer_convs(in_channels);
        Self {
            norm1: new_batch_norm(in_channels, device),
            conv1: conv1.conv(KaimingFan::In, device),
            norm2: new_batch_norm(conv2.in_channels, device),
            conv2: conv2.conv(KaimingFan::In, device),
        }
    }

    /// The layer's new channels (GROWTH_RATE of them).
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = conv2d(&self.conv1, relu(batch_norm(&self.norm1, x)));
        conv2d(&self.conv2, relu(batch_norm(&self.norm2, x)))
    }
}

impl Transition {
    fn new(in_channels: usize, device: &Device) -> Self {
        Self {
            norm: new_batch_norm(in_channels, device),
            conv: transition_conv(in_channels).conv(KaimingFan::In, device),
            pool: AvgPool2dConfig::new([2, 2]).init(),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.pool.forward(conv2d(&self.conv, relu(batch_norm(&self.norm, x))))
    }
}

fn dense_block(layers: &[DenseLayer], x: Tensor<4>) -> Tensor<4> {
    layers.iter().fold(x, |x, layer| {
        let new = layer.forward(x.clone());
        Tensor::cat(vec![x, new], 1)
    })
}

impl DenseFeatures {
    fn forward(&self, x: Tensor<4>, stages: &mut Stages) -> Tensor<4> {
        let mut x = relu(batch_norm(&self.norm0, conv2d(&self.conv0, x)));
        if let Some(pool) = &self.pool0 {
            x = pool.forward(x);
        }
        for (block, transition) in
            [(&self.denseblock1, &self.transition1), (&self.denseblock2, &self.transition2), (&self.denseblock3, &self.transition3)]
        {
            x = dense_block(block, x);
            stages.record(&x);
            x = transition.forward(x);
        }
        // torchvision applies this ReLU in DenseNet.forward, after `features`.
        let x = relu(batch_norm(&self.norm5, dense_block(&self.denseblock4, x)));
        stages.record(&x);
        x
    }
}

impl DenseNet {
    pub(crate) fn new(spec: &ModelSpec, device: &Device) -> Self {
        let inputs = layer_inputs();
        let outputs = inputs.each_ref().map(|layers| block_output(layers));
        let [block1, block2, block3, block4] =
            inputs.map(|layers| layers.into_iter().map(|channels| DenseLayer::new(channels, device)).collect());
        let features = DenseFeatures {
            conv0: stem(spec).conv(KaimingFan::In, device),
            norm0: new_batch_norm(INIT_FEATURES, device),
            pool0: (!spec.small_input).then(stem_max_pool),
            denseblock1: block1,
            transition1: Transition::new(outputs[0], device),
            denseblock2: block2,
            transition2: Transition::new(outputs[1], device),
            denseblock3: block3,
            transition3: Transition::new(outputs[2], device),
            denseblock4: block4,
            norm5: new_batch_norm(outputs[3], device),
        };
        Self { features, classifier: classifier(outputs[3], spec.num_classes, None, true, device), stage_channels: outputs.to_vec() }
    }

    pub(crate) fn stage_channels(&self) -> &[usize] {
        &self.stage_channels
    }

    /// `(pooled, logits)`.
    pub(crate) fn forward(&self, x: Tensor<4>, stages: &mut Stages) -> (Tensor<2>, Tensor<2>) {
        let pooled = global_avg_pool(self.features.forward(x, stages));
        (pooled.clone(), self.classifier.forward(pooled))
    }
}

/// The eval forward as ONNX nodes, from the normalized input `x` to the logits.
pub(crate) fn onnx(spec: &ModelSpec, graph: &mut Graph, x: Value) -> Result<Value, OnnxError> {
    // BatchNorm, ReLU, then the conv: DenseNet's pre-activation order.
    let norm_relu_conv = |graph: &mut Graph, x: Value, norm: &str, conv: &ConvSpec, name: &str| -> Result<Value, OnnxError> {
        let y = graph.batch_norm(x, norm, TORCHVISION_BN_EPSILON)?;
        let y = graph.relu(y);
        conv.onnx(graph, y, name)
    };
    let y = stem(spec).onnx(graph, x, "features.conv0")?;
    let y = graph.batch_norm(y, "features.norm0", TORCHVISION_BN_EPSILON)?;
    let mut x = graph.relu(y);
    if !spec.small_input {
        x = graph.max_pool(x, 3, 2, 1);
    }
    for (block, layers) in layer_inputs().iter().enumerate() {
        for (index, &channels) in layers.iter().enumerate() {
            let layer = format!("features.denseblock{}.denselayer{}", block + 1, index + 1);
            let [conv1, conv2] = dense_layer_convs(channels);
            let y = norm_relu_conv(graph, x.clone(), &format!("{layer}.norm1"), &conv1, &format!("{layer}.conv1"))?;
            let y = norm_relu_conv(graph, y, &format!("{layer}.norm2"), &conv2, &format!("{layer}.conv2"))?;
            x = graph.concat(vec![x, y]);
        }
        if block < 3 {
            let transition = format!("features.transition{}", block + 1);
            let conv = transition_conv(block_output(layers));
            let y = norm_relu_conv(graph, x, &format!("{transition}.norm"), &conv, &format!("{transition}.conv"))?;
            x = graph.average_pool(y, 2, 2);
        }
    }
    let y = graph.batch_norm(x, "features.norm5", TORCHVISION_BN_EPSILON)?;
    let y = graph.relu(y);
    let pooled = graph.global_average_pool(y);
    graph.linear(pooled, "classifier")
}

/// burn module path → torchvision state-dict name: torchvision numbers dense layers from 1
/// (`denselayer1`) and a regex cannot add one, hence a rule per index.
pub(crate) fn torchvision_keys() -> Vec<(String, String)> {
    let max_layers = BLOCK_LAYERS.into_iter().max().unwrap_or(0);
    (0..max_layers).map(|i| (format!(r"(\.denseblock\d)\.{i}\."), format!("${{1}}.denselayer{}.", i + 1))).collect()
}

pub(crate) fn macs(spec: &ModelSpec, input_hw: [usize; 2]) -> u64 {
    let mut walk = MacWalk::new(input_hw);
    walk.conv(&stem(spec));
    if !spec.small_input {
        walk.pool(3, 2, 1);
    }
    let inputs = layer_inputs();
    for (block, layers) in inputs.iter().enumerate() {
        for &channels in layers {
            dense_layer_convs(channels).iter().for_each(|conv| walk.conv(conv));
        }
        if block < 3 {
            walk.conv(&transition_conv(block_output(layers)));
            walk.pool(2, 2, 0);
        }
    }
    walk.linear(block_output(&inputs[3]), spec.num_classes)
}

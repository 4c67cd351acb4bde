//! ONNX graphs for medkd's exports: each architecture describes its forward pass to a [`Graph`]
//! with the weights named as in its state dict (torchvision's names), and [`Graph::finish`]
//! wraps it into a `ModelProto` with the input normalization and output activation.
//!
//! Every op is from the default domain at [`OPSET`]; BatchNorm stays a `BatchNormalization`
//! node (runtimes fold it into the convolution themselves), so the graph computes what medkd's
//! eval forward computes, op for op.

pub mod proto;

use std::collections::{BTreeMap, BTreeSet};

use prost::Message;
use proto::*;

/// The default-domain opset the graphs use (Clip takes min/max as inputs since 11, Softmax
/// works on one axis since 13; 17 is read by every current runtime).
pub const OPSET: i64 = 17;
/// The IR version of opset 17.
pub const IR_VERSION: i64 = 8;

/// One float tensor of a state dict, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Weight {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// A value in the graph: the name of a graph input or of a node's output.
pub type Value = String;

#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("the ONNX graph needs the weight `{0}`, which the model's state dict does not have")]
    MissingWeight(String),
    #[error("the ONNX graph leaves the state dict's {} unused: {}", .0.len(), .0.join(", "))]
    UnusedWeights(Vec<String>),
    #[error("{0}")]
    Invalid(String),
}

/// What the model's input is and what its outputs mean.
#[derive(Clone, Debug)]
pub struct Io {
    /// `[channels, height, width]` of one image; the batch size is free (`batch`).
    pub input_chw: [usize; 3],
    /// Per-channel mean and std the graph subtracts and divides by, first thing: the input is
    /// the image as floats in [0, 1].
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub num_classes: usize,
    /// Logits are divided by this before the output activation (temperature scaling).
    pub temperature: Option<f32>,
    pub activation: Activation,
    pub weights: WeightPrecision,
}

/// How the graph stores the weights of its convolutions and linear layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightPrecision {
    Float32,
    /// Symmetric int8 per output channel (scale = max |w| / 127 of the channel), turned back
    /// into float32 by `DequantizeLinear` nodes: a quarter of the file. BatchNorm, biases and
    /// activations stay float32, so there is nothing to calibrate and the arithmetic is float.
    Int8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// One class per image.
    Softmax,
    /// Independent classes (multi-label).
    Sigmoid,
}

/// The graph's input and output names.
pub const INPUT: &str = "image";
pub const LOGITS: &str = "logits";
pub const PROBABILITIES: &str = "probabilities";

pub struct Graph<'a> {
    weights: &'a BTreeMap<String, Weight>,
    precision: WeightPrecision,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    used: BTreeSet<String>,
    constants: BTreeMap<String, Value>,
}

impl<'a> Graph<'a> {
    pub fn new(weights: &'a BTreeMap<String, Weight>, precision: WeightPrecision) -> Self {
        Self { weights, precision, nodes: Vec::new(), initializers: Vec::new(), used: BTreeSet::new(), constants: BTreeMap::new() }
    }

    /// The state dict's tensor `name`, as an initializer of the same name.
    fn weight(&mut self, name: &str) -> Result<Value, OnnxError> {
        let weight = self.weights.get(name).ok_or_else(|| OnnxError::MissingWeight(name.to_owned()))?;
        if self.used.insert(name.to_owned()) {
            self.initializers.push(float_tensor(name, &weight.shape, &weight.values));
        }
        Ok(name.to_owned())
    }

    /// The weight of a convolution or linear layer (output channels first), stored as the
    /// graph's [`WeightPrecision`] says: int8 ones come out of a `DequantizeLinear` node.
    fn layer_weight(&mut self, name: &str) -> Result<Value, OnnxError> {
        if self.precision == WeightPrecision::Float32 {
            return self.weight(name);
        }
        let weight = self.weights.get(name).ok_or_else(|| OnnxError::MissingWeight(name.to_owned()))?;
        let (quantized, scales) = quantize_per_channel(weight);
        let channels = [weight.shape[0]];
        self.used.insert(name.to_owned());
        let int8 = |name: String, values: &[i8], shape: &[usize]| TensorProto {
            dims: shape.iter().map(|&d| d as i64).collect(),
            data_type: DATA_INT8,
            name,
            raw_data: values.iter().map(|&v| v as u8).collect(),
        };
        self.initializers.push(int8(name.to_owned(), &quantized, &weight.shape));
        self.initializers.push(float_tensor(&format!("{name}.scale"), &channels, &scales));
        self.initializers.push(int8(format!("{name}.zero_point"), &vec![0; channels[0]], &channels));
        let inputs = vec![name.to_owned(), format!("{name}.scale"), format!("{name}.zero_point")];
        Ok(self.node("DequantizeLinear", inputs, vec![int("axis", 0)], Some(&format!("{name}.dequantized"))))
    }

    fn has_weight(&self, name: &str) -> bool {
        self.weights.contains_key(name)
    }

    /// A constant initializer, shared between the nodes that use the same values.
    fn constant(&mut self, shape: &[usize], values: &[f32]) -> Value {
        let key = format!("{shape:?}{values:?}");
        if let Some(name) = self.constants.get(&key) {
            return name.clone();
        }
        let name = format!("constant_{}", self.constants.len());
        self.initializers.push(float_tensor(&name, shape, values));
        self.constants.insert(key, name.clone());
        name
    }

    /// Appends a node; its output is named after it (`Conv_12`) unless `output` is given.
    fn node(&mut self, op: &str, inputs: Vec<Value>, attributes: Vec<AttributeProto>, output: Option<&str>) -> Value {
        let name = format!("{op}_{}", self.nodes.len());
        let output = output.map_or_else(|| name.clone(), str::to_owned);
        self.nodes.push(NodeProto { input: inputs, output: vec![output.clone()], name, op_type: op.to_owned(), attribute: attributes });
        output
    }

    /// A 2-D convolution with the state dict's `{prefix}.weight` (`[out, in / groups, k, k]`)
    /// and `{prefix}.bias` when there is one. `pads` are `[top, left, bottom, right]`.
    pub fn conv(&mut self, x: Value, prefix: &str, stride: usize, pads: [usize; 4], groups: usize) -> Result<Value, OnnxError> {
        let name = format!("{prefix}.weight");
        let shape = &self.weights.get(&name).ok_or_else(|| OnnxError::MissingWeight(name.clone()))?.shape;
        if shape.len() != 4 {
            return Err(OnnxError::Invalid(format!("`{name}` has shape {shape:?}, not that of a 2-D convolution")));
        }
        let kernel = [shape[2], shape[3]].map(|k| k as i64);
        let mut inputs = vec![x, self.layer_weight(&name)?];
        let bias = format!("{prefix}.bias");
        if self.has_weight(&bias) {
            inputs.push(self.weight(&bias)?);
        }
        let [top, left, bottom, right] = pads.map(|p| p as i64);
        let attributes = vec![
            ints("kernel_shape", &kernel),
            ints("strides", &[stride as i64; 2]),
            ints("pads", &[top, left, bottom, right]),
            int("group", groups as i64),
        ];
        Ok(self.node("Conv", inputs, attributes, None))
    }

    /// Inference BatchNorm on the running statistics of `{prefix}.{weight,bias,running_mean,running_var}`.
    pub fn batch_norm(&mut self, x: Value, prefix: &str, epsilon: f64) -> Result<Value, OnnxError> {
        let mut inputs = vec![x];
        for part in ["weight", "bias", "running_mean", "running_var"] {
            inputs.push(self.weight(&format!("{prefix}.{part}"))?);
        }
        Ok(self.node("BatchNormalization", inputs, vec![float("epsilon", epsilon as f32)], None))
    }

    pub fn relu(&mut self, x: Value) -> Value {
        self.node("Relu", vec![x], Vec::new(), None)
    }

    /// `min(max(x, min), max)`: ReLU6 is `clip(x, 0, 6)`.
    pub fn clip(&mut self, x: Value, min: f32, max: f32) -> Value {
        let (min, max) = (self.constant(&[], &[min]), self.constant(&[], &[max]));
        self.node("Clip", vec![x, min, max], Vec::new(), None)
    }

    pub fn add(&mut self, a: Value, b: Value) -> Value {
        self.node("Add", vec![a, b], Vec::new(), None)
    }

    pub fn max_pool(&mut self, x: Value, kernel: usize, stride: usize, pad: usize) -> Value {
        let attributes =
            vec![ints("kernel_shape", &[kernel as i64; 2]), ints("strides", &[stride as i64; 2]), ints("pads", &[pad as i64; 4])];
        self.node("MaxPool", vec![x], attributes, None)
    }

    /// Unpadded average pooling.
    pub fn average_pool(&mut self, x: Value, kernel: usize, stride: usize) -> Value {
        let attributes = vec![ints("kernel_shape", &[kernel as i64; 2]), ints("strides", &[stride as i64; 2])];
        self.node("AveragePool", vec![x], attributes, None)
    }

    /// Concatenation along channels.
    pub fn concat(&mut self, xs: Vec<Value>) -> Value {
        self.node("Concat", xs, vec![int("axis", 1)], None)
    }

    /// `[B, C, H, W]` → `[B, C]`, the spatial mean.
    pub fn global_average_pool(&mut self, x: Value) -> Value {
        let pooled = self.node("GlobalAveragePool", vec![x], Vec::new(), None);
        self.node("Flatten", vec![pooled], vec![int("axis", 1)], None)
    }

    /// `x Wᵀ + b` with the state dict's `{prefix}.weight` (`[out, in]`, PyTorch's layout) and bias.
    pub fn linear(&mut self, x: Value, prefix: &str) -> Result<Value, OnnxError> {
        let inputs = vec![x, self.layer_weight(&format!("{prefix}.weight"))?, self.weight(&format!("{prefix}.bias"))?];
        Ok(self.node("Gemm", inputs, vec![int("transB", 1)], None))
    }

    /// `(x - mean) * (1 / std)` per channel, the input normalization as medkd computes it
    /// (the reciprocal in f32), so the graph's normalized input is medkd's bit for bit.
    pub fn normalize(&mut self, x: Value, mean: &[f32], std: &[f32]) -> Value {
        let shape = [1, mean.len(), 1, 1];
        let inv_std: Vec<f32> = std.iter().map(|s| 1.0 / s).collect();
        let (mean, inv_std) = (self.constant(&shape, mean), self.constant(&shape, &inv_std));
        let centred = self.node("Sub", vec![x, mean], Vec::new(), None);
        self.node("Mul", vec![centred, inv_std], Vec::new(), None)
    }

    /// The model: `body` maps the normalized input to logits; the graph outputs them as
    /// [`LOGITS`] and their activation (after the temperature) as [`PROBABILITIES`].
    /// Every weight of the state dict must have been used: a weight left over means the graph
    /// skips part of the model.
    pub fn model(
        weights: &'a BTreeMap<String, Weight>,
        io: &Io,
        metadata: &[(String, String)],
        body: impl FnOnce(&mut Graph<'a>, Value) -> Result<Value, OnnxError>,
    ) -> Result<Vec<u8>, OnnxError> {
        let [channels, height, width] = io.input_chw;
        if io.mean.len() != channels || io.std.len() != channels {
            return Err(OnnxError::Invalid(format!(
                "the normalization has {} means and {} stds for {channels} input channels",
                io.mean.len(),
                io.std.len()
            )));
        }
        let mut graph = Graph::new(weights, io.weights);
        let x = graph.normalize(INPUT.to_owned(), &io.mean, &io.std);
        let logits = body(&mut graph, x)?;
        let logits = graph.node("Identity", vec![logits], Vec::new(), Some(LOGITS));
        let scaled = match io.temperature {
            Some(t) => {
                let t = graph.constant(&[], &[t]);
                graph.node("Div", vec![logits, t], Vec::new(), None)
            }
            None => logits,
        };
        match io.activation {
            Activation::Softmax => graph.node("Softmax", vec![scaled], vec![int("axis", 1)], Some(PROBABILITIES)),
            Activation::Sigmoid => graph.node("Sigmoid", vec![scaled], Vec::new(), Some(PROBABILITIES)),
        };
        let unused: Vec<String> = weights.keys().filter(|name| !graph.used.contains(*name)).cloned().collect();
        if !unused.is_empty() {
            return Err(OnnxError::UnusedWeights(unused));
        }
        let batch = || Dimension { value: Some(DimensionValue::DimParam("batch".into())) };
        let fixed = |size: usize| Dimension { value: Some(DimensionValue::DimValue(size as i64)) };
        let input = value_info(INPUT, vec![batch(), fixed(channels), fixed(height), fixed(width)]);
        let outputs = [LOGITS, PROBABILITIES].map(|name| value_info(name, vec![batch(), fixed(io.num_classes)]));
        let graph = GraphProto {
            node: graph.nodes,
            name: "medkd".into(),
            initializer: graph.initializers,
            input: vec![input],
            output: outputs.to_vec(),
        };
        let model = ModelProto {
            ir_version: IR_VERSION,
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: OPSET }],
            producer_name: "medkd".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            doc_string: String::new(),
            graph: Some(graph),
            metadata_props: metadata.iter().map(|(key, value)| StringStringEntryProto { key: key.clone(), value: value.clone() }).collect(),
        };
        Ok(model.encode_to_vec())
    }
}

/// Symmetric int8 per output channel (the first axis): each channel's scale is its largest
/// magnitude over 127 (1 for an all-zero channel), values rounded to the nearest step.
fn quantize_per_channel(weight: &Weight) -> (Vec<i8>, Vec<f32>) {
    let per_channel = weight.values.len() / weight.shape[0].max(1);
    let mut quantized = Vec::with_capacity(weight.values.len());
    let mut scales = Vec::with_capacity(weight.shape[0]);
    for channel in weight.values.chunks(per_channel.max(1)) {
        let largest = channel.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let scale = if largest > 0.0 { largest / 127.0 } else { 1.0 };
        quantized.extend(channel.iter().map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8));
        scales.push(scale);
    }
    (quantized, scales)
}

fn float_tensor(name: &str, shape: &[usize], values: &[f32]) -> TensorProto {
    TensorProto {
        dims: shape.iter().map(|&d| d as i64).collect(),
        data_type: DATA_FLOAT,
        name: name.to_owned(),
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

fn value_info(name: &str, dims: Vec<Dimension>) -> ValueInfoProto {
    let tensor = TensorTypeProto { elem_type: DATA_FLOAT, shape: Some(TensorShapeProto { dim: dims }) };
    ValueInfoProto { name: name.to_owned(), r#type: Some(TypeProto { tensor_type: Some(tensor) }) }
}

fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto { name: name.to_owned(), r#type: ATTRIBUTE_INT, i: value, ..Default::default() }
}

fn ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto { name: name.to_owned(), r#type: ATTRIBUTE_INTS, ints: values.to_vec(), ..Default::default() }
}

fn float(name: &str, value: f32) -> AttributeProto {
    AttributeProto { name: name.to_owned(), r#type: ATTRIBUTE_FLOAT, f: value, ..Default::default() }
}

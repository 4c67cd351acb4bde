//! The ONNX export, run by tract (an ONNX runtime independent of medkd and burn): for every
//! architecture and stem, its logits and probabilities are medkd's eval forward on the same
//! images, with the normalization and the temperature inside the graph.

mod common;

use burn::tensor::Tensor;
use common::{Entry, formula_input, formula_tensor, max_abs_diff, to_vec, write_safetensors};
use medkd_models::{Activation, Arch, Model, ModelError, ModelSpec, OnnxIo, WeightPrecision, load_weights, state_dict};
use tract_onnx::prelude::*;

const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// A model with the formula's weights (BatchNorm statistics far from 0 and 1, so a graph that
/// skipped or misplaced one would show).
fn formula_model(spec: &ModelSpec) -> Model {
    let device = medkd_models::test_device();
    let model = Model::new(spec, &device).unwrap();
    let entries: Vec<Entry> = state_dict(&model)
        .unwrap()
        .into_iter()
        .enumerate()
        .map(|(k, (name, weight))| Entry { values: formula_tensor(&name, &weight.shape, k), name, shape: weight.shape })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("formula.safetensors");
    write_safetensors(&path, &entries);
    load_weights(model, &path).unwrap()
}

fn io(spec: &ModelSpec, size: usize, temperature: Option<f32>, activation: Activation) -> OnnxIo {
    let channels = spec.in_channels;
    OnnxIo {
        input_chw: [channels, size, size],
        mean: MEAN[..channels].to_vec(),
        std: STD[..channels].to_vec(),
        num_classes: spec.num_classes,
        temperature,
        activation,
        weights: WeightPrecision::Float32,
    }
}

/// Images in [0, 1], as the graph takes them.
fn images(spec: &ModelSpec, batch: usize, size: usize) -> Tensor<4> {
    let x = (formula_input(batch, size, &medkd_models::test_device()) + 1.0) / 2.0;
    x.narrow(1, 0, spec.in_channels)
}

/// tract's `(logits, probabilities)` for `x`.
fn run_tract(onnx: &[u8], x: &Tensor<4>) -> (Vec<f32>, Vec<f32>) {
    let dims = x.dims();
    let input = tract_onnx::prelude::Tensor::from_shape(&dims, &to_vec(x.clone())).unwrap();
    let model = tract_onnx::onnx()
        .model_for_read(&mut &onnx[..])
        .unwrap()
        .with_input_fact(0, f32::fact(dims).into())
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let outputs = model.run(tvec!(input.into())).unwrap();
    let values = |i: usize| outputs[i].to_plain_array_view::<f32>().unwrap().iter().copied().collect::<Vec<f32>>();
    (values(0), values(1))
}

fn check(spec: ModelSpec, size: usize) {
    let model = formula_model(&spec);
    let temperature = 1.7;
    let onnx = model.to_onnx(&spec, &io(&spec, size, Some(temperature), Activation::Softmax), &[]).unwrap();
    let x = images(&spec, 2, size);
    let device = x.device();
    let channels = spec.in_channels;
    let stat = |values: &[f32]| Tensor::<1>::from_floats(&values[..channels], &device).reshape([1, channels, 1, 1]);
    let logits = model.logits((x.clone() - stat(&MEAN)) / stat(&STD));
    let expected_probs = to_vec(burn::tensor::activation::softmax(logits.clone() / temperature, 1));
    let expected_logits = to_vec(logits);

    let (logits, probs) = run_tract(&onnx, &x);
    let scale = expected_logits.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let label = format!("{} small_input={} {size} px", spec.arch, spec.small_input);
    assert!(max_abs_diff(&logits, &expected_logits) <= 2e-5 * scale, "{label}: logits {logits:?} vs {expected_logits:?}");
    assert!(max_abs_diff(&probs, &expected_probs) <= 1e-5, "{label}: probabilities {probs:?} vs {expected_probs:?}");
}

fn spec(arch: Arch, in_channels: usize, small_input: bool) -> ModelSpec {
    ModelSpec { in_channels, small_input, ..ModelSpec::new(arch, 5) }
}

#[test]
fn resnets_run_in_tract_as_in_medkd() {
    check(spec(Arch::ResNet18, 1, true), 28);
    // The ImageNet stem: 7x7/2 conv and the 3x3/2 max-pool.
    check(spec(Arch::ResNet18, 3, false), 40);
    check(spec(Arch::ResNet34, 3, true), 12);
    check(spec(Arch::ResNet50, 3, true), 12);
}

#[test]
fn mobilenet_v2_runs_in_tract_as_in_medkd() {
    check(spec(Arch::MobileNetV2, 1, true), 28);
    check(spec(Arch::MobileNetV2, 3, false), 35);
}

#[test]
fn densenet_runs_in_tract_as_in_medkd() {
    check(spec(Arch::DenseNet121, 3, true), 16);
    check(spec(Arch::DenseNet121, 1, false), 32);
}

/// Odd and even sizes: TensorFlow's "SAME" padding of the strided convs is asymmetric on even
/// maps (the odd unit after) and symmetric on odd ones.
#[test]
fn efficientnet_lite_runs_in_tract_as_in_medkd() {
    check(spec(Arch::EfficientNetLite0, 3, true), 28);
    check(spec(Arch::EfficientNetLite0, 3, false), 33);
    check(spec(Arch::EfficientNetLite1, 1, true), 18);
    check(spec(Arch::EfficientNetLite2, 3, false), 32);
}

/// Multi-label outputs: a sigmoid per class, no temperature.
#[test]
fn sigmoid_outputs_for_multi_label_models() {
    let spec = spec(Arch::ResNet18, 3, true);
    let model = formula_model(&spec);
    let onnx = model.to_onnx(&spec, &io(&spec, 16, None, Activation::Sigmoid), &[]).unwrap();
    let (logits, probs) = run_tract(&onnx, &images(&spec, 2, 16));
    let sigmoid: Vec<f32> = logits.iter().map(|z| 1.0 / (1.0 + (-z).exp())).collect();
    assert!(max_abs_diff(&probs, &sigmoid) <= 1e-6);
}

/// The metadata properties are in the file, readable by another protobuf reader.
#[test]
fn metadata_is_in_the_model() {
    let spec = spec(Arch::ResNet18, 1, true);
    let metadata = [("medkd".to_owned(), r#"{"arch":"resnet18"}"#.to_owned()), ("classes".to_owned(), "benign,malignant".to_owned())];
    let onnx = formula_model(&spec).to_onnx(&spec, &io(&spec, 28, None, Activation::Softmax), &metadata).unwrap();
    let proto = tract_onnx::onnx().proto_model_for_read(&mut &onnx[..]).unwrap();
    let read: Vec<(String, String)> = proto.metadata_props.iter().map(|p| (p.key.clone(), p.value.clone())).collect();
    assert_eq!(read, metadata);
    assert_eq!(proto.opset_import[0].version, medkd_onnx::OPSET);
    let graph = proto.graph.unwrap();
    assert_eq!(graph.input[0].name, "image");
    assert_eq!(graph.output.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(), ["logits", "probabilities"]);
    // Every initializer of the state dict keeps its torchvision name.
    let names: Vec<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    assert!(names.contains(&"layer4.1.bn2.running_var") && names.contains(&"fc.weight"), "{names:?}");
}

/// A spec that does not describe the model names the first weight the graph looked for, and a
/// normalization of the wrong length is refused before anything is built.
#[test]
fn mismatches_are_named() {
    let resnet18 = spec(Arch::ResNet18, 3, true);
    let model = formula_model(&resnet18);
    let resnet34 = spec(Arch::ResNet34, 3, true);
    let err = model.to_onnx(&resnet34, &io(&resnet34, 16, None, Activation::Softmax), &[]).unwrap_err();
    assert!(matches!(err, ModelError::Onnx { .. }));
    assert_eq!(
        err.to_string(),
        "ONNX export of resnet34: the ONNX graph needs the weight `layer1.2.conv1.weight`, which the model's state dict does not have"
    );
    let mut wrong = io(&resnet18, 16, None, Activation::Softmax);
    wrong.mean.pop();
    let err = model.to_onnx(&resnet18, &wrong, &[]).unwrap_err().to_string();
    assert_eq!(err, "ONNX export of resnet18: the normalization has 2 means and 3 stds for 3 input channels");
}

/// Int8 weights: every conv and linear weight is stored as int8 per output channel with scale
/// max |w| / 127 (so within half a step of the float weight), and the graph computes what
/// medkd computes with those dequantized weights; the file is about a quarter of the float one.
#[test]
fn int8_weights_dequantize_in_the_graph() {
    let spec = spec(Arch::MobileNetV2, 3, true);
    let model = formula_model(&spec);
    let float = model.to_onnx(&spec, &io(&spec, 16, Some(1.3), Activation::Softmax), &[]).unwrap();
    let int8_io = OnnxIo { weights: WeightPrecision::Int8, ..io(&spec, 16, Some(1.3), Activation::Softmax) };
    let int8 = model.to_onnx(&spec, &int8_io, &[]).unwrap();
    let ratio = int8.len() as f64 / float.len() as f64;
    assert!((0.25..0.3).contains(&ratio), "int8 file is {ratio} of the float one");

    // The stored weights, read back by tract's protobuf reader and dequantized here.
    let graph = tract_onnx::onnx().proto_model_for_read(&mut &int8[..]).unwrap().graph.unwrap();
    let initializer = |name: &str| graph.initializer.iter().find(|t| t.name == name).unwrap_or_else(|| panic!("{name}"));
    let float_weights = state_dict(&model).unwrap();
    let mut dequantized = Vec::new();
    for (name, weight) in &float_weights {
        let layer = weight.shape.len() == 4 || (weight.shape.len() == 2 && name.ends_with("weight"));
        let values = if layer {
            let int8 = initializer(name);
            assert_eq!(int8.data_type, 3, "{name} is int8");
            let scales: Vec<f32> =
                initializer(&format!("{name}.scale")).raw_data.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
            let per_channel = weight.values.len() / weight.shape[0];
            let values: Vec<f32> = int8.raw_data.iter().enumerate().map(|(i, &q)| f32::from(q as i8) * scales[i / per_channel]).collect();
            for (c, channel) in weight.values.chunks(per_channel).enumerate() {
                let largest = channel.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                assert!((scales[c] - largest / 127.0).abs() <= 1e-7 * largest, "{name} channel {c}");
            }
            let error = max_abs_diff(&values, &weight.values);
            assert!(error <= scales.iter().fold(0.0f32, |m, s| m.max(*s)) * 0.5001, "{name}: {error}");
            values
        } else {
            weight.values.clone()
        };
        dequantized.push(Entry { name: name.clone(), shape: weight.shape.clone(), values });
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dequantized.safetensors");
    write_safetensors(&path, &dequantized);
    let dequantized_model = load_weights(Model::new(&spec, &medkd_models::test_device()).unwrap(), &path).unwrap();

    let x = images(&spec, 2, 16);
    let device = x.device();
    let stat = |values: &[f32]| Tensor::<1>::from_floats(values, &device).reshape([1, 3, 1, 1]);
    let expected = to_vec(dequantized_model.logits((x.clone() - stat(&MEAN)) / stat(&STD)));
    let (logits, _) = run_tract(&int8, &x);
    let scale = expected.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    assert!(max_abs_diff(&logits, &expected) <= 2e-5 * scale, "{logits:?} vs {expected:?}");
}

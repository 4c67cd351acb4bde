//! Parity with torchvision, against values computed by tools/golden/torchvision_logits.py.

mod common;

use std::collections::BTreeMap;

use burn::module::Module;
use common::*;
use medkd_models::{Arch, Model, ModelSpec, load_weights, load_weights_partial, save_weights};

/// Forward through burn's f32 kernels vs torchvision in float64 on the same f32 weights.
const TOLERANCE: f32 = 1e-4;

/// Writes the formula state dict of `golden[arch]` with torchvision names, loads it strictly and
/// compares eval-mode logits and pooled embeddings with torchvision's.
fn check_golden(arch: Arch) {
    let golden = golden();
    let entry = &golden["golden"][arch.name()];
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("formula.safetensors");
    let entries = write_formula_weights(&weights, &entry["state_dict"]);

    let device = medkd_models::test_device();
    let num_classes = entry["num_classes"].as_u64().unwrap() as usize;
    let model = Model::new(&ModelSpec::new(arch, num_classes), &device).unwrap();
    let model = load_weights(model, &weights).unwrap().valid();
    let input_shape = usizes(&entry["input_shape"]);
    let features = model.forward(formula_input(input_shape[0], input_shape[2], &device));

    let logits_diff = max_abs_diff(&to_vec(features.logits), &floats(&entry["logits"]));
    let pooled_diff = max_abs_diff(&to_vec(features.pooled), &floats(&entry["pooled"]));
    println!("{arch}: max |logits - torchvision| = {logits_diff:e}, pooled {pooled_diff:e}");
    assert!(logits_diff < TOLERANCE, "{arch} logits differ by {logits_diff}");
    assert!(pooled_diff < TOLERANCE, "{arch} pooled embedding differs by {pooled_diff}");

    // Saving writes back exactly what was loaded, under the same names.
    let saved = dir.path().join("saved.safetensors");
    save_weights(&model, &saved).unwrap();
    let mut expected = entries;
    expected.sort_by(|a, b| a.name.cmp(&b.name));
    for (written, original) in read_safetensors(&saved).iter().zip(&expected) {
        assert_eq!(written.name, original.name);
        assert_eq!(written.shape, original.shape, "{}", written.name);
        assert!(written.values == original.values, "{} not bit-exact", written.name);
    }
    assert_eq!(read_safetensors(&saved).len(), expected.len());
}

#[test]
fn resnet18_matches_torchvision() {
    check_golden(Arch::ResNet18);
}

#[test]
fn mobilenetv2_matches_torchvision() {
    check_golden(Arch::MobileNetV2);
}

/// A real torch.save() checkpoint, {"epoch": 3, "state_dict": {conv1, bn1, layer1}} with
/// num_batches_tracked, loads through the pickle reader and reproduces torchvision's layer1.
#[test]
fn pytorch_checkpoint_reproduces_layer1() {
    let golden = golden();
    let pth = &golden["pth"];
    let skip: Vec<&str> = pth["skip"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    let device = medkd_models::test_device();
    let spec = ModelSpec::new(Arch::ResNet18, pth["num_classes"].as_u64().unwrap() as usize);
    let input_shape = usizes(&pth["input_shape"]);
    let expected = floats(&pth["layer1"]);
    let layer1 = |model: Model| {
        let stage = model.valid().forward(formula_input(input_shape[0], input_shape[2], &device)).spatial(0).clone();
        assert_eq!(stage.dims().to_vec(), usizes(&pth["layer1_shape"]));
        to_vec(stage)
    };

    let nested = golden_dir().join(pth["file"].as_str().unwrap());
    let model = load_weights_partial(Model::new(&spec, &device).unwrap(), &nested, &skip).unwrap();
    let diff = max_abs_diff(&layer1(model), &expected);
    println!("layer1 from the .pth checkpoint: max |diff| = {diff:e}");
    assert!(diff < TOLERANCE, "layer1 differs by {diff}");

    // The same stem from a bare state dict, layer1 from the checkpoint.
    let bare = golden_dir().join(pth["bare_file"].as_str().unwrap());
    let model = Model::new(&spec, &device).unwrap();
    let model = load_weights_partial(model, &bare, &["layer", "fc."]).unwrap();
    let model = load_weights_partial(model, &nested, &["conv1.", "bn1.", "layer2.", "layer3.", "layer4.", "fc."]).unwrap();
    assert!(max_abs_diff(&layer1(model), &expected) < TOLERANCE);

    // Strict loading names what the subset lacks.
    let err = load_weights(Model::new(&spec, &device).unwrap(), &nested).unwrap_err().to_string();
    assert!(err.contains("layer4.1.bn2.running_var") && err.contains("fc.weight"), "{err}");
}

/// `save_weights` writes exactly torchvision's state-dict keys and shapes (less
/// num_batches_tracked) for every torchvision architecture (EfficientNet-Lite: efficientnet_lite.rs).
#[test]
fn saved_keys_and_shapes_are_torchvision_s() {
    let golden = golden();
    let device = medkd_models::test_device();
    let dir = tempfile::tempdir().unwrap();
    for arch in [Arch::ResNet18, Arch::ResNet34, Arch::ResNet50, Arch::MobileNetV2, Arch::DenseNet121] {
        let expected: BTreeMap<String, Vec<usize>> = state_dict_entries(&golden["state_dicts"][arch.name()]).into_iter().collect();
        let model = Model::new(&ModelSpec::new(arch, 1000), &device).unwrap();
        let path = dir.path().join(format!("{arch}.safetensors"));
        save_weights(&model, &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let written: BTreeMap<String, Vec<usize>> = file.tensors().into_iter().map(|(name, view)| (name, view.shape().to_vec())).collect();
        assert_eq!(written, expected, "{arch}");
        // And it loads back strictly.
        load_weights(Model::new(&ModelSpec::new(arch, 1000), &device).unwrap(), &path).unwrap();
    }
}

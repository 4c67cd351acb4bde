//! Grad-CAM against PyTorch autograd (tools/golden/grad_cam_golden.py): ResNet-18 and
//! MobileNetV2 with the formula weights of the torchvision parity test, one class per image.

mod common;

use common::*;
use medkd_models::{Arch, Model, ModelSpec, load_weights};
use serde_json::Value;

#[test]
fn grad_cam_matches_pytorch_autograd() {
    let golden: Value = serde_json::from_str(&std::fs::read_to_string(golden_dir().join("grad_cam.json")).unwrap()).unwrap();
    let parity = common::golden();
    for arch in [Arch::ResNet18, Arch::MobileNetV2] {
        let entry = &parity["golden"][arch.name()];
        let dir = tempfile::tempdir().unwrap();
        let weights = dir.path().join("formula.safetensors");
        write_formula_weights(&weights, &entry["state_dict"]);
        let device = medkd_models::test_device();
        let model = Model::new(&ModelSpec::new(arch, entry["num_classes"].as_u64().unwrap() as usize), &device).unwrap();
        let model = load_weights(model, &weights).unwrap();
        let case = &golden[arch.name()];
        let classes = usizes(&case["classes"]);
        let size = case["input_size"].as_u64().unwrap() as usize;
        let cam = model.grad_cam(formula_input(2, size, &device), &classes);
        let expected: Vec<f32> = case["cam"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|image| {
                floats(&Value::Array(image.as_array().unwrap().iter().flat_map(|row| row.as_array().unwrap().clone()).collect()))
            })
            .collect();
        assert_eq!(cam.dims(), [2, 4, 4], "{arch}");
        let cam = to_vec(cam);
        let diff = max_abs_diff(&cam, &expected);
        let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
        println!("{arch}: max |Grad-CAM - PyTorch| = {diff:e} (largest value {scale})");
        assert!(scale > 0.01 && diff < 1e-4 * scale.max(1.0), "{arch}: Grad-CAM differs by {diff}");
        // The class matters: another class gives another map.
        let other = to_vec(model.grad_cam(formula_input(2, size, &device), &[0, 0]));
        assert!(max_abs_diff(&other, &expected) > 10.0 * diff.max(1e-6), "{arch}: the map does not depend on the class");
    }
}

//! The box terms against PyTorch and torchvision (tools/golden/box_losses_golden.py made
//! tests/golden/boxes.json): decoding, per-box L1 and GIoU loss, the weighted means the
//! objective's `box_l1` and `giou` terms give, and their gradient.

use burn::prelude::*;
use medkd_losses::{Features, LossContext, LossSpec, Objective, Targets, TaskFacts, box_l1, decode_boxes, giou_loss};
use medkd_models::{Arch, Model, ModelSpec};
use serde_json::Value;

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn assert_close(got: &[f32], want: &[f32], tolerance: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tolerance * w.abs().max(1.0), "{what}[{i}]: {g} vs torch {w}");
    }
}

fn values(t: Tensor<1>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

fn box_facts(layout: &medkd_models::FeatureLayout, boxes: bool) -> TaskFacts<'_> {
    TaskFacts { num_classes: 4, multi_label: false, boxes, class_names: &[], class_counts: &[], student: layout, teachers: &[], seed: 0 }
}

fn specs(json: &str) -> Vec<LossSpec> {
    serde_json::from_str(json).unwrap()
}

#[test]
fn box_terms_match_torchvision() {
    let golden: Value = serde_json::from_str(include_str!("golden/boxes.json")).unwrap();
    let device = medkd_models::test_device().autodiff();
    let layout = Model::new(&ModelSpec { small_input: true, ..ModelSpec::new(Arch::ResNet18, 4) }, &device).unwrap().layout();
    let objective = Objective::new(&specs(r#"[{"kind": "box_l1"}, {"kind": "giou"}]"#), &box_facts(&layout, true)).unwrap();
    for case in golden["cases"].as_array().unwrap() {
        let n = case["n"].as_u64().unwrap() as usize;
        let outputs = Tensor::<2>::from_data(TensorData::new(floats(&case["outputs"]), [n, 4]), &device).require_grad();
        let truth_values = floats(&case["truth"]);
        let truth = Tensor::<2>::from_data(TensorData::new(truth_values.clone(), [n, 4]), &device);
        let decoded = decode_boxes(outputs.clone());
        assert_close(&decoded.clone().into_data().try_to_vec::<f32>().unwrap(), &floats(&case["decoded"]), 1e-6, "decoded");
        assert_close(&values(box_l1(decoded.clone(), truth.clone())), &floats(&case["l1"]), 1e-5, "l1");
        assert_close(&values(giou_loss(decoded, truth)), &floats(&case["giou"]), 1e-5, "giou");

        // Through the objective, with the case's sample weights.
        let weights = floats(&case["weights"]);
        let targets = Targets::Boxes(truth_values.chunks(4).map(|b| [b[0], b[1], b[2], b[3]]).collect());
        let features = Features { logits: outputs.clone(), pooled: outputs.clone(), maps: Vec::new() };
        let context = LossContext { sample_weights: Some(&weights), ..LossContext::student_only(&features, &targets, 0) };
        let (total, terms) = objective.compute(&context).unwrap();
        let term_values: Vec<f32> = terms.into_iter().map(|t| t.value.into_scalar::<f32>()).collect();
        let expected = [case["l1_mean"].as_f64().unwrap() as f32, case["giou_mean"].as_f64().unwrap() as f32];
        assert_close(&term_values, &expected, 1e-5, "weighted means");
        let grads = total.backward();
        let grad = outputs.grad(&grads).unwrap().into_data().try_to_vec::<f32>().unwrap();
        assert_close(&grad, &floats(&case["grad"]), 1e-4, "gradient");
    }
}

#[test]
fn box_and_class_terms_refuse_the_other_task() {
    let device = medkd_models::test_device();
    let layout = Model::new(&ModelSpec { small_input: true, ..ModelSpec::new(Arch::ResNet18, 4) }, &device).unwrap().layout();
    let error = Objective::new(&specs(r#"[{"kind": "cross_entropy"}]"#), &box_facts(&layout, true)).err().unwrap().to_string();
    assert!(error.contains("'cross_entropy'") && error.contains("localization") && error.contains("box_l1"), "{error}");
    let error = Objective::new(&specs(r#"[{"kind": "giou"}]"#), &box_facts(&layout, false)).err().unwrap().to_string();
    assert!(error.contains("'giou'") && error.contains("box targets"), "{error}");
    let error = serde_json::from_str::<Vec<LossSpec>>(r#"[{"kind": "box_l1", "beta": 2}]"#).unwrap_err().to_string();
    assert!(error.contains("beta"), "{error}");
}

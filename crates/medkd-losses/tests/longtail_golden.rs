//! The long-tail terms (`focal`, `class_balanced`, `balanced_softmax`, `ldam`) against PyTorch
//! (tools/golden/longtail_golden.py made tests/golden/longtail.json). Each case's `spec` is
//! resolved as a `[[loss]]` term against its training class counts, so the class weights, prior
//! and margins are checked along with the loss.

use burn::prelude::*;
use medkd_losses::{Features, LossContext, LossSpec, Objective, Targets, TaskFacts};
use medkd_models::FeatureLayout;
use serde_json::Value;

fn numbers<T>(values: &Value, cast: impl Fn(&Value) -> T) -> Vec<T> {
    values.as_array().unwrap().iter().map(cast).collect()
}

/// The term's value on the case's batch, at the case's (0-based) epoch, and its gradient in the
/// logits.
fn term_value(case: &Value) -> (f64, Vec<f32>) {
    let (n, k) = (case["n"].as_u64().unwrap() as usize, case["k"].as_u64().unwrap() as usize);
    let spec: LossSpec = serde_json::from_value(case["spec"].clone()).unwrap();
    let counts = numbers(&case["class_counts"], |v| v.as_u64().unwrap() as usize);
    let names: Vec<String> = (0..k).map(|c| format!("class{c}")).collect();
    let student = FeatureLayout { maps: vec![], pooled_dim: 1 };
    let facts = TaskFacts {
        num_classes: k,
        multi_label: false,
        boxes: false,
        class_names: &names,
        class_counts: &counts,
        student: &student,
        teachers: &[],
        seed: 0,
    };
    let objective = Objective::new(&[spec], &facts).unwrap();
    let device = medkd_models::test_device().autodiff();
    let logits = numbers(&case["logits"], |v| v.as_f64().unwrap() as f32);
    let logits = Tensor::<2>::from_data(TensorData::new(logits, [n, k]), &device).require_grad();
    let features = Features { maps: vec![], pooled: Tensor::<2>::zeros([n, 1], &device), logits: logits.clone() };
    let targets = Targets::Classes(numbers(&case["labels"], |v| v.as_u64().unwrap() as usize));
    let ctx = LossContext::student_only(&features, &targets, case["epoch"].as_u64().unwrap());
    let (total, _) = objective.compute(&ctx).unwrap();
    let grads = total.backward();
    let grad = logits.grad(&grads).unwrap().into_data().try_to_vec::<f32>().unwrap();
    (total.into_scalar::<f32>() as f64, grad)
}

#[test]
fn long_tail_terms_match_pytorch() {
    let golden: Value = serde_json::from_str(include_str!("golden/longtail.json")).unwrap();
    let cases = golden["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 27);
    let mut kinds = std::collections::BTreeSet::new();
    for (index, case) in cases.iter().enumerate() {
        let (value, grad) = term_value(case);
        let expected = case["expected"].as_f64().unwrap();
        assert!((value - expected).abs() <= 1e-5 * expected.abs(), "case {index} {}: {value} vs torch {expected}", case["spec"]);
        let expected = numbers(&case["grad"], |v| v.as_f64().unwrap());
        let largest = expected.iter().fold(0.0f64, |m, g| m.max(g.abs()));
        for (g, e) in grad.iter().zip(&expected) {
            assert!((*g as f64 - e).abs() <= 1e-5 * largest, "case {index} {} gradient: {grad:?} vs torch {expected:?}", case["spec"]);
        }
        kinds.insert(case["spec"]["kind"].as_str().unwrap().to_string());
    }
    assert_eq!(kinds.into_iter().collect::<Vec<_>>(), ["balanced_softmax", "class_balanced", "focal", "ldam"]);
}

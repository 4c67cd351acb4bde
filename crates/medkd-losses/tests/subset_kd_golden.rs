//! The `subset_kd` term against PyTorch (tools/golden/subset_kd_golden.py made
//! tests/golden/subset_kd.json): disjoint, overlapping and "other"-class subsets on single-label
//! data, and the sigmoid form on multi-label data, with given and default (tail-ness) weights.

use burn::prelude::*;
use medkd_losses::{Features, LossContext, LossSpec, Objective, Targets, TaskFacts, TeacherFacts};
use medkd_models::FeatureLayout;
use serde_json::Value;

fn floats(values: &Value) -> Vec<f32> {
    values.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect()
}

fn strings(values: &Value) -> Vec<String> {
    values.as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
}

fn features(logits: Tensor<2>, device: &Device) -> Features {
    let n = logits.dims()[0];
    Features { maps: vec![], pooled: Tensor::<2>::zeros([n, 1], device), logits }
}

#[test]
fn subset_kd_matches_pytorch() {
    let golden: Value = serde_json::from_str(include_str!("golden/subset_kd.json")).unwrap();
    let classes = strings(&golden["classes"]);
    let counts: Vec<usize> = golden["class_counts"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    let cases = golden["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 6);
    let device = medkd_models::test_device().autodiff();
    let layout = FeatureLayout { maps: vec![], pooled_dim: 1 };
    for (index, case) in cases.iter().enumerate() {
        let n = case["n"].as_u64().unwrap() as usize;
        let multi_label = case["multi_label"].as_bool().unwrap();
        let teacher_classes: Vec<Vec<String>> = case["teacher_classes"].as_array().unwrap().iter().map(strings).collect();
        let teachers: Vec<TeacherFacts> =
            teacher_classes.iter().map(|names| TeacherFacts { layout: layout.clone(), class_names: names.clone() }).collect();
        let facts = TaskFacts {
            num_classes: classes.len(),
            multi_label,
            boxes: false,
            class_names: &classes,
            class_counts: &counts,
            student: &layout,
            teachers: &teachers,
            seed: 0,
        };
        let spec: LossSpec = serde_json::from_value(case["spec"].clone()).unwrap();
        let objective = Objective::new(&[spec], &facts).unwrap();

        let logits = Tensor::<2>::from_data(TensorData::new(floats(&case["student"]), [n, classes.len()]), &device).require_grad();
        let student = features(logits.clone(), &device);
        let teacher_outputs: Vec<Features> = (case["teachers"].as_array().unwrap().iter().zip(&teacher_classes))
            .map(|(values, names)| features(Tensor::<2>::from_data(TensorData::new(floats(values), [n, names.len()]), &device), &device))
            .collect();
        // The term reads no labels; give the task's kind of target.
        let targets = if multi_label {
            Targets::MultiHot { values: vec![0.0; n * classes.len()], num_labels: classes.len() }
        } else {
            Targets::Classes(vec![0; n])
        };
        let ctx = LossContext { teachers: &teacher_outputs, ..LossContext::student_only(&student, &targets, 0) };
        let (total, _) = objective.compute(&ctx).unwrap();
        let grads = total.backward();
        let grad = logits.grad(&grads).unwrap().into_data().try_to_vec::<f32>().unwrap();
        let value = total.into_scalar::<f32>() as f64;
        let expected = case["expected"].as_f64().unwrap();
        assert!((value - expected).abs() <= 1e-5 * expected.abs(), "case {index}: {value} vs torch {expected}");
        let expected: Vec<f64> = case["grad"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let largest = expected.iter().fold(0.0f64, |m, g| m.max(g.abs()));
        for (g, e) in grad.iter().zip(&expected) {
            assert!((*g as f64 - e).abs() <= 1e-5 * largest, "case {index} gradient: {grad:?} vs torch {expected:?}");
        }
    }
}

/// Teachers whose classes do not fit, and weights of the wrong length, are errors naming the term.
#[test]
fn bad_subset_teachers_and_weights_are_refused() {
    let classes: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
    let layout = FeatureLayout { maps: vec![], pooled_dim: 1 };
    let error = |teacher_classes: &[&[&str]], multi_label: bool, spec: &str| {
        let teachers: Vec<TeacherFacts> = teacher_classes
            .iter()
            .map(|names| TeacherFacts { layout: layout.clone(), class_names: names.iter().map(|s| s.to_string()).collect() })
            .collect();
        let facts = TaskFacts {
            num_classes: 3,
            multi_label,
            boxes: false,
            class_names: &classes,
            class_counts: &[5, 5, 5],
            student: &layout,
            teachers: &teachers,
            seed: 0,
        };
        let spec: LossSpec = serde_json::from_str(spec).unwrap();
        Objective::new(&[spec], &facts).err().expect("should be rejected").to_string()
    };
    let plain = r#"{"kind": "subset_kd"}"#;
    let e = error(&[&["a", "z"]], false, plain);
    assert!(e.contains("subset_kd") && e.contains("\"z\" is not one of the student's classes"), "{e}");
    let e = error(&[&["a", "other"]], true, plain);
    assert!(e.contains("multi-label"), "{e}");
    let e = error(&[&["a", "b", "c", "other"]], false, plain);
    assert!(e.contains("covers every student class"), "{e}");
    let e = error(&[&["a", "b"], &["c", "other"]], false, r#"{"kind": "subset_kd", "subset_weights": [1.0]}"#);
    assert!(e.contains("subset_weights lists 1 weights for 2 teachers"), "{e}");
    let e = error(&[], false, plain);
    assert!(e.contains("subset_kd") && e.contains("teacher"), "{e}");
    // Plain `kd` compares whole rows: a per-subset teacher is refused there.
    let e = error(&[&["a", "b"]], false, r#"{"kind": "kd"}"#);
    assert!(e.contains("'kd'") && e.contains("subset_kd"), "{e}");
}

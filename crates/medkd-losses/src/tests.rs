use burn::prelude::*;
use medkd_models::{Arch, Model, ModelSpec};

use super::*;
use crate::objective::TaskFacts;

fn names(k: usize) -> Vec<String> {
    (0..k).map(|c| format!("class{c}")).collect()
}

fn facts<'a>(names: &'a [String], counts: &'a [usize], multi_label: bool) -> TaskFacts<'a> {
    TaskFacts { num_classes: names.len(), multi_label, class_names: names, class_counts: counts }
}

#[test]
fn inverse_frequency_weights_are_total_over_count() {
    let weights = inverse_frequency_weights(&[10, 30, 60], &names(3)).unwrap();
    assert_eq!(weights, vec![10.0, 100.0 / 30.0, 100.0 / 60.0]);
    let error = inverse_frequency_weights(&[10, 0], &names(2)).unwrap_err().to_string();
    assert!(error.contains("class1") && error.contains("no sample"), "{error}");
}

#[test]
fn objective_rejects_terms_that_do_not_fit_the_task() {
    let names = names(3);
    let ce = LossSpec::CrossEntropy { weight: 1.0, label_smoothing: 0.0, class_weights: ClassWeights::default() };
    let error = Objective::new(&[ce], &facts(&names, &[1, 1, 1], true)).err().unwrap().to_string();
    assert!(error.contains("cross_entropy") && error.contains("multi-label"), "{error}");
    let error = Objective::new(&[LossSpec::Bce { weight: 1.0 }], &facts(&names, &[1, 1, 1], false)).err().unwrap().to_string();
    assert!(error.contains("bce") && error.contains("single-label"), "{error}");
    let wrong_length = LossSpec::CrossEntropy { weight: 1.0, label_smoothing: 0.0, class_weights: ClassWeights::Explicit(vec![1.0, 2.0]) };
    let error = Objective::new(&[wrong_length], &facts(&names, &[1, 1, 1], false)).err().unwrap().to_string();
    assert!(error.contains("2 weights for 3 classes"), "{error}");
    assert!(Objective::new(&[], &facts(&names, &[1, 1, 1], false)).is_err());
}

#[test]
fn spec_parses_and_rejects_unknown_fields() {
    #[derive(serde::Deserialize)]
    struct Doc {
        loss: Vec<LossSpec>,
    }
    let doc: Doc = from_json(r#"{"loss": [{"kind": "cross_entropy", "class_weights": "inverse_frequency"}, {"kind": "cross_entropy", "class_weights": [1.0, 2.0], "weight": 0.5}]}"#);
    assert_eq!(doc.loss[0], LossSpec::CrossEntropy { weight: 1.0, label_smoothing: 0.0, class_weights: ClassWeights::Rule(ClassWeightRule::InverseFrequency) });
    assert_eq!(doc.loss[1].weight(), 0.5);
    assert!(serde_json::from_str::<Doc>(r#"{"loss": [{"kind": "cross_entropy", "temperature": 4}]}"#).is_err());
    assert!(serde_json::from_str::<Doc>(r#"{"loss": [{"kind": "cross_entropy", "class_weights": "balanced"}]}"#).is_err());
}

fn from_json<T: serde::de::DeserializeOwned>(json: &str) -> T {
    serde_json::from_str(json).unwrap()
}

#[test]
fn objective_total_is_the_weighted_sum_of_terms() {
    let device = burn::prelude::Device::flex();
    let model = Model::new(&ModelSpec { arch: Arch::ResNet18, num_classes: 3, in_channels: 3, small_input: true }, &device).unwrap();
    let images = burn::prelude::Tensor::<4>::zeros([2, 3, 8, 8], &device);
    let student = model.valid().forward(images);
    let names = names(3);
    let specs = [
        LossSpec::CrossEntropy { weight: 0.25, label_smoothing: 0.0, class_weights: ClassWeights::default() },
        LossSpec::CrossEntropy { weight: 2.0, label_smoothing: 0.1, class_weights: ClassWeights::Rule(ClassWeightRule::InverseFrequency) },
    ];
    let objective = Objective::new(&specs, &facts(&names, &[5, 3, 2], false)).unwrap();
    let targets = Targets::Classes(vec![0, 2]);
    let (total, terms) = objective.compute(&LossContext { student: &student, targets: &targets });
    let values: Vec<f32> = terms.into_iter().map(|t| t.value.into_scalar::<f32>()).collect();
    let total = total.into_scalar::<f32>();
    assert!((total - (0.25 * values[0] + 2.0 * values[1])).abs() < 1e-5, "{total} vs {values:?}");
    assert_ne!(values[0], values[1], "class weights and smoothing change the term");
}

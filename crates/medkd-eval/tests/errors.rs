//! Bad input is reported as an `EvalError` that names the problem, never a panic.

use medkd_eval::{EvalError, evaluate_multi_label, evaluate_single_label};

fn names(k: usize) -> Vec<String> {
    (0..k).map(|c| format!("class_{c}")).collect()
}

#[test]
fn too_few_classes() {
    let err = evaluate_single_label(&[1.0], 1, &[0], &names(1)).unwrap_err();
    assert_eq!(err, EvalError::TooFewClasses { what: "classes", min: 2, got: 1 });
    assert_eq!(err.to_string(), "need at least 2 classes, got 1");
    let err = evaluate_multi_label(&[], 0, &[], &[]).unwrap_err();
    assert_eq!(err, EvalError::TooFewClasses { what: "labels", min: 1, got: 0 });
}

#[test]
fn class_names_mismatch() {
    let err = evaluate_single_label(&[0.5, 0.5], 2, &[0], &names(3)).unwrap_err();
    assert_eq!(err, EvalError::NamesMismatch { expected: 2, actual: 3 });
    assert!(err.to_string().contains("got 3 class/label names"), "{err}");
    let err = evaluate_multi_label(&[0.5, 0.5], 2, &[0, 1], &names(1)).unwrap_err();
    assert_eq!(err, EvalError::NamesMismatch { expected: 2, actual: 1 });
}

#[test]
fn empty_input() {
    assert_eq!(evaluate_single_label(&[], 2, &[], &names(2)), Err(EvalError::Empty));
    assert_eq!(evaluate_multi_label(&[], 3, &[], &names(3)), Err(EvalError::Empty));
}

#[test]
fn length_mismatch_names_expected_and_actual() {
    let err = evaluate_single_label(&[0.5; 5], 2, &[0, 1, 1], &names(2)).unwrap_err();
    assert_eq!(err.to_string(), "probs has length 5, expected N*K = 3*2 = 6");
    let err = evaluate_multi_label(&[0.5; 6], 2, &[0; 4], &names(2)).unwrap_err();
    assert_eq!(err.to_string(), "targets has length 4, expected N*K = 3*2 = 6");
}

#[test]
fn ragged_multi_label_probs() {
    let err = evaluate_multi_label(&[0.5; 5], 2, &[0; 5], &names(2)).unwrap_err();
    assert_eq!(err.to_string(), "probs has length 5, which is not a multiple of K = 2");
}

#[test]
fn label_out_of_range() {
    let err = evaluate_single_label(&[0.5; 6], 3, &[0, 3], &names(3)).unwrap_err();
    assert_eq!(err, EvalError::LabelOutOfRange { sample: 1, label: 3, num_classes: 3 });
    assert_eq!(err.to_string(), "label 3 of sample 1 is out of range for K = 3 classes");
}

#[test]
fn non_finite_probability() {
    let err = evaluate_single_label(&[0.5, 0.5, 0.2, f32::NAN], 2, &[0, 1], &names(2)).unwrap_err();
    assert!(matches!(err, EvalError::NonFiniteProbability { index: 3, sample: 1, class: 1, .. }), "{err:?}");
    assert_eq!(err.to_string(), "probability at index 3 (sample 1, class 1) is not finite: NaN");
    let err = evaluate_multi_label(&[f32::INFINITY, 0.5], 2, &[0, 1], &names(2)).unwrap_err();
    assert!(matches!(err, EvalError::NonFiniteProbability { index: 0, .. }), "{err:?}");
}

#[test]
fn multi_label_target_not_binary() {
    let err = evaluate_multi_label(&[0.5; 4], 2, &[0, 1, 2, 0], &names(2)).unwrap_err();
    assert_eq!(err, EvalError::InvalidTarget { index: 2, sample: 1, label: 0, value: 2 });
    assert_eq!(err.to_string(), "target at index 2 (sample 1, label 0) is 2, expected 0 or 1");
}

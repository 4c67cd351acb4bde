//! Agreement with scikit-learn on the seeded cases written by `tools/golden/metrics_golden.py`.

use medkd_eval::{ClassMetrics, ClassificationReport, MultiLabelReport, evaluate_multi_label, evaluate_single_label};
use serde::Deserialize;

const TOLERANCE: f64 = 1e-6;

#[derive(Deserialize)]
struct Golden {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Case {
    SingleLabel {
        name: String,
        num_classes: usize,
        class_names: Vec<String>,
        probs: Vec<f32>,
        labels: Vec<usize>,
        expected: ClassificationReport,
    },
    MultiLabel {
        name: String,
        num_labels: usize,
        label_names: Vec<String>,
        probs: Vec<f32>,
        targets: Vec<u8>,
        expected: MultiLabelReport,
    },
}

fn golden_cases() -> Vec<Case> {
    let golden: Golden = serde_json::from_str(include_str!("golden/metrics.json"))
        .expect("tests/golden/metrics.json is valid; regenerate it with tools/golden/metrics_golden.py");
    golden.cases
}

fn assert_close(what: &str, actual: f64, expected: f64) {
    assert!((actual - expected).abs() <= TOLERANCE, "{what}: medkd-eval gives {actual}, sklearn {expected}");
}

fn assert_close_opt(what: &str, actual: Option<f64>, expected: Option<f64>) {
    match (actual, expected) {
        (Some(actual), Some(expected)) => assert_close(what, actual, expected),
        (None, None) => {}
        _ => panic!("{what}: medkd-eval gives {actual:?}, sklearn {expected:?}"),
    }
}

fn assert_classes_close(case: &str, actual: &[ClassMetrics], expected: &[ClassMetrics]) {
    assert_eq!(actual.len(), expected.len(), "{case}: number of classes");
    for (a, e) in actual.iter().zip(expected) {
        let what = |metric: &str| format!("{case} / {} / {metric}", e.name);
        assert_eq!(a.name, e.name, "{case}: class order");
        assert_eq!(a.support, e.support, "{}", what("support"));
        assert_close(&what("precision"), a.precision, e.precision);
        assert_close(&what("recall"), a.recall, e.recall);
        assert_close(&what("f1"), a.f1, e.f1);
        assert_close_opt(&what("auc"), a.auc, e.auc);
    }
}

#[test]
fn metrics_match_sklearn() {
    let cases = golden_cases();
    for case in &cases {
        match case {
            Case::SingleLabel { name, num_classes, class_names, probs, labels, expected } => {
                let got = evaluate_single_label(probs, *num_classes, labels, class_names).unwrap();
                assert_eq!(got.n, expected.n, "{name}: n");
                assert_close(&format!("{name} / accuracy"), got.accuracy, expected.accuracy);
                assert_close(&format!("{name} / balanced_accuracy"), got.balanced_accuracy, expected.balanced_accuracy);
                assert_close(&format!("{name} / macro_f1"), got.macro_f1, expected.macro_f1);
                assert_close_opt(&format!("{name} / auc"), got.auc, expected.auc);
                assert_close(&format!("{name} / ece"), got.ece, expected.ece);
                assert_classes_close(name, &got.per_class, &expected.per_class);
                assert_eq!(got.confusion, expected.confusion, "{name}: confusion matrix");
            }
            Case::MultiLabel { name, num_labels, label_names, probs, targets, expected } => {
                let got = evaluate_multi_label(probs, *num_labels, targets, label_names).unwrap();
                assert_eq!(got.n, expected.n, "{name}: n");
                assert_close(&format!("{name} / subset_accuracy"), got.subset_accuracy, expected.subset_accuracy);
                assert_close(&format!("{name} / macro_f1"), got.macro_f1, expected.macro_f1);
                assert_close(&format!("{name} / micro_f1"), got.micro_f1, expected.micro_f1);
                assert_close_opt(&format!("{name} / macro_auc"), got.macro_auc, expected.macro_auc);
                assert_classes_close(name, &got.per_label, &expected.per_label);
            }
        }
    }
}

/// Guards against the golden file silently losing the cases the brief asks for.
#[test]
fn golden_file_covers_required_cases() {
    let cases = golden_cases();
    let single: Vec<&ClassificationReport> = cases
        .iter()
        .filter_map(|case| match case {
            Case::SingleLabel { expected, .. } => Some(expected),
            Case::MultiLabel { .. } => None,
        })
        .collect();
    for k in [2, 5, 7] {
        assert!(single.iter().any(|r| r.per_class.len() == k), "no K={k} case");
    }
    assert!(
        single.iter().any(|r| r.per_class.iter().any(|c| c.support == 0 && c.auc.is_none())),
        "no case with a class absent from y_true"
    );
    assert!(cases.iter().any(|case| matches!(case, Case::MultiLabel { .. })), "no multi-label case");
}

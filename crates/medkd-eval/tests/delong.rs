//! Agreement of `delong_auc` and `delong_paired` with the textbook pairwise DeLong computation
//! (numpy, scipy, scikit-learn) on the seeded cases written by `tools/golden/delong_golden.py`.

use medkd_eval::{AucCi, PairedDelong, delong_auc, delong_paired};
use serde::Deserialize;

/// Relative tolerance; values that are exactly 0 (standard errors of perfect or identical models)
/// must come out as 0 up to rounding.
const TOLERANCE: f64 = 1e-9;

#[derive(Deserialize)]
struct Golden {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    positive: Vec<bool>,
    scores_a: Vec<f32>,
    scores_b: Vec<f32>,
    a: AucCi,
    b: AucCi,
    paired: PairedDelong,
}

fn assert_close(what: &str, actual: f64, expected: f64) {
    let ok = (actual - expected).abs() <= TOLERANCE * expected.abs() + 1e-15;
    assert!(ok, "{what}: medkd-eval gives {actual}, the textbook computation {expected}");
}

fn assert_ci_close(what: &str, actual: &AucCi, expected: &AucCi) {
    assert_close(&format!("{what} / auc"), actual.auc, expected.auc);
    assert_close(&format!("{what} / std_err"), actual.std_err, expected.std_err);
    assert_close(&format!("{what} / lower"), actual.lower, expected.lower);
    assert_close(&format!("{what} / upper"), actual.upper, expected.upper);
}

#[test]
fn delong_matches_textbook_computation() {
    let golden: Golden = serde_json::from_str(include_str!("golden/delong.json"))
        .expect("tests/golden/delong.json is valid; regenerate it with tools/golden/delong_golden.py");
    assert!(golden.cases.len() >= 9, "expected the full set of cases");
    for case in &golden.cases {
        let name = &case.name;
        let a = delong_auc(&case.scores_a, &case.positive).unwrap().unwrap();
        assert_ci_close(&format!("{name} / a"), &a, &case.a);
        let b = delong_auc(&case.scores_b, &case.positive).unwrap().unwrap();
        assert_ci_close(&format!("{name} / b"), &b, &case.b);

        let (got, expected) = (delong_paired(&case.scores_a, &case.scores_b, &case.positive).unwrap().unwrap(), &case.paired);
        let what = |field: &str| format!("{name} / paired / {field}");
        assert_close(&what("auc_a"), got.auc_a, expected.auc_a);
        assert_close(&what("auc_b"), got.auc_b, expected.auc_b);
        assert_close(&what("difference"), got.difference, expected.difference);
        assert_close(&what("std_err"), got.std_err, expected.std_err);
        assert_close(&what("z"), got.z, expected.z);
        assert_close(&what("p_value"), got.p_value, expected.p_value);
        assert_close(&what("lower"), got.lower, expected.lower);
        assert_close(&what("upper"), got.upper, expected.upper);
    }
}

/// A binary classification report carries DeLong's interval of its class-1 AUC, and prints it.
#[test]
fn binary_report_carries_the_interval() {
    let golden: Golden = serde_json::from_str(include_str!("golden/delong.json")).unwrap();
    let names = ["negative".to_string(), "positive".to_string()];
    let mut checked = 0;
    for case in golden.cases.iter().filter(|case| case.scores_a.iter().all(|s| (0.0..=1.0).contains(s))) {
        let probs: Vec<f32> = case.scores_a.iter().flat_map(|&s| [1.0 - s, s]).collect();
        let labels: Vec<usize> = case.positive.iter().map(|&p| usize::from(p)).collect();
        let report = medkd_eval::evaluate_single_label(&probs, 2, &labels, &names).unwrap();
        assert_ci_close(&case.name, report.auc_ci.as_ref().unwrap(), &case.a);
        let line = format!("AUC 95% CI (DeLong): {:.4} to {:.4}", case.a.lower, case.a.upper);
        assert!(report.table().contains(&line), "{}", report.table());
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} cases have scores in [0, 1]");
}

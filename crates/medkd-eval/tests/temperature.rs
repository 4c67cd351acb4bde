//! Temperature scaling against PyTorch's LBFGS fit (tools/golden/temperature_golden.py).

use medkd_eval::{TEMPERATURE_RANGE, fit_temperature, scale_temperature, temperature_nll};
use serde::Deserialize;

#[derive(Deserialize)]
struct Golden {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    num_classes: usize,
    probs: Vec<f32>,
    labels: Vec<usize>,
    temperature: f64,
    nll_at_1: f64,
    nll_at_t: f64,
    scaled_head: Vec<f32>,
}

fn cases() -> Vec<Case> {
    serde_json::from_str::<Golden>(include_str!("golden/temperature.json")).expect("golden JSON").cases
}

#[test]
fn fitted_temperature_and_nll_match_pytorch() {
    for case in cases() {
        let k = case.num_classes;
        let t = fit_temperature(&case.probs, k, &case.labels);
        println!("T = {t} (PyTorch {})", case.temperature);
        assert!((t - case.temperature).abs() < 1e-4 * case.temperature, "T {t} vs {}", case.temperature);
        assert!((temperature_nll(&case.probs, k, &case.labels, 1.0) - case.nll_at_1).abs() < 1e-6);
        assert!((temperature_nll(&case.probs, k, &case.labels, t) - case.nll_at_t).abs() < 1e-6);
        // The fit lowers the NLL: these models were mis-calibrated on purpose.
        assert!(case.nll_at_t < case.nll_at_1 - 0.01);
        let scaled = scale_temperature(&case.probs[..5 * k], k, case.temperature);
        let diff = scaled.iter().zip(&case.scaled_head).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(diff < 1e-6, "scaled probabilities differ by {diff}");
    }
}

#[test]
fn unit_temperature_changes_nothing_and_the_search_is_bounded() {
    let case = &cases()[0];
    let k = case.num_classes;
    let same = scale_temperature(&case.probs, k, 1.0);
    assert!(same.iter().zip(&case.probs).all(|(a, b)| (a - b).abs() < 1e-6));
    // Every sample right and confident: the NLL keeps falling as T shrinks, so the fit stops
    // at the bottom of the range instead of running away.
    let certain = [0.9, 0.05, 0.05, 0.1, 0.8, 0.1];
    let t = fit_temperature(&certain, 3, &[0, 1]);
    assert!((t - TEMPERATURE_RANGE.0).abs() < 1e-3, "{t}");
}

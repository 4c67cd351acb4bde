//! Loss values against PyTorch (tools/golden/losses_golden.py made tests/golden/losses.json).

use burn::prelude::*;
use medkd_losses::{bce_with_logits, cross_entropy, weighted_cross_entropy};
use serde_json::Value;

fn tensor(values: &Value, n: usize, k: usize) -> Tensor<2> {
    let data: Vec<f32> = values.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    Tensor::<2>::from_data(TensorData::new(data, [n, k]), &medkd_models::test_device())
}

#[test]
fn losses_match_pytorch() {
    let golden: Value = serde_json::from_str(include_str!("golden/losses.json")).unwrap();
    let cases = golden["cases"].as_array().unwrap();
    assert!(cases.len() >= 7);
    for (index, case) in cases.iter().enumerate() {
        let (n, k) = (case["n"].as_u64().unwrap() as usize, case["k"].as_u64().unwrap() as usize);
        let logits = tensor(&case["logits"], n, k);
        let value = match case["kind"].as_str().unwrap() {
            "cross_entropy" => {
                let labels: Vec<usize> = case["labels"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
                let weights: Option<Vec<f32>> =
                    case["class_weights"].as_array().map(|w| w.iter().map(|v| v.as_f64().unwrap() as f32).collect());
                let smoothing = case["label_smoothing"].as_f64().unwrap() as f32;
                let samples: Option<Vec<f32>> =
                    case["sample_weights"].as_array().map(|w| w.iter().map(|v| v.as_f64().unwrap() as f32).collect());
                match samples {
                    Some(samples) => weighted_cross_entropy(logits, &labels, weights.as_deref(), smoothing, Some(&samples)),
                    None => cross_entropy(logits, &labels, weights.as_deref(), smoothing),
                }
            }
            "bce" => bce_with_logits(logits, tensor(&case["targets"], n, k)),
            other => panic!("unknown golden kind {other}"),
        };
        let value = value.into_scalar::<f32>() as f64;
        let expected = case["expected"].as_f64().unwrap();
        assert!((value - expected).abs() < 1e-5 * expected.abs().max(1.0), "case {index}: {value} vs torch {expected}");
    }
}

#[test]
fn cross_entropy_gradient_is_softmax_minus_target() {
    // d/dz of mean CE is (softmax(z) - onehot) / N: checks the loss is differentiable as built.
    let device = medkd_models::test_device().autodiff();
    let logits = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 2.0, 0.5, -1.0, 0.0, 3.0], [2, 3]), &device).require_grad();
    let grads = cross_entropy(logits.clone(), &[1, 0], None, 0.0).backward();
    let grad: Vec<f32> = logits.grad(&grads).unwrap().into_data().try_to_vec::<f32>().unwrap();
    let softmax = |row: [f32; 3]| {
        let sum: f32 = row.iter().map(|v| v.exp()).sum();
        row.map(|v| v.exp() / sum)
    };
    let (p0, p1) = (softmax([1.0, 2.0, 0.5]), softmax([-1.0, 0.0, 3.0]));
    let expected = [p0[0] / 2.0, (p0[1] - 1.0) / 2.0, p0[2] / 2.0, (p1[0] - 1.0) / 2.0, p1[1] / 2.0, p1[2] / 2.0];
    for (g, e) in grad.iter().zip(expected) {
        assert!((g - e).abs() < 1e-6, "{grad:?} vs {expected:?}");
    }
}

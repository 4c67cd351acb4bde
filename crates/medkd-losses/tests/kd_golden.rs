//! Distillation terms against PyTorch (tools/golden/kd_golden.py made tests/golden/kd.json).

use burn::prelude::*;
use burn::tensor::Distribution;
use medkd_losses::{ConvRegressor, attention_transfer, channel_gram_rmse, hint_mse, kd_bce, kd_kl, rkd_angle, rkd_distance};
use serde_json::Value;

fn floats(values: &Value) -> Vec<f32> {
    values.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect()
}

/// The case's `student` or `teacher` tensor, with its `*_shape`.
fn tensor<const D: usize>(case: &Value, who: &str, device: &Device) -> Tensor<D> {
    let shape: Vec<usize> = case[format!("{who}_shape")].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    Tensor::<D>::from_data(TensorData::new(floats(&case[who]), shape), device)
}

fn assert_close(value: f64, expected: f64, what: &str) {
    assert!((value - expected).abs() <= 1e-5 * expected.abs(), "{what}: {value} vs torch {expected}");
}

fn cases() -> Vec<Value> {
    let golden: Value = serde_json::from_str(include_str!("golden/kd.json")).unwrap();
    golden["cases"].as_array().unwrap().clone()
}

#[test]
fn distillation_losses_match_pytorch() {
    let device = medkd_models::test_device();
    let cases = cases();
    assert_eq!(cases.len(), 20);
    for (index, case) in cases.iter().enumerate() {
        let kind = case["kind"].as_str().unwrap();
        let temperature = || case["temperature"].as_f64().unwrap() as f32;
        let vectors = || (tensor::<2>(case, "student", &device), tensor::<2>(case, "teacher", &device));
        let maps = || (tensor::<4>(case, "student", &device), tensor::<4>(case, "teacher", &device));
        let check = |what: &str, loss: Tensor<1>| {
            let expected = case["expected"].as_f64().unwrap();
            assert_close(loss.into_scalar::<f32>() as f64, expected, &format!("case {index} {what}"));
        };
        match kind {
            "kd_kl" => {
                let (s, t) = vectors();
                check(kind, kd_kl(s, t, temperature()));
            }
            "kd_bce" => {
                let (s, t) = vectors();
                check(kind, kd_bce(s, t, temperature()));
            }
            "rkd_distance" => {
                let (s, t) = vectors();
                check(kind, rkd_distance(s, t));
            }
            "rkd_angle" => {
                let n = case["student_shape"][0].as_u64().unwrap() as usize;
                for chunk in [1, 3, n] {
                    let (s, t) = vectors();
                    check(&format!("{kind} chunk {chunk}"), rkd_angle(s, t, chunk));
                }
            }
            "attention_transfer" => {
                let (s, t) = maps();
                check(kind, attention_transfer(s, t));
            }
            "hint_mse" => {
                let (s, t) = maps();
                check(kind, hint_mse(s, t));
            }
            "channel_gram_rmse" => {
                let (s, t) = maps();
                check(kind, channel_gram_rmse(s, t));
            }
            other => panic!("unknown golden kind {other}"),
        }
    }
}

fn assert_gradient_close(grad: Tensor<1>, case: &Value, what: &str) {
    let grad = grad.into_data().try_to_vec::<f32>().unwrap();
    let expected = floats(&case["student_grad"]);
    assert_eq!(grad.len(), expected.len(), "{what}");
    let scale = expected.iter().fold(0.0f32, |m, e| m.max(e.abs()));
    for (g, e) in grad.iter().zip(&expected) {
        assert!((g - e).abs() <= 1e-5 * scale, "{what}: {grad:?} vs torch {expected:?}");
    }
}

#[test]
fn kd_kl_gradient_matches_autograd() {
    let device = medkd_models::test_device().autodiff();
    for case in cases().iter().filter(|case| case["kind"] == "kd_kl") {
        let student = tensor::<2>(case, "student", &device).require_grad();
        let temperature = case["temperature"].as_f64().unwrap() as f32;
        let grads = kd_kl(student.clone(), tensor(case, "teacher", &device), temperature).backward();
        assert_gradient_close(student.grad(&grads).unwrap().flatten(0, 1), case, &format!("T = {temperature}"));
    }
}

#[test]
fn channel_gram_gradient_matches_autograd() {
    // The cases with fewer positions than channels, which take the H*W x H*W form.
    let device = medkd_models::test_device().autodiff();
    let cases: Vec<Value> =
        cases().into_iter().filter(|case| case["kind"] == "channel_gram_rmse" && case.get("student_grad").is_some()).collect();
    assert_eq!(cases.len(), 2);
    for case in &cases {
        let student = tensor::<4>(case, "student", &device).require_grad();
        let grads = channel_gram_rmse(student.clone(), tensor(case, "teacher", &device)).backward();
        assert_gradient_close(student.grad(&grads).unwrap().flatten(0, 3), case, &format!("{:?}", case["student_shape"]));
    }
}

#[test]
fn rkd_angle_gradient_matches_autograd() {
    // torch's direct form (normalized differences) against medkd's Gram form, a repeated row included.
    let device = medkd_models::test_device().autodiff();
    let cases: Vec<Value> = cases().into_iter().filter(|case| case["kind"] == "rkd_angle" && case.get("student_grad").is_some()).collect();
    assert_eq!(cases.len(), 2);
    for case in &cases {
        for chunk in [1, 4] {
            let student = tensor::<2>(case, "student", &device).require_grad();
            let grads = rkd_angle(student.clone(), tensor(case, "teacher", &device), chunk).backward();
            assert_gradient_close(student.grad(&grads).unwrap().flatten(0, 1), case, &format!("chunk {chunk}"));
        }
    }
}

#[test]
fn rkd_gradients_are_finite() {
    // The zero differences x_j - x_j and the zeroed diagonal distances must not give NaN.
    let device = medkd_models::test_device().autodiff();
    let student = Tensor::<2>::random([6, 5], Distribution::Normal(0.0, 1.0), &device).require_grad();
    let teacher = Tensor::<2>::random([6, 7], Distribution::Normal(0.0, 1.0), &device);
    let loss = rkd_distance(student.clone(), teacher.clone()) + rkd_angle(student.clone(), teacher, 4);
    let grad = student.grad(&loss.backward()).unwrap().into_data().try_to_vec::<f32>().unwrap();
    assert!(grad.iter().all(|g| g.is_finite()) && grad.iter().any(|&g| g != 0.0), "{grad:?}");
}

#[test]
fn rkd_angle_chunks_agree_at_full_size() {
    let device = medkd_models::test_device();
    let student = Tensor::<2>::random([128, 2048], Distribution::Normal(0.0, 1.0), &device);
    let teacher = Tensor::<2>::random([128, 2048], Distribution::Normal(0.0, 2.0), &device);
    let [a, b] = [16, 37].map(|chunk| rkd_angle(student.clone(), teacher.clone(), chunk).into_scalar::<f32>() as f64);
    assert!(a.is_finite() && a > 0.0, "{a}");
    assert_close(b, a, "chunk 37 vs chunk 16");
}

#[test]
fn conv_regressor_maps_student_channels_to_teacher_channels() {
    let device = medkd_models::test_device();
    let regressor = ConvRegressor::new(6, 8, &device);
    let student = Tensor::<4>::random([2, 6, 3, 3], Distribution::Normal(0.0, 1.0), &device);
    let regressed = regressor.forward(student);
    assert_eq!(regressed.dims(), [2, 8, 3, 3]);
    assert!(regressed.into_data().try_to_vec::<f32>().unwrap().iter().all(|&v| v >= 0.0), "ReLU output");
}

//! SSKD rotation terms against PyTorch (tools/golden/sskd_golden.py made tests/golden/sskd.json).

use burn::prelude::*;
use medkd_losses::{error_level_keep, kd_rotated, rotated_rows, rotation_contrastive, rotation_similarity, similarity_kd, with_rotations};
use serde_json::Value;

fn floats(values: &Value) -> Vec<f32> {
    values.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect()
}

fn indices(values: &Value) -> Vec<usize> {
    values.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect()
}

fn usize_of(case: &Value, key: &str) -> usize {
    case[key].as_u64().unwrap() as usize
}

fn matrix(values: &Value, rows: usize, cols: usize, device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(floats(values), [rows, cols]), device)
}

fn assert_all_close(actual: &[f32], expected: &[f32], what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!((a - e).abs() <= 1e-5 * e.abs().max(1.0), "{what}[{i}]: {a} vs torch {e}");
    }
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

fn cases(kind: &str) -> Vec<Value> {
    let golden: Value = serde_json::from_str(include_str!("golden/sskd.json")).unwrap();
    let cases: Vec<Value> = golden["cases"].as_array().unwrap().iter().filter(|c| c["kind"] == kind).cloned().collect();
    assert!(!cases.is_empty(), "no {kind} cases");
    cases
}

#[test]
fn rotated_views_match_torch_rot90() {
    for case in cases("rotations") {
        let shape: [usize; 4] = indices(&case["input_shape"]).try_into().unwrap();
        let input = Tensor::<4>::from_data(TensorData::new(floats(&case["input"]), shape), &medkd_models::test_device());
        assert_eq!(values(with_rotations(input)), floats(&case["expected"]), "exact copies of the pixels");
    }
}

#[test]
fn kd_on_rotated_views_matches_sskd_with_its_ranking() {
    let device = medkd_models::test_device().autodiff();
    for case in cases("kd_rotated") {
        let (rows, cols) = (usize_of(&case, "rows"), usize_of(&case, "cols"));
        let (temperature, ratio) = (case["temperature"].as_f64().unwrap() as f32, case["ratio"].as_f64().unwrap());
        let targets = indices(&case["targets"]);
        let teacher = matrix(&case["teacher"], rows, cols, &device);
        let repeated: Vec<usize> = targets.iter().flat_map(|&t| [t; 3]).collect();
        let kept = error_level_keep(&values(rotated_rows(teacher.clone())), cols, &repeated, ratio);
        assert_eq!(kept, indices(&case["kept"]), "kept rows");

        let student = matrix(&case["student"], rows, cols, &device).require_grad();
        let loss = kd_rotated(student.clone(), teacher, &targets, temperature, ratio);
        assert_all_close(&values(loss.clone()), &[case["expected"].as_f64().unwrap() as f32], "loss");
        let grads = loss.backward();
        assert_all_close(&values(student.grad(&grads).unwrap()), &floats(&case["student_grad"]), "student gradient");
    }
}

#[test]
fn similarity_kd_matches_sskd_with_its_ranking() {
    let device = medkd_models::test_device().autodiff();
    for case in cases("similarity_kd") {
        let batch = usize_of(&case, "batch");
        let (temperature, ratio) = (case["temperature"].as_f64().unwrap() as f32, case["ratio"].as_f64().unwrap());
        let teacher = matrix(&case["teacher"], 4 * batch, usize_of(&case, "teacher_dim"), &device);
        let own: Vec<usize> = (0..batch).flat_map(|i| [i; 3]).collect();
        let kept = error_level_keep(&values(rotation_similarity(teacher.clone())), batch, &own, ratio);
        assert_eq!(kept, indices(&case["kept"]), "kept rows");

        let student = matrix(&case["student"], 4 * batch, usize_of(&case, "student_dim"), &device).require_grad();
        let loss = similarity_kd(student.clone(), teacher, temperature, ratio);
        assert_all_close(&values(loss.clone()), &[case["expected"].as_f64().unwrap() as f32], "loss");
        let grads = loss.backward();
        assert_all_close(&values(student.grad(&grads).unwrap()), &floats(&case["student_grad"]), "student gradient");
    }
}

#[test]
fn rotation_task_loss_matches_sskd_teacher_stage() {
    for case in cases("rotation_contrastive") {
        let batch = usize_of(&case, "batch");
        let projected = matrix(&case["input"], 4 * batch, usize_of(&case, "dim"), &medkd_models::test_device());
        assert_all_close(&values(rotation_contrastive(projected)), &[case["expected"].as_f64().unwrap() as f32], "loss");
    }
}

#[test]
fn ranking_keeps_correct_rows_then_the_best_ranked_wrong_ones() {
    // Row targets: 0, 1, 2, 0. Ranks: row 0 -> 0 (correct), row 1 -> 2, row 2 -> 1, row 3 -> 0.
    let scores = [3.0, 1.0, 2.0, 5.0, 1.0, 9.0, 0.0, 4.0, 2.0, 7.0, 0.0, 1.0];
    let targets = [0, 1, 2, 0];
    assert_eq!(error_level_keep(&scores, 3, &targets, 0.0), [0, 3]);
    assert_eq!(error_level_keep(&scores, 3, &targets, 0.5), [0, 2, 3], "the wrong row ranked 1 beats the one ranked 2");
    assert_eq!(error_level_keep(&scores, 3, &targets, 1.0), [0, 1, 2, 3]);
}

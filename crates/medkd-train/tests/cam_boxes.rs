//! Boxes from class activation maps (weakly supervised localization): coarse maps upsampled to
//! the input as torch's bilinear `interpolate` (align_corners=False) does, then the largest
//! region's box, against tools/golden/cam_box_golden.py (torch + scipy).

use burn::prelude::*;
use medkd_train::evaluate::boxes_of_maps;
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    height: usize,
    width: usize,
    size: usize,
    threshold: f64,
    map: Vec<f32>,
    #[serde(rename = "box")]
    bbox: [f64; 4],
}

#[derive(Deserialize)]
struct Golden {
    upsampled: Vec<Case>,
}

#[test]
fn upsampled_activation_maps_give_torch_and_scipy_boxes() {
    let text = include_str!("../../medkd-eval/tests/golden/cam_box.json");
    let golden: Golden = serde_json::from_str(text).expect("regenerate with tools/golden/cam_box_golden.py");
    let device = medkd_models::test_device();
    for (i, case) in golden.upsampled.iter().enumerate() {
        let map = Tensor::<3>::from_data(TensorData::new(case.map.clone(), [1, case.height, case.width]), &device);
        let got = boxes_of_maps(map, [case.size, case.size], case.threshold)[0];
        for (g, e) in got.iter().zip(&case.bbox) {
            assert!((f64::from(*g) - e).abs() < 1e-6, "case {i}: {got:?} vs {:?}", case.bbox);
        }
    }
}

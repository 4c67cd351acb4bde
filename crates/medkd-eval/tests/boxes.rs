//! Agreement with torchvision's `box_iou` on the seeded boxes of `tools/golden/box_metrics_golden.py`.

use medkd_eval::{EvalError, box_iou, evaluate_boxes};
use serde::Deserialize;

#[derive(Deserialize)]
struct Golden {
    predicted: Vec<[f32; 4]>,
    truth: Vec<[f32; 4]>,
    iou: Vec<f64>,
    mean_iou: f64,
    acc_at_50: f64,
    acc_at_75: f64,
}

fn golden() -> Golden {
    serde_json::from_str(include_str!("golden/boxes.json")).expect("regenerate with tools/golden/box_metrics_golden.py")
}

#[test]
fn iou_and_accuracy_at_thresholds_match_torchvision() {
    let golden = golden();
    let report = evaluate_boxes(&golden.predicted, &golden.truth).unwrap();
    assert_eq!(report.n, golden.iou.len());
    for (i, (actual, expected)) in report.iou.iter().zip(&golden.iou).enumerate() {
        assert!((actual - expected).abs() < 1e-6, "box {i}: {actual} vs torchvision {expected}");
    }
    assert!((report.mean_iou - golden.mean_iou).abs() < 1e-6);
    assert_eq!((report.acc_at_50, report.acc_at_75), (golden.acc_at_50, golden.acc_at_75));
    assert!(golden.acc_at_50 > 0.0 && golden.acc_at_50 < 1.0, "the cases cover both sides of 0.5");
}

#[test]
fn boxes_without_area_overlap_nothing_and_bad_input_is_named() {
    assert_eq!(box_iou([0.5, 0.5, 0.4, 0.9], [0.0, 0.0, 1.0, 1.0]), 0.0);
    assert_eq!(box_iou([0.2, 0.2, 0.2, 0.2], [0.2, 0.2, 0.2, 0.2]), 0.0);
    assert_eq!(evaluate_boxes(&[], &[]), Err(EvalError::Empty));
    let one = [[0.1, 0.1, 0.5, 0.5]];
    assert!(matches!(evaluate_boxes(&[], &one), Err(EvalError::LengthMismatch { .. })));
    let error = evaluate_boxes(&[[0.1, f32::NAN, 0.5, 0.5]], &one).unwrap_err().to_string();
    assert!(error.contains("predicted box of sample 0"), "{error}");
}

#[derive(Deserialize)]
struct CamCase {
    height: usize,
    width: usize,
    threshold: f64,
    map: Vec<f32>,
    #[serde(rename = "box")]
    bbox: [f64; 4],
}

#[derive(Deserialize)]
struct CamGolden {
    maps: Vec<CamCase>,
}

/// Boxes from activation maps agree with scipy.ndimage.label's largest component
/// (`tools/golden/cam_box_golden.py`), ties and an empty map included.
#[test]
fn cam_boxes_match_scipy_connected_components() {
    let golden: CamGolden =
        serde_json::from_str(include_str!("golden/cam_box.json")).expect("regenerate with tools/golden/cam_box_golden.py");
    for (i, case) in golden.maps.iter().enumerate() {
        let got = medkd_eval::cam_box(&case.map, case.height, case.width, case.threshold);
        for (g, e) in got.iter().zip(&case.bbox) {
            assert!((f64::from(*g) - e).abs() < 1e-6, "case {i}: {got:?} vs {:?}", case.bbox);
        }
    }
}

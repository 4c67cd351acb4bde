//! Metrics for medkd: accuracy, balanced accuracy, F1, ROC-AUC and calibration error for
//! single-label and multi-label classifiers, many/medium/few-shot groups of long-tailed
//! label sets, IoU metrics for one box per image, the curves a report draws (ROC,
//! precision-recall, reliability), and DeLong's confidence interval of a binary ROC-AUC and
//! paired test of two models' AUCs on the same samples.
//!
//! Pure Rust with no burn dependency, so it compiles fast and can be checked against
//! scikit-learn (see `tools/golden/metrics_golden.py` and `tests/golden.rs`).

mod activation;
mod auc;
mod boxes;
mod calibration;
mod cam_box;
mod confusion;
mod curves;
mod delong;
mod error;
mod input;
mod metric;
mod multi_label;
mod report;
mod shots;
mod single_label;
mod table;

pub use activation::{sigmoid, softmax_rows};
pub use boxes::{BoxReport, box_iou, evaluate_boxes};
pub use calibration::{
    ECE_BINS, ReliabilityBin, TEMPERATURE_RANGE, expected_calibration_error, fit_temperature, reliability_bins, scale_temperature,
    temperature_nll,
};
pub use cam_box::cam_box;
pub use curves::{PrCurve, RocCurve, average_precision, precision_recall_curve, roc_curve};
pub use delong::{AucCi, PairedDelong, delong_auc, delong_paired};
pub use error::EvalError;
pub use metric::{Metric, higher_is_better};
pub use multi_label::{MULTI_LABEL_THRESHOLD, MultiLabelReport, evaluate_multi_label};
pub use report::{ClassMetrics, LabelMetrics};
pub use shots::{ShotGroup, ShotGroups, ShotReport, ShotThresholds};
pub use single_label::{ClassificationReport, evaluate_single_label};

//! `summary.json`, the run folder's record of what was trained and how it scored: written from
//! [`Summary`] at the end of a run and read back through it (staged plans, `compare`).

use std::collections::BTreeMap;
use std::path::Path;

use medkd_eval::Metric;
use medkd_models::Arch;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::TrainError;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub dataset: String,
    pub class_names: Vec<String>,
    pub input_channels: usize,
    /// The task the labels define (`binary`, `multiclass`, `multilabel`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<medkd_data::Task>,
    /// Each input channel's mean and std, subtracted and divided after the eval transforms (on
    /// values in [0, 1]): with `normalize.kind = "dataset"` measured at run time and written
    /// nowhere else, so exported weights need it to be used outside medkd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalization: Option<medkd_data::Normalization>,
    pub model: Arch,
    /// The 3x3 stride-1 stem for small images instead of ImageNet's (`model.small_input`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub small_input: Option<bool>,
    /// Weight smoothing (`ema`, `swa`) whose average was evaluated and saved, if any.
    pub weight_averaging: Option<String>,
    pub params: usize,
    pub macs: u64,
    /// `[height, width]` after the eval transforms.
    pub input_size: [usize; 2],
    pub epochs_run: usize,
    /// 0-based; `None` only if no epoch had a defined selection metric.
    pub best_epoch: Option<usize>,
    pub select_metric: Metric,
    pub wall_seconds: f64,
    /// Version, commit and machine of the binary (`build_info::json`).
    pub medkd: Value,
    pub seed: u64,
    pub seeds: Seeds,
    /// Images left out because they do not decode (`data.bad_images = "skip"`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped_images: Vec<medkd_data::BadImage>,
    /// The best checkpoint's metrics on the validation and test splits.
    pub val: SplitMetrics,
    pub test: SplitMetrics,
    /// Temperature scaling fitted on validation (single-label classifiers); `medkd eval` and
    /// `medkd predict` apply it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
    /// What the method adds ([`crate::method::Method::summary`]), e.g. `teachers`.
    #[serde(flatten)]
    pub method: BTreeMap<String, Value>,
}

/// One temperature for the best checkpoint's logits, fitted on the validation split by NLL, and
/// what it changes. Accuracy stays (each image's argmax does not move), and so does binary AUC;
/// a multi-class one-vs-rest AUC can move slightly, as a class's probabilities across images can
/// reorder when the softmax is sharpened or flattened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub temperature: f64,
    pub val_nll_before: f64,
    pub val_nll_after: f64,
    pub test_ece_before: f64,
    pub test_ece_after: f64,
}

/// Every seed a run used.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Seeds {
    pub model_init: u64,
    /// The seeded split's seed, when medkd made the split.
    pub split: Option<u64>,
    pub shuffle_and_augment: u64,
}

/// Headline metrics of one split (`null` where undefined, e.g. AUC on a one-class split) and the
/// full report. Classifiers fill the classification fields, localization the box ones.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitMetrics {
    pub acc: Option<f64>,
    pub balanced_acc: Option<f64>,
    pub macro_f1: Option<f64>,
    pub auc: Option<f64>,
    pub ece: Option<f64>,
    /// Mean task loss (NLL, or BCE per label; a localization method's box loss).
    pub loss: Option<f64>,
    /// Localization metrics, for box targets only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_iou: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acc_at_50: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acc_at_75: Option<f64>,
    /// Mean recall of the many-, medium- and few-shot classes (`shots`); `None` for a group
    /// with no class in the split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub many_recall: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub medium_recall: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub few_recall: Option<f64>,
    /// The shot groups' classes, recall and accuracy (classifiers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shots: Option<medkd_eval::ShotReport>,
    pub report: Value,
}

impl Summary {
    pub fn read(path: &Path) -> Result<Summary, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| TrainError::Input(format!("{}: not a medkd summary.json ({e})", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every summary.json kept under results/ (written by binaries since the first campaign)
    /// reads through the typed struct and writes back the same JSON values.
    #[test]
    fn kept_summaries_read_back() {
        let results = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../results");
        let mut dirs = vec![results];
        let mut read = 0;
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.file_name().is_some_and(|n| n == "summary.json") {
                    let summary = Summary::read(&path).unwrap_or_else(|e| panic!("{e}"));
                    let original: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
                    // Through text, as summary.json is written: an f32 field (the normalization) goes
                    // to JSON as its shortest decimal, which `to_value` would widen to f64 digits.
                    let written: Value = serde_json::from_str(&serde_json::to_string(&summary).unwrap()).unwrap();
                    assert_eq!(written, original, "{}", path.display());
                    read += 1;
                }
            }
        }
        assert!(read >= 100, "read {read} summaries");
    }
}

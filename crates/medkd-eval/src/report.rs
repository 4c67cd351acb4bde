//! Per-class metrics shared by the single-label and multi-label reports.

use serde::{Deserialize, Serialize};

use crate::confusion::BinaryCounts;

/// Metrics of one class, one-vs-rest (or of one label of a multi-label task).
///
/// Precision, recall and F1 are 0 where undefined (sklearn's `zero_division=0`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    pub name: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Number of samples whose target is this class.
    pub support: u64,
    /// ROC-AUC of this class's probability; `None` when the class has no positives or no
    /// negatives.
    pub auc: Option<f64>,
}

/// Metrics of one label of a multi-label task; the same fields as a class.
pub type LabelMetrics = ClassMetrics;

impl ClassMetrics {
    pub(crate) fn new(name: &str, counts: BinaryCounts, auc: Option<f64>) -> Self {
        Self {
            name: name.to_owned(),
            precision: counts.precision(),
            recall: counts.recall(),
            f1: counts.f1(),
            support: counts.support(),
            auc,
        }
    }
}

/// Arithmetic mean, `None` for no values.
pub(crate) fn mean(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let (sum, count) = values.into_iter().fold((0.0, 0usize), |(sum, count), v| (sum + v, count + 1));
    (count > 0).then(|| sum / count as f64)
}

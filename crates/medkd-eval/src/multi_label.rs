//! Multi-label (any number of labels per sample) classification report.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::auc::roc_auc;
use crate::confusion::BinaryCounts;
use crate::report::mean;
use crate::{EvalError, LabelMetrics, Metric, input, table};

/// A label is predicted present when its probability is at least this.
pub const MULTI_LABEL_THRESHOLD: f32 = 0.5;

/// Metrics of a multi-label classifier at [`MULTI_LABEL_THRESHOLD`], with sklearn's definitions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MultiLabelReport {
    /// Number of samples.
    pub n: usize,
    /// Fraction of samples whose whole predicted label set is exactly right.
    pub subset_accuracy: f64,
    /// Mean of the per-label F1 scores.
    pub macro_f1: f64,
    /// F1 of the true/false positives and false negatives pooled over all labels.
    pub micro_f1: f64,
    /// Mean of the defined per-label AUCs; `None` when none is defined.
    pub macro_auc: Option<f64>,
    pub per_label: Vec<LabelMetrics>,
}

/// Evaluates `probs`, N x `num_labels` row-major label probabilities, against the N x
/// `num_labels` multi-hot `targets` (each 0 or 1).
pub fn evaluate_multi_label(
    probs: &[f32],
    num_labels: usize,
    targets: &[u8],
    label_names: &[String],
) -> Result<MultiLabelReport, EvalError> {
    let n = input::check_multi_label(probs, num_labels, targets, label_names)?;
    let k = num_labels;
    let present = |p: f32| p >= MULTI_LABEL_THRESHOLD;

    let mut counts = vec![BinaryCounts::default(); k];
    for (i, (&p, &t)) in probs.iter().zip(targets).enumerate() {
        counts[i % k].record(present(p), t == 1);
    }
    let per_label: Vec<LabelMetrics> = counts
        .iter()
        .enumerate()
        .map(|(j, &label_counts)| {
            let column = probs.iter().zip(targets).skip(j).step_by(k);
            let auc = roc_auc(column.map(|(&p, &t)| (p, t == 1)));
            LabelMetrics::new(&label_names[j], label_counts, auc)
        })
        .collect();

    let exact_matches = probs
        .chunks_exact(k)
        .zip(targets.chunks_exact(k))
        .filter(|(row, truth)| row.iter().zip(*truth).all(|(&p, &t)| present(p) == (t == 1)))
        .count();

    Ok(MultiLabelReport {
        n,
        subset_accuracy: exact_matches as f64 / n as f64,
        macro_f1: mean(per_label.iter().map(|l| l.f1)).expect("validated input has K >= 1"),
        micro_f1: counts.iter().fold(BinaryCounts::default(), |sum, &c| sum.add(c)).f1(),
        macro_auc: mean(per_label.iter().filter_map(|l| l.auc)),
        per_label,
    })
}

impl MultiLabelReport {
    /// The report as an aligned plain-text table (the same as its `Display`).
    pub fn table(&self) -> String {
        self.to_string()
    }

    /// `None` for metrics that a multi-label report does not have (balanced accuracy, ECE).
    pub fn metric(&self, metric: Metric) -> Option<f64> {
        match metric {
            Metric::Accuracy => Some(self.subset_accuracy),
            Metric::MacroF1 => Some(self.macro_f1),
            Metric::MicroF1 => Some(self.micro_f1),
            Metric::Auc => self.macro_auc,
            Metric::BalancedAccuracy | Metric::Ece | Metric::Loss | Metric::MeanIou | Metric::AccAt50 | Metric::AccAt75 => None,
        }
    }

    /// The metric named `name` (see [`Metric`]); `None` for an unknown or unavailable metric.
    pub fn metric_by_name(&self, name: &str) -> Option<f64> {
        self.metric(name.parse().ok()?)
    }
}

impl fmt::Display for MultiLabelReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        table::write_summary(
            f,
            self.n,
            &[
                ("subset accuracy", Some(self.subset_accuracy)),
                ("macro F1", Some(self.macro_f1)),
                ("micro F1", Some(self.micro_f1)),
                ("macro AUC", self.macro_auc),
            ],
        )?;
        writeln!(f)?;
        table::write_classes(f, "label", &self.per_label)
    }
}

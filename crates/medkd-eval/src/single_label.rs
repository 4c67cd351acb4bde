//! Single-label (one class per sample) classification report.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::auc::roc_auc;
use crate::calibration::expected_calibration_error;
use crate::confusion::{argmax, class_counts, confusion_matrix};
use crate::delong::{AucCi, delong_auc};
use crate::report::mean;
use crate::{ClassMetrics, EvalError, Metric, input, table};

/// Metrics of a single-label classifier, with sklearn's definitions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassificationReport {
    /// Number of samples.
    pub n: usize,
    /// Fraction of samples whose argmax class is the target.
    pub accuracy: f64,
    /// Mean recall over the classes that occur in the targets.
    pub balanced_accuracy: f64,
    /// Mean F1 over all K classes (0 for a class never targeted nor predicted).
    pub macro_f1: f64,
    /// K = 2: ROC-AUC of the class-1 probability. K > 2: mean of the defined one-vs-rest AUCs.
    /// `None` when no AUC is defined.
    pub auc: Option<f64>,
    /// K = 2: DeLong's standard error and 95% confidence interval of `auc` (`None` with fewer
    /// than two samples of either class). Not computed for K > 2, whose macro mean has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auc_ci: Option<AucCi>,
    /// Expected calibration error of the max probability over [`crate::ECE_BINS`] bins.
    pub ece: f64,
    pub per_class: Vec<ClassMetrics>,
    /// `confusion[true][predicted]` sample counts.
    pub confusion: Vec<Vec<u64>>,
}

/// Evaluates `probs`, N x `num_classes` row-major class probabilities, against the N `labels`.
///
/// The predicted class is the argmax of each row (the first on ties).
pub fn evaluate_single_label(
    probs: &[f32],
    num_classes: usize,
    labels: &[usize],
    class_names: &[String],
) -> Result<ClassificationReport, EvalError> {
    input::check_single_label(probs, num_classes, labels, class_names)?;
    let k = num_classes;
    let n = labels.len();
    let predicted: Vec<usize> = probs.chunks_exact(k).map(argmax).collect();
    let confusion = confusion_matrix(labels, &predicted, k);

    let per_class: Vec<ClassMetrics> = class_counts(&confusion)
        .into_iter()
        .enumerate()
        .map(|(c, counts)| {
            let column = probs.iter().skip(c).step_by(k);
            let auc = roc_auc(column.zip(labels).map(|(&p, &label)| (p, label == c)));
            ClassMetrics::new(&class_names[c], counts, auc)
        })
        .collect();

    let correct = (0..k).map(|c| confusion[c][c]).sum::<u64>();
    let balanced_accuracy =
        mean(per_class.iter().filter(|c| c.support > 0).map(|c| c.recall)).expect("validated input has a sample, so some class occurs");
    let macro_f1 = mean(per_class.iter().map(|c| c.f1)).expect("validated input has K >= 2");
    let auc = if k == 2 { per_class[1].auc } else { mean(per_class.iter().filter_map(|c| c.auc)) };
    let auc_ci = if k == 2 {
        let positive: Vec<bool> = labels.iter().map(|&label| label == 1).collect();
        delong_auc(&probs.iter().skip(1).step_by(2).copied().collect::<Vec<f32>>(), &positive)?
    } else {
        None
    };
    let ece = expected_calibration_error(
        probs.chunks_exact(k).zip(predicted.iter().zip(labels)).map(|(row, (&pred, &label))| (row[pred], pred == label)),
    );

    Ok(ClassificationReport { n, accuracy: correct as f64 / n as f64, balanced_accuracy, macro_f1, auc, auc_ci, ece, per_class, confusion })
}

impl ClassificationReport {
    /// The report as an aligned plain-text table (the same as its `Display`).
    pub fn table(&self) -> String {
        self.to_string()
    }

    pub fn metric(&self, metric: Metric) -> Option<f64> {
        match metric {
            // With exactly one label per sample, micro-averaged F1 equals accuracy.
            Metric::Accuracy | Metric::MicroF1 => Some(self.accuracy),
            Metric::BalancedAccuracy => Some(self.balanced_accuracy),
            Metric::MacroF1 => Some(self.macro_f1),
            Metric::Auc => self.auc,
            Metric::Ece => Some(self.ece),
            Metric::Loss | Metric::MeanIou | Metric::AccAt50 | Metric::AccAt75 => None,
        }
    }

    /// The metric named `name` (see [`Metric`]); `None` for an unknown name or an undefined AUC.
    pub fn metric_by_name(&self, name: &str) -> Option<f64> {
        self.metric(name.parse().ok()?)
    }
}

impl fmt::Display for ClassificationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auc_label = if self.per_class.len() == 2 { "AUC" } else { "AUC (macro OvR)" };
        table::write_summary(
            f,
            self.n,
            &[
                ("accuracy", Some(self.accuracy)),
                ("balanced accuracy", Some(self.balanced_accuracy)),
                ("macro F1", Some(self.macro_f1)),
                (auc_label, self.auc),
                ("ECE", Some(self.ece)),
            ],
        )?;
        if let Some(ci) = &self.auc_ci {
            writeln!(f, "AUC 95% CI (DeLong): {:.4} to {:.4}", ci.lower, ci.upper)?;
        }
        writeln!(f)?;
        table::write_classes(f, "class", &self.per_class)?;
        writeln!(f)?;
        let names: Vec<&str> = self.per_class.iter().map(|c| c.name.as_str()).collect();
        table::write_confusion(f, &names, &self.confusion)
    }
}

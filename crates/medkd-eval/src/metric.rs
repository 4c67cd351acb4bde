//! Headline metrics by name, for choosing the best checkpoint (`train.select_metric`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::EvalError;

/// A scalar metric of a report that checkpoints can be ranked by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Accuracy (subset accuracy for multi-label).
    Accuracy,
    /// Mean recall over the classes present in the targets (single-label only).
    BalancedAccuracy,
    MacroF1,
    MicroF1,
    /// ROC-AUC (macro one-vs-rest for K > 2, macro over labels for multi-label).
    Auc,
    /// Expected calibration error (single-label only); lower is better.
    Ece,
    /// Mean task loss of the predicted probabilities (NLL, or BCE per label); lower is better.
    /// Reports hold no loss: the trainer's evaluation computes it.
    Loss,
    /// Mean IoU of predicted and true boxes (localization).
    MeanIou,
    /// Share of images whose predicted box has IoU >= 0.5 with the true one (localization).
    AccAt50,
    /// The same at IoU >= 0.75.
    AccAt75,
}

impl Metric {
    pub const ALL: [Metric; 10] = [
        Metric::Accuracy,
        Metric::BalancedAccuracy,
        Metric::MacroF1,
        Metric::MicroF1,
        Metric::Auc,
        Metric::Ece,
        Metric::Loss,
        Metric::MeanIou,
        Metric::AccAt50,
        Metric::AccAt75,
    ];

    /// The canonical name, as accepted by [`FromStr`].
    pub fn name(self) -> &'static str {
        match self {
            Metric::Accuracy => "acc",
            Metric::BalancedAccuracy => "balanced_acc",
            Metric::MacroF1 => "macro_f1",
            Metric::MicroF1 => "micro_f1",
            Metric::Auc => "auc",
            Metric::Ece => "ece",
            Metric::Loss => "loss",
            Metric::MeanIou => "mean_iou",
            Metric::AccAt50 => "acc_at_50",
            Metric::AccAt75 => "acc_at_75",
        }
    }

    pub fn higher_is_better(self) -> bool {
        !matches!(self, Metric::Ece | Metric::Loss)
    }
}

impl FromStr for Metric {
    type Err = EvalError;

    /// Accepts the canonical names plus the long forms `accuracy` and `balanced_accuracy`.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "accuracy" => Ok(Metric::Accuracy),
            "balanced_accuracy" => Ok(Metric::BalancedAccuracy),
            _ => Metric::ALL
                .into_iter()
                .find(|metric| metric.name() == name)
                .ok_or_else(|| EvalError::UnknownMetric { name: name.to_owned() }),
        }
    }
}

/// Configs name metrics as strings (`select_metric = "auc"`).
impl Serialize for Metric {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Metric {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether a larger value of the named metric is better: false only for `ece` and `loss`.
///
/// Unknown names count as higher-is-better; parse a [`Metric`] first to reject them.
pub fn higher_is_better(name: &str) -> bool {
    name.parse().map_or(true, Metric::higher_is_better)
}

pub(crate) fn known_names() -> String {
    Metric::ALL.map(Metric::name).join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for metric in Metric::ALL {
            assert_eq!(metric.name().parse::<Metric>(), Ok(metric));
        }
        assert_eq!("accuracy".parse::<Metric>(), Ok(Metric::Accuracy));
        assert_eq!("balanced_accuracy".parse::<Metric>(), Ok(Metric::BalancedAccuracy));
    }

    #[test]
    fn unknown_name_lists_known_ones() {
        let err = "f2".parse::<Metric>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown metric \"f2\", expected one of: acc, balanced_acc, macro_f1, micro_f1, auc, ece, loss, mean_iou, acc_at_50, acc_at_75"
        );
    }

    #[test]
    fn only_ece_and_loss_are_lower_is_better() {
        assert!(!higher_is_better("ece") && !higher_is_better("loss"));
        for name in ["acc", "accuracy", "balanced_acc", "macro_f1", "micro_f1", "auc", "mean_iou", "acc_at_50", "acc_at_75"] {
            assert!(higher_is_better(name), "{name}");
        }
    }
}

//! Many / medium / few-shot groups of a long-tailed label set (Liu et al., "Large-scale long-tailed
//! recognition in an open world", CVPR 2019): classes grouped by their number of training
//! samples, and the recall and accuracy of each group on an evaluated split.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::report::mean;
use crate::{ClassMetrics, EvalError};

/// A class with more than `many` training samples is many-shot, one with fewer than `few`
/// few-shot, the rest medium-shot. The defaults are the literature's (> 100, 20-100, < 20).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShotThresholds {
    #[serde(default = "default_many")]
    pub many: usize,
    #[serde(default = "default_few")]
    pub few: usize,
}

fn default_many() -> usize {
    100
}
fn default_few() -> usize {
    20
}

impl Default for ShotThresholds {
    fn default() -> Self {
        ShotThresholds { many: default_many(), few: default_few() }
    }
}

impl ShotThresholds {
    /// `few <= many`, or an error naming both (`key` is where they are configured).
    pub fn validate(&self, key: &str) -> Result<(), EvalError> {
        if self.few > self.many {
            return Err(EvalError::Config(format!(
                "`{key}`: thresholds out of order: few = {} must not exceed many = {} (many-shot: > many, few-shot: < few)",
                self.few, self.many
            )));
        }
        Ok(())
    }

    /// The group index (0 many, 1 medium, 2 few) of a class with `count` training samples.
    pub fn group_of(&self, count: usize) -> usize {
        if count > self.many {
            0
        } else if count < self.few {
            2
        } else {
            1
        }
    }

    /// The classes of each group, as indices, from per-class training counts.
    pub fn groups(&self, counts: &[usize]) -> [Vec<usize>; 3] {
        let mut groups: [Vec<usize>; 3] = Default::default();
        for (class, &count) in counts.iter().enumerate() {
            groups[self.group_of(count)].push(class);
        }
        groups
    }
}

/// The shot groups of a training split: thresholds, per-class training counts and the groups.
#[derive(Debug, Clone, PartialEq)]
pub struct ShotGroups {
    pub thresholds: ShotThresholds,
    pub train_counts: Vec<usize>,
    groups: [Vec<usize>; 3],
}

impl ShotGroups {
    pub fn new(thresholds: ShotThresholds, train_counts: Vec<usize>) -> Self {
        ShotGroups { groups: thresholds.groups(&train_counts), thresholds, train_counts }
    }

    /// Each group's recall and accuracy from a report's per-class (or per-label) metrics.
    pub fn report(&self, per_class: &[ClassMetrics]) -> ShotReport {
        let group = |classes: &[usize]| {
            let members: Vec<&ClassMetrics> = classes.iter().map(|&c| &per_class[c]).collect();
            let support: u64 = members.iter().map(|c| c.support).sum();
            // recall x support is the class's true-positive count, an integer.
            let found: f64 = members.iter().map(|c| (c.recall * c.support as f64).round()).sum();
            ShotGroup {
                classes: members.iter().map(|c| c.name.clone()).collect(),
                recall: mean(members.iter().filter(|c| c.support > 0).map(|c| c.recall)),
                accuracy: (support > 0).then(|| found / support as f64),
                support,
            }
        };
        let [many, medium, few] = &self.groups;
        ShotReport { many: group(many), medium: group(medium), few: group(few), thresholds: self.thresholds }
    }
}

/// One group's metrics on a split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShotGroup {
    pub classes: Vec<String>,
    /// Mean recall of the group's classes that occur in the split (their balanced accuracy);
    /// `None` when none occurs.
    pub recall: Option<f64>,
    /// Fraction of the split's samples of these classes (positives, for multi-label data) that
    /// were found; `None` when there are none.
    pub accuracy: Option<f64>,
    /// Samples (positives) of these classes in the split.
    pub support: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShotReport {
    pub many: ShotGroup,
    pub medium: ShotGroup,
    pub few: ShotGroup,
    pub thresholds: ShotThresholds,
}

impl ShotReport {
    pub fn groups(&self) -> [(&'static str, &ShotGroup); 3] {
        [("many", &self.many), ("medium", &self.medium), ("few", &self.few)]
    }
}

impl fmt::Display for ShotReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (many, few) = (self.thresholds.many, self.thresholds.few);
        writeln!(f, "shot groups (training samples per class: many > {many}, few < {few})")?;
        writeln!(f, "{:<6}  {:>6}  {:>8}  {:>7}  classes", "group", "recall", "accuracy", "support")?;
        let value = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.4}"));
        for (name, group) in self.groups() {
            if group.classes.is_empty() {
                continue;
            }
            let classes = group.classes.join(", ");
            writeln!(f, "{name:<6}  {:>6}  {:>8}  {:>7}  {classes}", value(group.recall), value(group.accuracy), group.support)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(name: &str, recall: f64, support: u64) -> ClassMetrics {
        ClassMetrics { name: name.into(), precision: 0.0, recall, f1: 0.0, support, auc: None }
    }

    #[test]
    fn groups_follow_the_thresholds_at_their_edges() {
        let thresholds = ShotThresholds { many: 100, few: 20 };
        assert_eq!(thresholds.groups(&[101, 100, 20, 19, 0, 500]), [vec![0, 5], vec![1, 2], vec![3, 4]]);
        assert!(ShotThresholds { many: 10, few: 10 }.validate("shots").is_ok());
        let error = ShotThresholds { many: 10, few: 11 }.validate("shots").unwrap_err().to_string();
        assert!(error.contains("`shots`") && error.contains("few = 11") && error.contains("many = 10"), "{error}");
    }

    #[test]
    fn group_recall_is_the_mean_over_present_classes_and_accuracy_pools_samples() {
        let groups = ShotGroups::new(ShotThresholds { many: 50, few: 10 }, vec![400, 60, 30, 5, 2]);
        // Many: class 0 (3 of 4 found) and 1 (1 of 2); medium: class 2 (absent from the split);
        // few: class 3 (0 of 1) and 4 (2 of 2).
        let per_class = [class("a", 0.75, 4), class("b", 0.5, 2), class("c", 0.0, 0), class("d", 0.0, 1), class("e", 1.0, 2)];
        let report = groups.report(&per_class);
        assert_eq!(report.many.classes, ["a", "b"]);
        assert_eq!((report.many.recall, report.many.accuracy, report.many.support), (Some(0.625), Some(4.0 / 6.0), 6));
        assert_eq!((report.medium.recall, report.medium.accuracy, report.medium.support), (None, None, 0));
        assert_eq!((report.few.recall, report.few.accuracy), (Some(0.5), Some(2.0 / 3.0)));
        let table = report.to_string();
        assert!(table.contains("many > 50, few < 10") && table.contains("d, e"), "{table}");
    }
}

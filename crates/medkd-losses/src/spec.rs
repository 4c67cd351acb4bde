use serde::{Deserialize, Serialize};

use crate::LossError;

/// One `[[loss]]` entry of a config: a term kind, its weight in the total and its parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LossSpec {
    /// Softmax cross-entropy with optional class weights and label smoothing (PyTorch semantics).
    CrossEntropy {
        #[serde(default = "unit_weight")]
        weight: f64,
        #[serde(default)]
        label_smoothing: f64,
        #[serde(default)]
        class_weights: ClassWeights,
    },
    /// Binary cross-entropy on logits, averaged over samples and labels (multi-label tasks).
    Bce {
        #[serde(default = "unit_weight")]
        weight: f64,
    },
}

fn unit_weight() -> f64 {
    1.0
}

/// How cross-entropy weighs classes: `"none"`, `"inverse_frequency"` (N_total / N_c on the
/// training split, as SSD-KD's weighted CE) or an explicit list, one weight per class.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ClassWeights {
    Rule(ClassWeightRule),
    Explicit(Vec<f64>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassWeightRule {
    None,
    InverseFrequency,
}

impl Default for ClassWeights {
    fn default() -> Self {
        ClassWeights::Rule(ClassWeightRule::None)
    }
}

impl LossSpec {
    /// The name the term is logged under (`metrics.jsonl`, progress bar).
    pub fn name(&self) -> &'static str {
        match self {
            LossSpec::CrossEntropy { .. } => "cross_entropy",
            LossSpec::Bce { .. } => "bce",
        }
    }

    pub fn weight(&self) -> f64 {
        match self {
            LossSpec::CrossEntropy { weight, .. } | LossSpec::Bce { weight } => *weight,
        }
    }

    /// Checks parameters that do not depend on the data (weights, ranges).
    pub fn validate(&self) -> Result<(), LossError> {
        let name = self.name();
        let weight = self.weight();
        if !(weight.is_finite() && weight >= 0.0) {
            return Err(LossError::bad(name, format!("weight must be a finite number >= 0, got {weight}")));
        }
        if let LossSpec::CrossEntropy { label_smoothing, class_weights, .. } = self {
            if !(0.0..1.0).contains(label_smoothing) {
                return Err(LossError::bad(
                    name,
                    format!("label_smoothing must be in [0, 1), got {label_smoothing}"),
                ));
            }
            if let ClassWeights::Explicit(list) = class_weights {
                if let Some(bad) = list.iter().find(|w| !(w.is_finite() && **w > 0.0)) {
                    return Err(LossError::bad(name, format!("class_weights must all be > 0, got {bad}")));
                }
            }
        }
        Ok(())
    }
}

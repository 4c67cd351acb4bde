//! `kind = "cross_entropy"`: softmax cross-entropy with optional class weights and label
//! smoothing (PyTorch semantics, [`crate::cross_entropy`]).

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::term::{LossTerm, Needs, TermAt, TermSpec, label_kind};
use crate::{LossContext, LossError, Targets, TaskFacts, cross_entropy, inverse_frequency_weights};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrossEntropySpec {
    #[serde(default = "crate::spec::unit_weight")]
    pub weight: f64,
    #[serde(default)]
    pub label_smoothing: f64,
    #[serde(default)]
    pub class_weights: ClassWeights,
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

impl TermSpec for CrossEntropySpec {
    fn kind(&self) -> &'static str {
        "cross_entropy"
    }

    fn weight(&self) -> f64 {
        self.weight
    }

    fn validate(&self) -> Result<(), LossError> {
        let (name, label_smoothing) = (self.kind(), self.label_smoothing);
        if !(0.0..1.0).contains(&label_smoothing) {
            return Err(LossError::bad(name, format!("label_smoothing must be in [0, 1), got {label_smoothing}")));
        }
        if let ClassWeights::Explicit(list) = &self.class_weights
            && let Some(bad) = list.iter().find(|w| !(w.is_finite() && **w > 0.0))
        {
            return Err(LossError::bad(name, format!("class_weights must all be > 0, got {bad}")));
        }
        Ok(())
    }

    fn resolve(&self, facts: &TaskFacts, _needs: &mut Needs) -> Result<Box<dyn LossTerm>, LossError> {
        let name = self.kind();
        label_kind(name, false, "single-label targets", "the dataset is multi-label (use kind = \"bce\")", facts)?;
        let class_weights = match &self.class_weights {
            ClassWeights::Rule(ClassWeightRule::None) => None,
            ClassWeights::Rule(ClassWeightRule::InverseFrequency) => {
                Some(inverse_frequency_weights(facts.class_counts, facts.class_names)?)
            }
            ClassWeights::Explicit(list) if list.len() != facts.num_classes => {
                return Err(LossError::bad(name, format!("class_weights lists {} weights for {} classes", list.len(), facts.num_classes)));
            }
            ClassWeights::Explicit(list) => Some(list.iter().map(|&w| w as f32).collect()),
        };
        Ok(Box::new(CrossEntropy { class_weights, label_smoothing: self.label_smoothing as f32 }))
    }
}

struct CrossEntropy {
    class_weights: Option<Vec<f32>>,
    label_smoothing: f32,
}

impl LossTerm for CrossEntropy {
    fn value(&self, ctx: &LossContext, at: &TermAt) -> Result<Tensor<1>, LossError> {
        let Targets::Classes(classes) = ctx.targets else {
            unreachable!("Objective::new checked the task kind, and the loader yields targets of that kind")
        };
        Ok(cross_entropy(at.per_image(&ctx.student.logits), classes, self.class_weights.as_deref(), self.label_smoothing))
    }
}

//! `kind = "cross_entropy"`: softmax cross-entropy with optional class weights and label
//! smoothing (PyTorch semantics, [`crate::cross_entropy`]).

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::term::{LossTerm, Needs, TermAt, TermSpec, batch_classes, check_class_weight_list, class_weight_list, single_label};
use crate::{LossContext, LossError, TaskFacts, inverse_frequency_weights, weighted_cross_entropy};

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
        match &self.class_weights {
            ClassWeights::Explicit(list) => check_class_weight_list(name, "class_weights", list),
            ClassWeights::Rule(_) => Ok(()),
        }
    }

    fn resolve(&self, facts: &TaskFacts, _needs: &mut Needs) -> Result<Box<dyn LossTerm>, LossError> {
        let name = self.kind();
        single_label(name, facts)?;
        let class_weights = match &self.class_weights {
            ClassWeights::Rule(ClassWeightRule::None) => None,
            ClassWeights::Rule(ClassWeightRule::InverseFrequency) => {
                Some(inverse_frequency_weights(facts.class_counts, facts.class_names)?)
            }
            ClassWeights::Explicit(list) => Some(class_weight_list(name, "class_weights", list, facts)?),
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
        let logits = at.per_image(&ctx.student.logits);
        Ok(weighted_cross_entropy(logits, batch_classes(ctx), self.class_weights.as_deref(), self.label_smoothing, ctx.sample_weights))
    }

    fn weighs_samples(&self) -> bool {
        true
    }
}

//! `kind = "class_balanced"`: softmax cross-entropy weighted by Cui et al. (2019) effective
//! numbers of samples ([`crate::class_balanced_weights`]) from the training split's counts.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::classification::every_class_sampled;
use crate::term::{LossTerm, Needs, TermAt, TermSpec, batch_classes, single_label};
use crate::{LossContext, LossError, TaskFacts, class_balanced_weights, cross_entropy};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassBalancedSpec {
    #[serde(default = "crate::spec::unit_weight")]
    pub weight: f64,
    /// In [0, 1): 0 weighs classes equally, towards 1 approaches inverse frequency.
    #[serde(default = "default_beta")]
    pub beta: f64,
}

fn default_beta() -> f64 {
    0.999
}

impl TermSpec for ClassBalancedSpec {
    fn kind(&self) -> &'static str {
        "class_balanced"
    }

    fn weight(&self) -> f64 {
        self.weight
    }

    fn validate(&self) -> Result<(), LossError> {
        let beta = self.beta;
        if (0.0..1.0).contains(&beta) { Ok(()) } else { Err(LossError::bad(self.kind(), format!("beta must be in [0, 1), got {beta}"))) }
    }

    fn resolve(&self, facts: &TaskFacts, _needs: &mut Needs) -> Result<Box<dyn LossTerm>, LossError> {
        single_label(self.kind(), facts)?;
        every_class_sampled(self.kind(), "the effective number of samples", facts.class_counts, facts.class_names)?;
        Ok(Box::new(ClassBalanced { class_weights: class_balanced_weights(facts.class_counts, self.beta) }))
    }
}

struct ClassBalanced {
    class_weights: Vec<f32>,
}

impl LossTerm for ClassBalanced {
    fn value(&self, ctx: &LossContext, at: &TermAt) -> Result<Tensor<1>, LossError> {
        Ok(cross_entropy(at.per_image(&ctx.student.logits), batch_classes(ctx), Some(&self.class_weights), 0.0))
    }
}

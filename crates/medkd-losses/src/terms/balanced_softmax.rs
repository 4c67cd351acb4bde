//! `kind = "balanced_softmax"`: cross-entropy on `logits + tau log(prior)` with the class prior
//! of the training split (logit adjustment, Menon et al. 2021; `tau = 1` is balanced softmax,
//! Ren et al. 2020; [`crate::logit_adjusted_cross_entropy`]).

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::classification::every_class_sampled;
use crate::term::{LossTerm, Needs, TermAt, TermSpec, batch_classes, check_non_negative, single_label};
use crate::{LossContext, LossError, TaskFacts, logit_adjusted_cross_entropy};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalancedSoftmaxSpec {
    #[serde(default = "crate::spec::unit_weight")]
    pub weight: f64,
    /// How much of the log prior is added, >= 0 (0 is plain cross-entropy).
    #[serde(default = "crate::spec::unit_weight")]
    pub tau: f64,
}

impl TermSpec for BalancedSoftmaxSpec {
    fn kind(&self) -> &'static str {
        "balanced_softmax"
    }

    fn weight(&self) -> f64 {
        self.weight
    }

    fn validate(&self) -> Result<(), LossError> {
        check_non_negative(self.kind(), "tau", self.tau)
    }

    fn resolve(&self, facts: &TaskFacts, _needs: &mut Needs) -> Result<Box<dyn LossTerm>, LossError> {
        single_label(self.kind(), facts)?;
        every_class_sampled(self.kind(), "the class prior", facts.class_counts, facts.class_names)?;
        let total: usize = facts.class_counts.iter().sum();
        let offsets = facts.class_counts.iter().map(|&count| (self.tau * (count as f64 / total as f64).ln()) as f32).collect();
        Ok(Box::new(BalancedSoftmax { offsets }))
    }
}

struct BalancedSoftmax {
    /// `tau log(prior_c)`, one per class.
    offsets: Vec<f32>,
}

impl LossTerm for BalancedSoftmax {
    fn value(&self, ctx: &LossContext, at: &TermAt) -> Result<Tensor<1>, LossError> {
        Ok(logit_adjusted_cross_entropy(at.per_image(&ctx.student.logits), batch_classes(ctx), &self.offsets))
    }
}

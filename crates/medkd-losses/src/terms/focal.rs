//! `kind = "focal"`: focal loss (Lin et al. 2017), `-alpha[y] (1 - p_y)^gamma log p_y`
//! averaged over the batch ([`crate::focal`]).

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::term::{
    LossTerm, Needs, TermAt, TermSpec, batch_classes, check_class_weight_list, check_non_negative, class_weight_list, single_label,
};
use crate::{LossContext, LossError, TaskFacts, focal};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FocalSpec {
    #[serde(default = "crate::spec::unit_weight")]
    pub weight: f64,
    /// The focusing exponent, >= 0 (0 without `alpha` is cross-entropy).
    #[serde(default = "default_gamma")]
    pub gamma: f64,
    /// Per-class weights `alpha_c`, one per class, each > 0; none when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<Vec<f64>>,
}

fn default_gamma() -> f64 {
    2.0
}

impl TermSpec for FocalSpec {
    fn kind(&self) -> &'static str {
        "focal"
    }

    fn weight(&self) -> f64 {
        self.weight
    }

    fn validate(&self) -> Result<(), LossError> {
        check_non_negative(self.kind(), "gamma", self.gamma)?;
        match &self.alpha {
            Some(alpha) => check_class_weight_list(self.kind(), "alpha", alpha),
            None => Ok(()),
        }
    }

    fn resolve(&self, facts: &TaskFacts, _needs: &mut Needs) -> Result<Box<dyn LossTerm>, LossError> {
        single_label(self.kind(), facts)?;
        let alpha = self.alpha.as_deref().map(|alpha| class_weight_list(self.kind(), "alpha", alpha, facts)).transpose()?;
        Ok(Box::new(Focal { gamma: self.gamma as f32, alpha }))
    }
}

struct Focal {
    gamma: f32,
    alpha: Option<Vec<f32>>,
}

impl LossTerm for Focal {
    fn value(&self, ctx: &LossContext, at: &TermAt) -> Result<Tensor<1>, LossError> {
        Ok(focal(at.per_image(&ctx.student.logits), batch_classes(ctx), self.gamma, self.alpha.as_deref()))
    }
}

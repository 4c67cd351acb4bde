//! `kind = "ldam"`: label-distribution-aware margin loss (Cao et al. 2019, [`crate::ldam`]):
//! margins `m_c ∝ n_c^(-1/4)` scaled so the largest is `max_margin`, optionally with deferred
//! re-weighting (DRW) by class-balanced weights with beta = 0.9999 from epoch `drw_epoch`, as the
//! authors' LDAM-DRW code does.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::classification::every_class_sampled;
use crate::term::{LossTerm, Needs, TermAt, TermSpec, batch_classes, check_positive, single_label};
use crate::{LossContext, LossError, TaskFacts, class_balanced_weights, ldam};

/// The effective-number beta of the deferred re-weighting (the authors' `betas = [0, 0.9999]`).
pub const DRW_BETA: f64 = 0.9999;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdamSpec {
    #[serde(default = "crate::spec::unit_weight")]
    pub weight: f64,
    /// The margin of the rarest class, > 0.
    #[serde(default = "default_max_margin")]
    pub max_margin: f64,
    /// The logit scale `s`, > 0.
    #[serde(default = "default_scale")]
    pub scale: f64,
    /// The 0-based epoch from which the class-balanced weights apply; none when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drw_epoch: Option<u64>,
}

fn default_max_margin() -> f64 {
    0.5
}

fn default_scale() -> f64 {
    30.0
}

impl TermSpec for LdamSpec {
    fn kind(&self) -> &'static str {
        "ldam"
    }

    fn weight(&self) -> f64 {
        self.weight
    }

    fn validate(&self) -> Result<(), LossError> {
        check_positive(self.kind(), "max_margin", self.max_margin)?;
        check_positive(self.kind(), "scale", self.scale)
    }

    fn resolve(&self, facts: &TaskFacts, _needs: &mut Needs) -> Result<Box<dyn LossTerm>, LossError> {
        single_label(self.kind(), facts)?;
        every_class_sampled(self.kind(), "the margins", facts.class_counts, facts.class_names)?;
        let raw: Vec<f64> = facts.class_counts.iter().map(|&count| (count as f64).powf(-0.25)).collect();
        let largest = raw.iter().copied().fold(0.0, f64::max);
        let margins = raw.iter().map(|m| (m * self.max_margin / largest) as f32).collect();
        let drw = self.drw_epoch.map(|epoch| (epoch, class_balanced_weights(facts.class_counts, DRW_BETA)));
        Ok(Box::new(Ldam { margins, scale: self.scale as f32, drw }))
    }
}

struct Ldam {
    margins: Vec<f32>,
    scale: f32,
    /// The first epoch of deferred re-weighting and its class weights.
    drw: Option<(u64, Vec<f32>)>,
}

impl LossTerm for Ldam {
    fn value(&self, ctx: &LossContext, at: &TermAt) -> Result<Tensor<1>, LossError> {
        let class_weights = match &self.drw {
            Some((from, weights)) if ctx.epoch >= *from => Some(weights.as_slice()),
            _ => None,
        };
        Ok(ldam(at.per_image(&ctx.student.logits), batch_classes(ctx), &self.margins, self.scale, class_weights))
    }
}

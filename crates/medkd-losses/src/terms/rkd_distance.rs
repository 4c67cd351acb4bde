//! `kind = "rkd_distance"`: Park et al. (2019) RKD distance term on the pooled embeddings of one
//! teacher ([`crate::rkd_distance`]).

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::term::{LossTerm, Needs, TermAt, TermSpec, teacher_index};
use crate::{LossContext, LossError, TaskFacts, rkd_distance};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RkdDistanceSpec {
    #[serde(default = "crate::spec::unit_weight")]
    pub weight: f64,
    /// Which teacher's embeddings to match (0-based).
    #[serde(default)]
    pub teacher: usize,
}

impl TermSpec for RkdDistanceSpec {
    fn kind(&self) -> &'static str {
        "rkd_distance"
    }

    fn weight(&self) -> f64 {
        self.weight
    }

    fn resolve(&self, facts: &TaskFacts, _needs: &mut Needs) -> Result<Box<dyn LossTerm>, LossError> {
        Ok(Box::new(RkdDistance { teacher: teacher_index(self.kind(), self.teacher, facts)? }))
    }
}

struct RkdDistance {
    teacher: usize,
}

impl LossTerm for RkdDistance {
    fn value(&self, ctx: &LossContext, _at: &TermAt) -> Result<Tensor<1>, LossError> {
        Ok(rkd_distance(ctx.student.pooled.clone(), ctx.teachers[self.teacher].pooled.clone()))
    }
}

//! `kind = "rkd_angle"`: Park et al. (2019) RKD angle term on the pooled embeddings of one
//! teacher, computed `chunk` anchors at a time ([`crate::rkd_angle`]).

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::term::{LossTerm, Needs, TermAt, TermSpec, teacher_index};
use crate::{LossContext, LossError, TaskFacts, rkd_angle};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RkdAngleSpec {
    #[serde(default = "crate::spec::unit_weight")]
    pub weight: f64,
    /// Which teacher's embeddings to match (0-based).
    #[serde(default)]
    pub teacher: usize,
    #[serde(default = "default_chunk")]
    pub chunk: usize,
}

/// Vertices per chunk of the `rkd_angle` term when the config gives none.
pub const DEFAULT_RKD_ANGLE_CHUNK: usize = 32;

fn default_chunk() -> usize {
    DEFAULT_RKD_ANGLE_CHUNK
}

impl TermSpec for RkdAngleSpec {
    fn kind(&self) -> &'static str {
        "rkd_angle"
    }

    fn weight(&self) -> f64 {
        self.weight
    }

    fn validate(&self) -> Result<(), LossError> {
        if self.chunk == 0 {
            return Err(LossError::bad(self.kind(), "chunk must be at least 1"));
        }
        Ok(())
    }

    fn resolve(&self, facts: &TaskFacts, _needs: &mut Needs) -> Result<Box<dyn LossTerm>, LossError> {
        Ok(Box::new(RkdAngle { teacher: teacher_index(self.kind(), self.teacher, facts)?, chunk: self.chunk }))
    }
}

struct RkdAngle {
    teacher: usize,
    chunk: usize,
}

impl LossTerm for RkdAngle {
    fn value(&self, ctx: &LossContext, _at: &TermAt) -> Result<Tensor<1>, LossError> {
        Ok(rkd_angle(ctx.student.pooled.clone(), ctx.teachers[self.teacher].pooled.clone(), self.chunk))
    }
}

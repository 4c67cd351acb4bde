//! `kind = "attention"`: attention transfer (Zagoruyko & Komodakis 2017) between stage maps of
//! equal spatial size, summed over the listed stages ([`crate::attention_transfer`]).

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::term::{LossTerm, Needs, TermAt, TermSpec, spatial_channels, teacher_index};
use crate::{LossContext, LossError, TaskFacts, attention_transfer};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttentionSpec {
    #[serde(default = "crate::spec::unit_weight")]
    pub weight: f64,
    #[serde(default)]
    pub teacher: usize,
    /// Stage map indices (0-3 for the CNNs).
    #[serde(default = "all_stages")]
    pub stages: Vec<usize>,
}

fn all_stages() -> Vec<usize> {
    vec![0, 1, 2, 3]
}

impl TermSpec for AttentionSpec {
    fn kind(&self) -> &'static str {
        "attention"
    }

    fn weight(&self) -> f64 {
        self.weight
    }

    fn validate(&self) -> Result<(), LossError> {
        // Which map indices exist is the architecture's: checked against its layout in resolve.
        if self.stages.is_empty() {
            return Err(LossError::bad(self.kind(), "stages must list at least one stage map index"));
        }
        Ok(())
    }

    fn resolve(&self, facts: &TaskFacts, _needs: &mut Needs) -> Result<Box<dyn LossTerm>, LossError> {
        let teacher = teacher_index(self.kind(), self.teacher, facts)?;
        for &stage in &self.stages {
            spatial_channels(self.kind(), "stages", stage, facts, teacher)?;
        }
        Ok(Box::new(Attention { teacher, stages: self.stages.clone() }))
    }
}

struct Attention {
    teacher: usize,
    stages: Vec<usize>,
}

impl LossTerm for Attention {
    fn value(&self, ctx: &LossContext, at: &TermAt) -> Result<Tensor<1>, LossError> {
        let mut sum: Option<Tensor<1>> = None;
        for &stage in &self.stages {
            let (s, t) = (ctx.student.spatial(stage), ctx.teachers[self.teacher].spatial(stage));
            if s.dims()[2..] != t.dims()[2..] {
                return Err(LossError::Incompatible {
                    term: at.name.into(),
                    needs: format!("equal spatial sizes at stage {stage}"),
                    found: format!("student {:?}, teacher {:?}", s.dims(), t.dims()),
                });
            }
            let value = attention_transfer(s.clone(), t.clone());
            sum = Some(match sum {
                Some(total) => total + value,
                None => value,
            });
        }
        Ok(sum.expect("validate() rejects an empty stage list"))
    }

    fn reads_teacher_stages(&self) -> bool {
        true
    }
}

//! `kind = "kd_rotated"`: SSKD's rotated-view KD (SSD-KD's L3), Hinton KD on the 90/180/270-degree
//! views that error-level ranking of one teacher's predictions keeps (all it classifies
//! correctly, plus the best-ranked `ratio` of the rest; [`crate::kd_rotated`]). Turns on rotated
//! views for the whole objective.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::term::{LossTerm, Needs, TermAt, TermSpec, check_ratio, check_temperature, label_kind, same_classes, teacher_index};
use crate::{LossContext, LossError, Targets, TaskFacts, kd_rotated};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdRotatedSpec {
    #[serde(default = "crate::spec::unit_weight")]
    pub weight: f64,
    #[serde(default = "crate::terms::kd::default_temperature")]
    pub temperature: f64,
    #[serde(default)]
    pub teacher: usize,
    #[serde(default = "unit_ratio")]
    pub ratio: f64,
}

fn unit_ratio() -> f64 {
    1.0
}

impl TermSpec for KdRotatedSpec {
    fn kind(&self) -> &'static str {
        "kd_rotated"
    }

    fn weight(&self) -> f64 {
        self.weight
    }

    fn validate(&self) -> Result<(), LossError> {
        check_temperature(self.kind(), self.temperature)?;
        check_ratio(self.kind(), self.ratio)
    }

    fn resolve(&self, facts: &TaskFacts, _needs: &mut Needs) -> Result<Box<dyn LossTerm>, LossError> {
        let needs = "single-label targets (its ranking needs each view's class)";
        label_kind(self.kind(), false, needs, "the dataset is multi-label", facts)?;
        let teacher = teacher_index(self.kind(), self.teacher, facts)?;
        same_classes(self.kind(), teacher, facts)?;
        Ok(Box::new(KdRotated { teacher, temperature: self.temperature as f32, ratio: self.ratio }))
    }
}

struct KdRotated {
    teacher: usize,
    temperature: f32,
    ratio: f64,
}

impl LossTerm for KdRotated {
    fn value(&self, ctx: &LossContext, _at: &TermAt) -> Result<Tensor<1>, LossError> {
        let Targets::Classes(classes) = ctx.targets else { unreachable!("Objective::new checked the task is single-label") };
        let (student, teacher) = (ctx.student.logits.clone(), ctx.teachers[self.teacher].logits.clone());
        Ok(kd_rotated(student, teacher, classes, self.temperature, self.ratio))
    }

    fn rotated_views(&self) -> bool {
        true
    }
}

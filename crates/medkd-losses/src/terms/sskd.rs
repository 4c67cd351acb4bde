//! `kind = "sskd"`: SSKD's self-supervised similarity KD (SSD-KD's L4): KD at `temperature`
//! between the teacher's and the student's rotated-vs-normal cosine-similarity rows of their
//! projected pooled embeddings, on the rows error-level ranking keeps with `ratio`
//! ([`crate::similarity_kd`]). The teacher's projection head is trained first (stage 1) for
//! `head_epochs` with SGD at `head_lr`; the student's head trains with the student (both the
//! trainer's, from a [`HeadSpec`]). Turns on rotated views. `head` skips stage 1 with a teacher
//! head an earlier run trained (its `checkpoints/teacher_head_N.bpk`): the same teacher, data and
//! seed train the same head, so ablations can share one.

use burn::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use crate::term::{LossTerm, Needs, TermAt, TermSpec, check_ratio, check_temperature, teacher_index};
use crate::{HeadSpec, LossContext, LossError, TaskFacts, similarity_kd};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SskdSpec {
    #[serde(default = "crate::spec::unit_weight")]
    pub weight: f64,
    #[serde(default = "default_similarity_temperature")]
    pub temperature: f64,
    #[serde(default = "default_similarity_ratio")]
    pub ratio: f64,
    #[serde(default)]
    pub teacher: usize,
    #[serde(default = "default_head_epochs")]
    pub head_epochs: usize,
    #[serde(default = "default_head_lr")]
    pub head_lr: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<PathBuf>,
}

fn default_similarity_temperature() -> f64 {
    0.5
}
fn default_similarity_ratio() -> f64 {
    0.75
}
fn default_head_epochs() -> usize {
    60
}
fn default_head_lr() -> f64 {
    0.001
}

impl TermSpec for SskdSpec {
    fn kind(&self) -> &'static str {
        "sskd"
    }

    fn weight(&self) -> f64 {
        self.weight
    }

    fn validate(&self) -> Result<(), LossError> {
        let name = self.kind();
        check_temperature(name, self.temperature)?;
        check_ratio(name, self.ratio)?;
        if self.head_epochs == 0 {
            return Err(LossError::bad(name, "head_epochs must be at least 1"));
        }
        if !(self.head_lr.is_finite() && self.head_lr > 0.0) {
            return Err(LossError::bad(name, format!("head_lr must be > 0, got {}", self.head_lr)));
        }
        Ok(())
    }

    fn resolve(&self, facts: &TaskFacts, needs: &mut Needs) -> Result<Box<dyn LossTerm>, LossError> {
        let teacher = teacher_index(self.kind(), self.teacher, facts)?;
        let head = needs.head(HeadSpec {
            teacher,
            student_dim: facts.student.pooled_dim,
            teacher_dim: facts.teachers[teacher].layout.pooled_dim,
            epochs: self.head_epochs,
            lr: self.head_lr,
            trained: self.head.clone(),
        });
        Ok(Box::new(Sskd { teacher, head, temperature: self.temperature as f32, ratio: self.ratio }))
    }
}

struct Sskd {
    teacher: usize,
    /// Its projection-head pair in [`LossContext::student_heads`]/`teacher_heads`.
    head: usize,
    temperature: f32,
    ratio: f64,
}

impl LossTerm for Sskd {
    fn value(&self, ctx: &LossContext, _at: &TermAt) -> Result<Tensor<1>, LossError> {
        let student = ctx.student_heads[self.head].forward(ctx.student.pooled.clone());
        let teacher = ctx.teacher_heads[self.head].forward(ctx.teachers[self.teacher].pooled.clone());
        Ok(similarity_kd(student, teacher, self.temperature, self.ratio))
    }

    fn rotated_views(&self) -> bool {
        true
    }
}

//! `kind = "kd"`: Hinton soft-target KD from the teachers' logits: `T^2 KL(softmax(z_t/T) ||
//! softmax(z_s/T))` (batchmean, [`crate::kd_kl`]) on single-label tasks, mean
//! `BCE(sigmoid(z_s/T), sigmoid(z_t/T))` ([`crate::kd_bce`]) on multi-label ones.

use burn::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::term::{LossTerm, Needs, TermAt, TermSpec, check_temperature, same_classes, teacher_index};
use crate::{LossContext, LossError, TaskFacts, kd_bce, kd_kl};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdSpec {
    #[serde(default = "crate::spec::unit_weight")]
    pub weight: f64,
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    /// How several teachers' logits become one target.
    #[serde(default)]
    pub teachers: TeacherMix,
}

pub(crate) fn default_temperature() -> f64 {
    4.0
}

/// How a KD term combines several teachers: `"mean"` of their logits, a seeded `"random"`
/// teacher per training step or `"random_epoch"` per epoch (RoS-KD), or a weighted mean with
/// one weight per teacher (a one-hot list picks a single teacher).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TeacherMix {
    Rule(TeacherRule),
    Weights(Vec<f64>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TeacherRule {
    Mean,
    Random,
    RandomEpoch,
}

impl Default for TeacherMix {
    fn default() -> Self {
        TeacherMix::Rule(TeacherRule::Mean)
    }
}

impl TermSpec for KdSpec {
    fn kind(&self) -> &'static str {
        "kd"
    }

    fn weight(&self) -> f64 {
        self.weight
    }

    fn validate(&self) -> Result<(), LossError> {
        check_temperature(self.kind(), self.temperature)?;
        if let TeacherMix::Weights(list) = &self.teachers
            && (list.iter().any(|w| !(w.is_finite() && *w >= 0.0)) || list.iter().sum::<f64>() <= 0.0)
        {
            return Err(LossError::bad(self.kind(), format!("teachers weights must be >= 0 with a positive sum, got {list:?}")));
        }
        Ok(())
    }

    fn resolve(&self, facts: &TaskFacts, _needs: &mut Needs) -> Result<Box<dyn LossTerm>, LossError> {
        teacher_index(self.kind(), 0, facts)?;
        let num_teachers = facts.teachers.len();
        for teacher in 0..num_teachers {
            same_classes(self.kind(), teacher, facts)?;
        }
        let mix = match &self.teachers {
            TeacherMix::Rule(TeacherRule::Mean) => Mix::Weighted(vec![1.0 / num_teachers as f32; num_teachers]),
            TeacherMix::Rule(TeacherRule::Random) => Mix::Random { per_epoch: false },
            TeacherMix::Rule(TeacherRule::RandomEpoch) => Mix::Random { per_epoch: true },
            TeacherMix::Weights(list) if list.len() != num_teachers => {
                return Err(LossError::bad(self.kind(), format!("teachers lists {} weights for {num_teachers} teachers", list.len())));
            }
            TeacherMix::Weights(list) => {
                let sum: f64 = list.iter().sum();
                Mix::Weighted(list.iter().map(|w| (w / sum) as f32).collect())
            }
        };
        Ok(Box::new(Kd { temperature: self.temperature as f32, mix, multi_label: facts.multi_label, seed: facts.seed }))
    }
}

/// A resolved [`TeacherMix`]: normalized weights, or one random teacher per step or epoch.
enum Mix {
    Weighted(Vec<f32>),
    Random { per_epoch: bool },
}

struct Kd {
    temperature: f32,
    mix: Mix,
    multi_label: bool,
    /// Seeds the random teacher choice.
    seed: u64,
}

impl LossTerm for Kd {
    fn value(&self, ctx: &LossContext, at: &TermAt) -> Result<Tensor<1>, LossError> {
        let target = match &self.mix {
            Mix::Weighted(weights) => weights
                .iter()
                .zip(ctx.teachers)
                .map(|(w, t)| at.per_image(&t.logits).mul_scalar(*w))
                .reduce(|a, b| a + b)
                .expect("resolve checked there is a teacher"),
            Mix::Random { per_epoch } => {
                let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
                // Streams: steps from 0 up, epochs from the top, so the two never share one.
                rng.set_stream(if *per_epoch { u64::MAX - ctx.epoch } else { ctx.step });
                rng.set_word_pos(at.index as u128);
                at.per_image(&ctx.teachers[rng.random_range(0..ctx.teachers.len())].logits)
            }
        };
        let student = at.per_image(&ctx.student.logits);
        Ok(if self.multi_label { kd_bce(student, target, self.temperature) } else { kd_kl(student, target, self.temperature) })
    }
}

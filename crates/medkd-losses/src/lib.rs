//! Loss terms for medkd. A training objective is a list of named, weighted terms
//! ([`LossSpec`] in a config), each computed from the student's and teachers' [`Features`]
//! and the batch targets, so every method (plain training, KD, SSD-KD, RoS-KD, ...) is a
//! different list of terms over one training loop.

mod boxes;
mod classification;
mod dino;
mod error;
mod feature;
mod kd;
mod objective;
mod relational;
mod self_supervised;
mod spec;
mod term;
pub mod terms;

pub use boxes::{box_l1, decode_boxes, giou_loss};
pub use classification::{
    bce_with_logits, class_balanced_weights, cross_entropy, focal, inverse_frequency_weights, ldam, logit_adjusted_cross_entropy,
    soft_cross_entropy, weighted_cross_entropy,
};
pub use dino::{DinoHead, DinoHeadShape, cosine_schedule, dino_loss, teacher_temperature, updated_center};
pub use error::LossError;
pub use feature::{ConvRegressor, attention_transfer, channel_gram_rmse, hint_mse, l2_normalize};
pub use kd::{kd_bce, kd_kl};
pub use medkd_models::Features;
pub use objective::{HeadSpec, LossContext, Objective, TaskFacts, TeacherFacts, TermValue};
pub use relational::{rkd_angle, rkd_distance};
pub use self_supervised::{
    ProjectionHead, VIEWS, error_level_keep, kd_rotated, normal_rows, rotated_rows, rotation_contrastive, rotation_similarity,
    similarity_kd, with_rotations,
};
pub use spec::LossSpec;
pub use term::{LossTerm, Needs, TermAt, TermSpec};
pub use terms::cross_entropy::{ClassWeightRule, ClassWeights};
pub use terms::kd::{TeacherMix, TeacherRule};
pub use terms::rkd_angle::DEFAULT_RKD_ANGLE_CHUNK;

/// Batch targets as the data loader gives them, kept on the host until a term needs them.
#[derive(Clone, Debug, PartialEq)]
pub enum Targets {
    /// One class index per sample.
    Classes(Vec<usize>),
    /// Multi-hot labels, row-major `N x num_labels`.
    MultiHot { values: Vec<f32>, num_labels: usize },
    /// One normalized `[x0, y0, x1, y1]` box per sample (localization).
    Boxes(Vec<[f32; 4]>),
}

impl Targets {
    pub fn len(&self) -> usize {
        match self {
            Targets::Classes(classes) => classes.len(),
            Targets::MultiHot { values, num_labels } => values.len() / num_labels.max(&1),
            Targets::Boxes(boxes) => boxes.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use crate::LossError;
use crate::term::TermSpec;

/// Declares [`LossSpec`], one `[[loss]]` entry of a config: a term kind (`kind = "..."`), its
/// weight in the total and its parameters. The enum is the registry of loss terms: a term in the
/// `TermSpec` shape is registered by one line under `terms`, which also routes it through
/// [`LossSpec::term_spec`].
macro_rules! loss_spec {
    (legacy { $($legacy:tt)* } terms { $($(#[$doc:meta])* $variant:ident($spec:ty),)* }) => {
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
        pub enum LossSpec {
            $($legacy)*
            $($(#[$doc])* $variant($spec),)*
        }

        impl LossSpec {
            /// The spec of a term in the `TermSpec` shape; `None` for the older terms.
            pub fn term_spec(&self) -> Option<&dyn TermSpec> {
                #[allow(unreachable_patterns, reason = "every term may come to have the shape")]
                match self {
                    $(LossSpec::$variant(spec) => Some(spec),)*
                    _ => None,
                }
            }
        }
    };
}

loss_spec! {
    // Terms written before the `TermSpec` shape: their parameters, checks and maths are spread
    // over this file and objective.rs. They move to terms/ as they are next touched.
    legacy {
    /// Softmax cross-entropy with optional class weights and label smoothing (PyTorch semantics).
    CrossEntropy {
        #[serde(default = "unit_weight")]
        weight: f64,
        #[serde(default)]
        label_smoothing: f64,
        #[serde(default)]
        class_weights: ClassWeights,
    },
    /// Binary cross-entropy on logits, averaged over samples and labels (multi-label tasks).
    Bce {
        #[serde(default = "unit_weight")]
        weight: f64,
    },
    /// Hinton soft-target KD from the teachers' logits: `T^2 KL(softmax(z_t/T) || softmax(z_s/T))`
    /// (batchmean) on single-label tasks, mean `BCE(sigmoid(z_s/T), sigmoid(z_t/T))` on
    /// multi-label ones.
    Kd {
        #[serde(default = "unit_weight")]
        weight: f64,
        #[serde(default = "default_temperature")]
        temperature: f64,
        /// How several teachers' logits become one target.
        #[serde(default)]
        teachers: TeacherMix,
    },
    /// Park et al. (2019) RKD angle term on the pooled embeddings of one teacher, computed
    /// `chunk` anchors at a time.
    RkdAngle {
        #[serde(default = "unit_weight")]
        weight: f64,
        #[serde(default)]
        teacher: usize,
        #[serde(default = "default_chunk")]
        chunk: usize,
    },
    /// Attention transfer (Zagoruyko & Komodakis 2017) between stage maps of equal spatial size,
    /// summed over the listed stages (0-3).
    Attention {
        #[serde(default = "unit_weight")]
        weight: f64,
        #[serde(default)]
        teacher: usize,
        #[serde(default = "all_stages")]
        stages: Vec<usize>,
    },
    /// FitNets hint: mean squared error between a student stage map, passed through a trainable
    /// 1x1 [`crate::ConvRegressor`] when the channel counts differ, and the teacher's map.
    Hint {
        #[serde(default = "unit_weight")]
        weight: f64,
        #[serde(default)]
        teacher: usize,
        #[serde(default = "last_stage")]
        stage: usize,
    },
    /// SSD-KD's channel-relation term: RMSE between per-instance `C x C` Gram matrices of a
    /// stage map (divided by `C H W`), the student's map regressed as for `hint`.
    ChannelGram {
        #[serde(default = "unit_weight")]
        weight: f64,
        #[serde(default)]
        teacher: usize,
        #[serde(default = "last_stage")]
        stage: usize,
    },
    /// SSKD's rotated-view KD (SSD-KD's L3): Hinton KD on the 90/180/270-degree views that
    /// error-level ranking of one teacher's predictions keeps (all it classifies correctly, plus
    /// the best-ranked `ratio` of the rest). Turns on rotated views for the whole objective.
    KdRotated {
        #[serde(default = "unit_weight")]
        weight: f64,
        #[serde(default = "default_temperature")]
        temperature: f64,
        #[serde(default)]
        teacher: usize,
        #[serde(default = "unit_ratio")]
        ratio: f64,
    },
    /// SSKD's self-supervised similarity KD (SSD-KD's L4): KD at `temperature` between the
    /// teacher's and the student's rotated-vs-normal cosine-similarity rows of their projected
    /// pooled embeddings, on the rows error-level ranking keeps with `ratio`. The teacher's
    /// projection head is trained first (stage 1) for `head_epochs` with SGD at `head_lr`;
    /// the student's head trains with the student. Turns on rotated views. `head` skips stage 1
    /// with a teacher head an earlier run trained (its `checkpoints/teacher_head_N.bpk`): the same
    /// teacher, data and seed train the same head, so ablations can share one.
    Sskd {
        #[serde(default = "unit_weight")]
        weight: f64,
        #[serde(default = "default_similarity_temperature")]
        temperature: f64,
        #[serde(default = "default_similarity_ratio")]
        ratio: f64,
        #[serde(default)]
        teacher: usize,
        #[serde(default = "default_head_epochs")]
        head_epochs: usize,
        #[serde(default = "default_head_lr")]
        head_lr: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        head: Option<PathBuf>,
    },
    }
    // Terms in the `TermSpec` shape (terms/): one variant line each.
    terms {
        /// Park et al. (2019) RKD distance term on the pooled embeddings of one teacher.
        RkdDistance(crate::terms::rkd_distance::RkdDistanceSpec),
    }
}

fn unit_ratio() -> f64 {
    1.0
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

fn last_stage() -> usize {
    3
}
pub(crate) fn unit_weight() -> f64 {
    1.0
}
fn default_temperature() -> f64 {
    4.0
}
/// Vertices per chunk of the `rkd_angle` term when the config gives none.
pub const DEFAULT_RKD_ANGLE_CHUNK: usize = 32;

fn default_chunk() -> usize {
    DEFAULT_RKD_ANGLE_CHUNK
}
fn all_stages() -> Vec<usize> {
    vec![0, 1, 2, 3]
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

/// How cross-entropy weighs classes: `"none"`, `"inverse_frequency"` (N_total / N_c on the
/// training split, as SSD-KD's weighted CE) or an explicit list, one weight per class.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ClassWeights {
    Rule(ClassWeightRule),
    Explicit(Vec<f64>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassWeightRule {
    None,
    InverseFrequency,
}

impl Default for ClassWeights {
    fn default() -> Self {
        ClassWeights::Rule(ClassWeightRule::None)
    }
}

impl LossSpec {
    /// The name the term is logged under (`metrics.jsonl`, progress bar).
    pub fn name(&self) -> &'static str {
        if let Some(spec) = self.term_spec() {
            return spec.kind();
        }
        match self {
            LossSpec::CrossEntropy { .. } => "cross_entropy",
            LossSpec::Bce { .. } => "bce",
            LossSpec::Kd { .. } => "kd",
            LossSpec::RkdAngle { .. } => "rkd_angle",
            LossSpec::Attention { .. } => "attention",
            LossSpec::Hint { .. } => "hint",
            LossSpec::ChannelGram { .. } => "channel_gram",
            LossSpec::KdRotated { .. } => "kd_rotated",
            LossSpec::Sskd { .. } => "sskd",
            _ => unreachable!("terms in the TermSpec shape answered above"),
        }
    }

    pub fn weight(&self) -> f64 {
        if let Some(spec) = self.term_spec() {
            return spec.weight();
        }
        match self {
            LossSpec::CrossEntropy { weight, .. }
            | LossSpec::Bce { weight }
            | LossSpec::Kd { weight, .. }
            | LossSpec::RkdAngle { weight, .. }
            | LossSpec::Attention { weight, .. }
            | LossSpec::Hint { weight, .. }
            | LossSpec::ChannelGram { weight, .. }
            | LossSpec::KdRotated { weight, .. }
            | LossSpec::Sskd { weight, .. } => *weight,
            _ => unreachable!("terms in the TermSpec shape answered above"),
        }
    }

    /// Checks parameters that do not depend on the data (weights, ranges).
    pub fn validate(&self) -> Result<(), LossError> {
        let name = self.name();
        let weight = self.weight();
        if !(weight.is_finite() && weight >= 0.0) {
            return Err(LossError::bad(name, format!("weight must be a finite number >= 0, got {weight}")));
        }
        if let Some(spec) = self.term_spec() {
            return spec.validate();
        }
        match self {
            LossSpec::CrossEntropy { label_smoothing, class_weights, .. } => {
                if !(0.0..1.0).contains(label_smoothing) {
                    return Err(LossError::bad(name, format!("label_smoothing must be in [0, 1), got {label_smoothing}")));
                }
                if let ClassWeights::Explicit(list) = class_weights {
                    if let Some(bad) = list.iter().find(|w| !(w.is_finite() && **w > 0.0)) {
                        return Err(LossError::bad(name, format!("class_weights must all be > 0, got {bad}")));
                    }
                }
            }
            LossSpec::Kd { temperature, teachers, .. } => {
                check_temperature(name, *temperature)?;
                if let TeacherMix::Weights(list) = teachers {
                    if list.iter().any(|w| !(w.is_finite() && *w >= 0.0)) || list.iter().sum::<f64>() <= 0.0 {
                        return Err(LossError::bad(name, format!("teachers weights must be >= 0 with a positive sum, got {list:?}")));
                    }
                }
            }
            LossSpec::KdRotated { temperature, ratio, .. } => {
                check_temperature(name, *temperature)?;
                check_ratio(name, *ratio)?;
            }
            LossSpec::Sskd { temperature, ratio, head_epochs, head_lr, .. } => {
                check_temperature(name, *temperature)?;
                check_ratio(name, *ratio)?;
                if *head_epochs == 0 {
                    return Err(LossError::bad(name, "head_epochs must be at least 1"));
                }
                if !(head_lr.is_finite() && *head_lr > 0.0) {
                    return Err(LossError::bad(name, format!("head_lr must be > 0, got {head_lr}")));
                }
            }
            LossSpec::RkdAngle { chunk: 0, .. } => {
                return Err(LossError::bad(name, "chunk must be at least 1"));
            }
            // Which map indices exist is the architecture's: checked against its layout.
            LossSpec::Attention { stages, .. } if stages.is_empty() => {
                return Err(LossError::bad(name, "stages must list at least one stage map index"));
            }
            _ => {}
        }
        Ok(())
    }
}

fn check_temperature(name: &str, temperature: f64) -> Result<(), LossError> {
    if temperature.is_finite() && temperature > 0.0 {
        Ok(())
    } else {
        Err(LossError::bad(name, format!("temperature must be > 0, got {temperature}")))
    }
}

fn check_ratio(name: &str, ratio: f64) -> Result<(), LossError> {
    if (0.0..=1.0).contains(&ratio) { Ok(()) } else { Err(LossError::bad(name, format!("ratio must be in [0, 1], got {ratio}"))) }
}

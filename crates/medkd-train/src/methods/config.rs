//! The `[method]` section of a run config: each method's own keys. A leaf module (serde only), so
//! that `crate::config` can name the methods' sections while the methods read `RunConfig`
//! without an import loop.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The `[method]` table of a run config: which method runs on the loop (`kind`) and that method's
/// own keys. Absent, the method is `classify`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MethodConfig {
    /// Supervised classification with the config's loss terms and optional frozen teachers.
    Classify(ClassifyConfig),
    /// One box per image (lesion localization) with the box loss terms, optionally attending to
    /// hard-to-learn samples found by pruning.
    Localize(LocalizeConfig),
}

impl Default for MethodConfig {
    fn default() -> Self {
        MethodConfig::Classify(ClassifyConfig::default())
    }
}

impl MethodConfig {
    pub fn is_default(&self) -> bool {
        *self == MethodConfig::default()
    }

    /// Checks the keys that do not depend on the data, naming the key at fault; `epochs` is the
    /// run's `train.epochs`.
    pub fn validate(&self, epochs: usize) -> Result<(), String> {
        match self {
            MethodConfig::Classify(_) => Ok(()),
            MethodConfig::Localize(localize) => {
                localize.htl.as_ref().map_or(Ok(()), HtlConfig::validate)?;
                localize.semi.as_ref().map_or(Ok(()), |semi| semi.validate(epochs))?;
                match &localize.weak {
                    Some(_) if localize.semi.is_some() => {
                        Err("`method.weak` and `method.semi`: give one (weak trains on class labels and no box at all)".into())
                    }
                    Some(WeakConfig { cam_threshold }) if !(*cam_threshold > 0.0 && *cam_threshold < 1.0) => Err(format!(
                        "`method.weak.cam_threshold`: must be in (0, 1) (a fraction of the map's maximum), got {cam_threshold}"
                    )),
                    _ => Ok(()),
                }
            }
        }
    }
}

/// `[method] kind = "classify"`: no keys of its own; the objective is the config's `[[loss]]`
/// terms and the teachers its `[[teacher]]` entries.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifyConfig {}

/// `[method] kind = "localize"`: a box regressor trained with the config's box terms (`box_l1`,
/// `giou`); `[method.htl]` weighs hard-to-learn samples up (Jaiswal et al., WACV 2023);
/// `[method.semi]` keeps the boxes of only part of the training images.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalizeConfig {
    pub htl: Option<HtlConfig>,
    pub semi: Option<SemiConfig>,
    pub weak: Option<WeakConfig>,
}

/// `[method.weak]`: weakly supervised localization. The model is a classifier trained on the
/// class labels alone (`data.label_column`; class terms such as `cross_entropy`); its box for an
/// image is that of its class activation map (Grad-CAM of the predicted class, upsampled to the
/// input) at `cam_threshold` x the map's maximum, largest connected region (Zhou et al. 2016).
/// The true boxes only score it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeakConfig {
    #[serde(default = "default_cam_threshold")]
    pub cam_threshold: f64,
}

fn default_cam_threshold() -> f64 {
    0.2
}

/// `[method.semi]`: semi-supervised localization (self-training with an EMA teacher, as STAC and
/// the mean teacher). A seeded `labelled` fraction of the training images keeps its boxes; the
/// others are trained on pseudo-boxes that an exponential moving average (`ema_decay`, per step)
/// of the model predicts on the un-augmented images after epoch `burn_in_epochs` and every
/// `refresh_epochs` epochs after it, moved by the loader with each image's augmentation. A
/// pseudo-box counts only where the teacher is consistent: its box on the image overlaps with
/// IoU >= `confidence` both its box on the mirrored image and its box on the central 80% crop,
/// each mapped back (the pseudo-box is the mean of the first two); it then weighs `weight` in the
/// box terms (a labelled box 1), reached along a sigmoid-shaped ramp over `ramp_epochs`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SemiConfig {
    pub labelled: f64,
    /// Seeds the choice of labelled images (not the run seed, so that runs of several seeds
    /// share one labelled set).
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "default_ema_decay")]
    pub ema_decay: f64,
    #[serde(default = "default_semi_weight")]
    pub weight: f64,
    #[serde(default = "default_confidence")]
    pub confidence: f64,
    #[serde(default = "default_burn_in")]
    pub burn_in_epochs: usize,
    #[serde(default = "default_ramp")]
    pub ramp_epochs: usize,
    #[serde(default = "default_refresh")]
    pub refresh_epochs: usize,
}

fn default_ema_decay() -> f64 {
    0.99
}
fn default_semi_weight() -> f64 {
    1.0
}
fn default_confidence() -> f64 {
    0.8
}
fn default_burn_in() -> usize {
    5
}
fn default_ramp() -> usize {
    5
}
fn default_refresh() -> usize {
    2
}

impl SemiConfig {
    fn validate(&self, epochs: usize) -> Result<(), String> {
        if !(self.labelled > 0.0 && self.labelled < 1.0) {
            return Err(format!(
                "`method.semi.labelled`: must be in (0, 1) (the fraction of training images that keep their box), got {}",
                self.labelled
            ));
        }
        if !(0.0..1.0).contains(&self.ema_decay) {
            return Err(format!("`method.semi.ema_decay`: must be in [0, 1), got {}", self.ema_decay));
        }
        if !(self.weight.is_finite() && self.weight >= 0.0) {
            return Err(format!("`method.semi.weight`: must be a finite number >= 0, got {}", self.weight));
        }
        if !(0.0..=1.0).contains(&self.confidence) {
            return Err(format!("`method.semi.confidence`: must be in [0, 1] (an IoU), got {}", self.confidence));
        }
        if self.refresh_epochs == 0 {
            return Err("`method.semi.refresh_epochs`: must be at least 1".into());
        }
        if self.burn_in_epochs >= epochs {
            return Err(format!("`method.semi.burn_in_epochs`: must be below train.epochs = {epochs}, got {}", self.burn_in_epochs));
        }
        Ok(())
    }
}

/// `[method.htl]`: every hard-to-learn (HTL) training sample weighs `1 + beta` in the box terms,
/// the others 1. The HTL set is either fixed, read from `medkd prune`'s `htl.csv` (`file`), or
/// found adaptively: every `refresh_epochs` epochs the model being trained is pruned at `sparsity`
/// and the training images whose pruned box overlaps the dense box with IoU below `agreement`
/// become the HTL set (empty before the first refresh).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HtlConfig {
    #[serde(default = "default_beta")]
    pub beta: f64,
    pub file: Option<PathBuf>,
    pub refresh_epochs: Option<usize>,
    #[serde(default = "default_sparsity")]
    pub sparsity: f64,
    #[serde(default = "default_agreement")]
    pub agreement: f64,
}

fn default_beta() -> f64 {
    2.0
}
fn default_sparsity() -> f64 {
    0.5
}
fn default_agreement() -> f64 {
    0.5
}

impl HtlConfig {
    fn validate(&self) -> Result<(), String> {
        if !(self.beta.is_finite() && self.beta >= 0.0) {
            return Err(format!("`method.htl.beta`: must be a finite number >= 0, got {}", self.beta));
        }
        match (&self.file, self.refresh_epochs) {
            (Some(_), None) => {}
            (None, Some(0)) => return Err("`method.htl.refresh_epochs`: must be at least 1".into()),
            (None, Some(_)) => {
                if !(0.0..1.0).contains(&self.sparsity) {
                    return Err(format!("`method.htl.sparsity`: must be in [0, 1), got {}", self.sparsity));
                }
                if !(self.agreement > 0.0 && self.agreement <= 1.0) {
                    return Err(format!("`method.htl.agreement`: must be in (0, 1], got {}", self.agreement));
                }
            }
            _ => {
                return Err("`method.htl`: give either `file` (the htl.csv of `medkd prune`) or `refresh_epochs` (prune the model being trained every N epochs)".into());
            }
        }
        Ok(())
    }
}

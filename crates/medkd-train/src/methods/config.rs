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
    /// Self-supervised pre-training without labels: DINO self-distillation (Caron et al., 2021).
    Dino(DinoPretrainConfig),
    /// One round of DISTL (Park et al., 2022): self-training on soft pseudo-labels of an EMA
    /// teacher plus DINO, with correction passes on the labelled set.
    Distl(DistlConfig),
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
            MethodConfig::Dino(dino) => dino.validate(),
            MethodConfig::Distl(distl) => distl.validate(),
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

/// `[method.dino]`: DINO's self-distillation (methods.md A.2): the student sees two global views
/// and `local_crops.number` local ones, an EMA teacher (momentum from `momentum_teacher` to 1 on a
/// cosine over the run) the global ones; the teacher's head outputs are centred (centre momentum
/// `center_momentum`) and sharpened (`teacher_temp`, reached linearly from `warmup_teacher_temp`
/// over `warmup_teacher_temp_epochs`), the student's divided by `student_temp`. The projection
/// head (`hidden`, `bottleneck`, `out_dim`) reads the model's pooled embedding (a ViT's CLS token);
/// its last layer learns only after `freeze_last_layer_epochs`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DinoConfig {
    #[serde(default = "default_out_dim")]
    pub out_dim: usize,
    #[serde(default = "default_hidden")]
    pub hidden: usize,
    #[serde(default = "default_bottleneck")]
    pub bottleneck: usize,
    #[serde(default = "default_teacher_temp")]
    pub teacher_temp: f64,
    #[serde(default = "default_teacher_temp")]
    pub warmup_teacher_temp: f64,
    #[serde(default)]
    pub warmup_teacher_temp_epochs: usize,
    #[serde(default = "default_student_temp")]
    pub student_temp: f64,
    #[serde(default = "default_center_momentum")]
    pub center_momentum: f64,
    /// Default 0.996 (DINO's), 0.9995 in a DISTL round (the official code's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub momentum_teacher: Option<f64>,
    #[serde(default = "default_freeze_last_layer")]
    pub freeze_last_layer_epochs: usize,
    #[serde(default)]
    pub local_crops: LocalCrops,
}

impl Default for DinoConfig {
    fn default() -> Self {
        toml::from_str("").expect("every DINO key has a default")
    }
}

/// `[method.dino.local_crops]`: `number` random resized crops of `size` pixels (default: half the
/// global size) covering `scale` of the image, then the training transforms that are not crops or
/// resizes (rotation, flips, colour).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalCrops {
    #[serde(default = "default_local_number")]
    pub number: usize,
    pub size: Option<u32>,
    #[serde(default = "default_local_scale")]
    pub scale: [f32; 2],
}

impl Default for LocalCrops {
    fn default() -> Self {
        LocalCrops { number: default_local_number(), size: None, scale: default_local_scale() }
    }
}

fn default_out_dim() -> usize {
    65536
}
fn default_hidden() -> usize {
    2048
}
fn default_bottleneck() -> usize {
    256
}
fn default_teacher_temp() -> f64 {
    0.04
}
fn default_student_temp() -> f64 {
    0.1
}
fn default_center_momentum() -> f64 {
    0.9
}
fn default_freeze_last_layer() -> usize {
    1
}
fn default_local_number() -> usize {
    8
}
fn default_local_scale() -> [f32; 2] {
    [0.2, 0.6]
}

impl DinoConfig {
    fn validate(&self) -> Result<(), String> {
        for (key, value) in [("out_dim", self.out_dim), ("hidden", self.hidden), ("bottleneck", self.bottleneck)] {
            if value == 0 {
                return Err(format!("`method.dino.{key}`: must be at least 1"));
            }
        }
        for (key, value) in
            [("teacher_temp", self.teacher_temp), ("warmup_teacher_temp", self.warmup_teacher_temp), ("student_temp", self.student_temp)]
        {
            if !(value.is_finite() && value > 0.0) {
                return Err(format!("`method.dino.{key}`: must be a temperature > 0, got {value}"));
            }
        }
        for (key, value) in [("center_momentum", Some(self.center_momentum)), ("momentum_teacher", self.momentum_teacher)] {
            let Some(value) = value else { continue };
            if !(0.0..=1.0).contains(&value) {
                return Err(format!("`method.dino.{key}`: must be in [0, 1], got {value}"));
            }
        }
        let [low, high] = self.local_crops.scale;
        if !(low > 0.0 && low <= high && high <= 1.0) {
            return Err(format!("`method.dino.local_crops.scale`: must be [low, high] with 0 < low <= high <= 1, got [{low}, {high}]"));
        }
        if self.local_crops.size == Some(0) {
            return Err("`method.dino.local_crops.size`: must be at least 1 pixel".into());
        }
        Ok(())
    }
}

/// `[method] kind = "dino"`: self-supervised pre-training on the training images, their labels
/// unused. Every epoch is scored by a weighted k-NN classifier on the pooled embeddings (DINO's
/// `eval_knn`: cosine similarity, the `knn_k` nearest training images vote with weight
/// `exp(similarity / knn_temperature)`), the training split's labels as the memory bank.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DinoPretrainConfig {
    #[serde(default)]
    pub dino: DinoConfig,
    #[serde(default = "default_knn_k")]
    pub knn_k: usize,
    #[serde(default = "default_knn_temperature")]
    pub knn_temperature: f64,
}

fn default_knn_k() -> usize {
    20
}
fn default_knn_temperature() -> f64 {
    0.07
}

impl DinoPretrainConfig {
    fn validate(&self) -> Result<(), String> {
        if self.knn_k == 0 {
            return Err("`method.knn_k`: must be at least 1".into());
        }
        if !(self.knn_temperature.is_finite() && self.knn_temperature > 0.0) {
            return Err(format!("`method.knn_temperature`: must be > 0, got {}", self.knn_temperature));
        }
        self.dino.validate()
    }
}

/// Soft or hard pseudo-labels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PseudoLabels {
    /// The teacher's class probabilities (softmax; sigmoid per label for multi-label data).
    #[default]
    Soft,
    /// Its most probable class (labels above 0.5 for multi-label data).
    Hard,
}

/// `[method] kind = "distl"`: one round of DISTL. The training split is cut by `split_seed` into
/// a `labelled` fraction (the samples `data.train_subset` with that ratio and seed keeps) and
/// `folds` unlabelled folds (`distl_split.csv` in the run folder); this round sees the labelled
/// part and the first `use_folds` folds. With no fold (round 0), or `labels_on_folds` (the
/// supervised baseline on the same images), it is plain supervised training with the config's
/// loss terms. Otherwise each unlabelled batch's loss is
/// `lambda · DINO + (1 − lambda) · alpha(e) · CE(student on the augmented global view, teacher
/// pseudo-labels on the un-augmented one)` with `alpha(e) = 2 (e + 1) / epochs` (`alpha_ramp`,
/// else 1), and before unlabelled batch 0, `correction_every`, 2·`correction_every`, … of each
/// epoch a pass over the labelled set trains `lambda · DINO + (1 − lambda) · loss terms`
/// (`correction_every = 0`: no correction pass).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistlConfig {
    pub labelled: f64,
    #[serde(default = "default_folds")]
    pub folds: usize,
    #[serde(default)]
    pub use_folds: usize,
    #[serde(default)]
    pub split_seed: u64,
    #[serde(default)]
    pub labels_on_folds: bool,
    #[serde(default = "default_lambda")]
    pub lambda: f64,
    #[serde(default = "default_true")]
    pub alpha_ramp: bool,
    #[serde(default = "default_correction_every")]
    pub correction_every: usize,
    #[serde(default)]
    pub pseudo_labels: PseudoLabels,
    #[serde(default)]
    pub dino: DinoConfig,
    /// A finished self-training round's run folder: this round starts its student (model and
    /// DINO head), teacher and centre from that round's last epoch, as the official code starts
    /// rounds 2 and later (`medkd distl` sets it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_round: Option<PathBuf>,
}

fn default_folds() -> usize {
    3
}
fn default_lambda() -> f64 {
    0.5
}
fn default_true() -> bool {
    true
}
fn default_correction_every() -> usize {
    500
}

impl DistlConfig {
    /// Whether this round trains on labels alone (round 0, or the supervised baseline).
    pub fn supervised(&self) -> bool {
        self.use_folds == 0 || self.labels_on_folds
    }

    fn validate(&self) -> Result<(), String> {
        if !(self.labelled > 0.0 && self.labelled < 1.0) {
            return Err(format!(
                "`method.labelled`: must be in (0, 1) (the fraction of training images that keep their label), got {}",
                self.labelled
            ));
        }
        if self.folds == 0 {
            return Err("`method.folds`: must be at least 1".into());
        }
        if self.use_folds > self.folds {
            return Err(format!("`method.use_folds`: at most `method.folds` = {}, got {}", self.folds, self.use_folds));
        }
        if !(0.0..=1.0).contains(&self.lambda) {
            return Err(format!("`method.lambda`: must be in [0, 1], got {}", self.lambda));
        }
        if self.previous_round.is_some() && self.supervised() {
            return Err(
                "`method.previous_round`: only a self-training round (use_folds > 0, no labels_on_folds) carries a round over".into()
            );
        }
        self.dino.validate()
    }
}

//! The run config: one TOML file (`configs/**.toml`) deserialized into validated types.
//! Unknown keys are an error everywhere (`deny_unknown_fields`), so a typo never silently
//! falls back to a default.

use std::path::{Path, PathBuf};

use medkd_data::{DataConfig, Sampling};
use medkd_eval::{Metric, ShotThresholds};
use medkd_losses::LossSpec;
use medkd_losses::terms::sskd::SskdSpec;
use medkd_models::Arch;
use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::averaging::AveragingConfig;
use crate::methods::config::{HtlConfig, LocalizeConfig, MethodConfig};
use crate::pretrained;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Seeds model init, shuffling and augmentation (the split has its own `data.split.seed`).
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub device: DeviceChoice,
    /// Data-parallel training on this many devices of `device`'s kind (1: one device). Every
    /// batch is cut into one shard per device; see [`crate::engine`]'s `sharded_step`.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub devices: usize,
    /// `[method]`: the training method and its keys ([`crate::methods`]); `classify` when absent.
    #[serde(default, skip_serializing_if = "MethodConfig::is_default")]
    pub method: MethodConfig,
    pub data: DataConfig,
    /// `[shots]`: the training counts that make a class many-, medium- or few-shot, for the
    /// shot-group metrics of every evaluation.
    #[serde(default, skip_serializing_if = "is_default_shots")]
    pub shots: ShotThresholds,
    pub model: ModelConfig,
    pub train: TrainConfig,
    /// Absent only for `[method] kind = "dino"`, whose loss is DINO's own.
    #[serde(default, rename = "loss", skip_serializing_if = "Vec::is_empty")]
    pub losses: Vec<LossSpec>,
    /// Frozen teachers whose outputs KD terms read (`medkd distill`).
    #[serde(default, rename = "teacher", skip_serializing_if = "Vec::is_empty")]
    pub teachers: Vec<TeacherConfig>,
}

fn one() -> usize {
    1
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

fn is_default_shots(shots: &ShotThresholds) -> bool {
    *shots == ShotThresholds::default()
}

/// A `[[teacher]]` entry: a finished medkd run folder (its architecture, class names and best
/// weights), or an architecture with a weights file in torchvision naming.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeacherConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<Arch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<PathBuf>,
    /// With `arch`: the 28-64 px stem (see `model.small_input`).
    #[serde(default)]
    pub small_input: bool,
}

/// Where tensors live. `flex` (pure-Rust CPU) is always built; GPU backends and LibTorch's CPU
/// backend are cargo features.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    #[default]
    Flex,
    Cuda,
    Wgpu,
    Libtorch,
}

impl DeviceChoice {
    /// The cargo feature that builds this device's backend into medkd.
    pub fn cargo_feature(self) -> &'static str {
        match self {
            DeviceChoice::Flex => "default",
            DeviceChoice::Cuda => "cuda",
            DeviceChoice::Wgpu => "wgpu",
            DeviceChoice::Libtorch => "tch",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub arch: Arch,
    /// 3x3 stride-1 stem without max-pool, for 28-64 px inputs.
    #[serde(default)]
    pub small_input: bool,
    /// Initial weights (.safetensors or .pth, torchvision names; or `"imagenet"` for the
    /// architecture's downloaded ImageNet weights, see `pretrained.rs`); every tensor must match
    /// except those under `pretrained_skip`.
    #[serde(default)]
    pub pretrained: Option<PathBuf>,
    /// Tensor-name prefixes of `pretrained` to leave at their initial values, e.g. `["fc."]`
    /// to put ImageNet weights under a new ResNet head.
    #[serde(default)]
    pub pretrained_skip: Vec<String>,
    /// Prunes the initial (usually `pretrained`) weights by global magnitude to this share of
    /// zero conv and linear weights, and keeps them zero through training (fine-tuning a pruned
    /// model).
    #[serde(default)]
    pub prune_sparsity: Option<f64>,
    /// Stochastic depth of a ViT's last block (linear from 0 at the first block).
    #[serde(default)]
    pub drop_path_rate: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    #[serde(default = "default_eval_batch_size")]
    pub eval_batch_size: usize,
    pub optimizer: OptimizerConfig,
    #[serde(default)]
    pub schedule: ScheduleConfig,
    /// Linear warm-up from 0 to the base learning rate over this many epochs (fractional ok).
    #[serde(default)]
    pub warmup_epochs: f64,
    #[serde(default)]
    pub early_stopping: Option<EarlyStopping>,
    /// Validation metric that picks the best checkpoint (see [`Metric`]).
    #[serde(default = "default_select_metric")]
    pub select_metric: Metric,
    /// Decode/augment threads of the data loader.
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Batches decoded ahead of the training step.
    #[serde(default = "default_prefetch")]
    pub prefetch: usize,
    /// Class re-sampling of the training split (long-tailed data): `class_balanced` or
    /// `square_root`; absent, every sample once per epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling: Option<Sampling>,
    /// Student weight smoothing (EMA or SWA); the average is what gets evaluated and saved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_averaging: Option<AveragingConfig>,
    /// Fine-tuning a pretrained student: a slower or frozen backbone, frozen BatchNorm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finetune: Option<FinetuneConfig>,
    /// `false`: biases and norm parameters (every 1-D parameter) learn without weight decay.
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub decay_biases_and_norms: bool,
    /// Each parameter's gradient scaled down to at most this L2 norm (DINO's 3.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_clip_norm: Option<f64>,
    /// Checkpoints (best weights and the resume set) are written after an epoch once this many
    /// seconds have passed since the last write, and after the last epoch; 0: after every epoch.
    /// Epochs in between are held in memory and written on Ctrl-C or an error; a kill loses them
    /// (`--resume` trains them again, to the same result).
    #[serde(default = "default_checkpoint_every_seconds", skip_serializing_if = "is_default_checkpoint_every_seconds")]
    pub checkpoint_every_seconds: f64,
}

/// How a pretrained network is fine-tuned. The backbone is every model parameter but the
/// classifier's (`fc`, `classifier`, `_fc`); loss terms' own heads learn with the classifier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinetuneConfig {
    /// The backbone learns at this fraction of the scheduled learning rate (e.g. 0.1).
    #[serde(default = "default_backbone_lr_scale")]
    pub backbone_lr_scale: f64,
    /// The first epochs train the classifier alone, then everything; all epochs: linear probing.
    #[serde(default)]
    pub freeze_backbone_epochs: usize,
    /// BatchNorm keeps the pretrained running statistics in training (scale and shift still
    /// learn): for small batches or data far from ImageNet's statistics.
    #[serde(default)]
    pub frozen_batch_norm: bool,
}

fn default_backbone_lr_scale() -> f64 {
    1.0
}

fn default_true() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

fn default_checkpoint_every_seconds() -> f64 {
    60.0
}

fn is_default_checkpoint_every_seconds(seconds: &f64) -> bool {
    *seconds == default_checkpoint_every_seconds()
}

fn default_eval_batch_size() -> usize {
    256
}
fn default_select_metric() -> Metric {
    Metric::Auc
}
fn default_workers() -> usize {
    2
}
fn default_prefetch() -> usize {
    4
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum OptimizerConfig {
    /// SGD with torch semantics (dampening 0; burn's default of 0.1 is not used).
    Sgd {
        lr: f64,
        #[serde(default)]
        momentum: f64,
        #[serde(default)]
        nesterov: bool,
        #[serde(default)]
        weight_decay: f64,
    },
    /// Adam with L2 weight decay added to the gradient (torch's `Adam(weight_decay=...)`).
    Adam {
        lr: f64,
        #[serde(default = "default_betas")]
        betas: [f64; 2],
        #[serde(default = "default_eps")]
        eps: f64,
        #[serde(default)]
        weight_decay: f64,
    },
    /// AdamW with decoupled weight decay.
    AdamW {
        lr: f64,
        #[serde(default = "default_betas")]
        betas: [f64; 2],
        #[serde(default = "default_eps")]
        eps: f64,
        #[serde(default = "default_adamw_decay")]
        weight_decay: f64,
    },
}

fn default_betas() -> [f64; 2] {
    [0.9, 0.999]
}
fn default_eps() -> f64 {
    1e-8
}
fn default_adamw_decay() -> f64 {
    0.01
}

impl OptimizerConfig {
    pub fn lr(&self) -> f64 {
        match self {
            OptimizerConfig::Sgd { lr, .. } | OptimizerConfig::Adam { lr, .. } | OptimizerConfig::AdamW { lr, .. } => *lr,
        }
    }
}

/// Learning-rate schedule after warm-up, as a factor of the base rate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ScheduleConfig {
    // A struct variant, not a unit one, so that stray keys are rejected like everywhere else.
    Constant {},
    /// Multiply by `gamma` every `step_size` epochs.
    Step {
        step_size: usize,
        #[serde(default = "default_gamma")]
        gamma: f64,
    },
    /// Multiply by `gamma` at each listed epoch.
    MultiStep {
        milestones: Vec<usize>,
        #[serde(default = "default_gamma")]
        gamma: f64,
    },
    /// Cosine from the base rate to `min_lr` over the epochs after warm-up, per step.
    Cosine {
        #[serde(default)]
        min_lr: f64,
    },
    /// Multiply by `factor` when the selection metric has not improved for `patience` epochs.
    Plateau {
        #[serde(default = "default_gamma")]
        factor: f64,
        #[serde(default = "default_patience")]
        patience: usize,
        #[serde(default)]
        min_lr: f64,
    },
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig::Constant {}
    }
}

fn default_gamma() -> f64 {
    0.1
}
fn default_patience() -> usize {
    10
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarlyStopping {
    /// Stop after this many epochs without improvement of the selection metric.
    pub patience: usize,
    #[serde(default)]
    pub min_delta: f64,
}

impl RunConfig {
    /// Reads a config file, applies `key=value` overrides (dotted paths into the TOML tree,
    /// values parsed as TOML, else taken as strings), deserializes and validates it.
    pub fn load(path: &Path, overrides: &[String]) -> Result<RunConfig, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        Self::parse(&text, overrides).map_err(|e| e.in_file(path))
    }

    pub fn parse(text: &str, overrides: &[String]) -> Result<RunConfig, TrainError> {
        Self::from_table(parse_table(text, overrides)?)
    }

    /// Deserializes and validates a TOML tree (overrides already applied).
    pub fn from_table(tree: toml::Table) -> Result<RunConfig, TrainError> {
        let config: RunConfig = toml::Value::Table(tree).try_into().map_err(|e: toml::de::Error| TrainError::Config(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that types cannot express, naming the key at fault.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |key: &str, message: String| Err(TrainError::Config(format!("`{key}`: {message}")));
        self.shots.validate("shots").map_err(|e| TrainError::Config(e.to_string()))?;
        let train = &self.train;
        if self.devices == 0 {
            return bad("devices", "must be at least 1, got 0".into());
        }
        // A step on a shard must read nothing but its shard and make its tensors on its device.
        if self.devices > 1 && !self.teachers.is_empty() {
            return bad("devices", "teachers run on one device: distill with `devices = 1`".into());
        }
        if self.devices > 1 && matches!(self.method, MethodConfig::Dino(_) | MethodConfig::Distl(_)) {
            return bad("devices", "DINO's centre and EMA teacher follow whole batches: train on one device".into());
        }
        if self.devices > train.batch_size {
            return bad(
                "devices",
                format!("{} devices need a batch of at least {0} samples, `train.batch_size` is {}", self.devices, train.batch_size),
            );
        }
        if train.epochs == 0 {
            return bad("train.epochs", "must be at least 1, got 0".into());
        }
        if train.batch_size == 0 {
            return bad("train.batch_size", "must be at least 1, got 0".into());
        }
        if train.eval_batch_size == 0 {
            return bad("train.eval_batch_size", "must be at least 1, got 0".into());
        }
        if let Some(norm) = train.grad_clip_norm
            && !(norm.is_finite() && norm > 0.0)
        {
            return bad("train.grad_clip_norm", format!("must be a finite number > 0, got {norm}"));
        }
        let every = train.checkpoint_every_seconds;
        if !(every.is_finite() && every >= 0.0) {
            return bad("train.checkpoint_every_seconds", format!("must be a finite number of seconds >= 0, got {every}"));
        }
        let lr = train.optimizer.lr();
        if !(lr.is_finite() && lr > 0.0) {
            return bad("train.optimizer.lr", format!("must be a finite number > 0, got {lr}"));
        }
        match &train.optimizer {
            OptimizerConfig::Sgd { momentum, weight_decay, nesterov, .. } => {
                if !(0.0..1.0).contains(momentum) {
                    return bad("train.optimizer.momentum", format!("must be in [0, 1), got {momentum}"));
                }
                if *nesterov && *momentum == 0.0 {
                    return bad("train.optimizer.nesterov", "needs momentum > 0".into());
                }
                if !(*weight_decay >= 0.0) {
                    return bad("train.optimizer.weight_decay", format!("must be >= 0, got {weight_decay}"));
                }
            }
            OptimizerConfig::Adam { betas, eps, weight_decay, .. } | OptimizerConfig::AdamW { betas, eps, weight_decay, .. } => {
                if betas.iter().any(|b| !(0.0..1.0).contains(b)) {
                    return bad("train.optimizer.betas", format!("must be in [0, 1), got {betas:?}"));
                }
                if !(*eps > 0.0) {
                    return bad("train.optimizer.eps", format!("must be > 0, got {eps}"));
                }
                if !(*weight_decay >= 0.0) {
                    return bad("train.optimizer.weight_decay", format!("must be >= 0, got {weight_decay}"));
                }
            }
        }
        match &train.schedule {
            ScheduleConfig::Step { step_size: 0, .. } => return bad("train.schedule.step_size", "must be at least 1".into()),
            ScheduleConfig::Step { gamma, .. } | ScheduleConfig::MultiStep { gamma, .. } if !(*gamma > 0.0) => {
                return bad("train.schedule.gamma", format!("must be > 0, got {gamma}"));
            }
            ScheduleConfig::Plateau { factor, .. } if !(*factor > 0.0 && *factor < 1.0) => {
                return bad("train.schedule.factor", format!("must be in (0, 1), got {factor}"));
            }
            ScheduleConfig::Cosine { min_lr } | ScheduleConfig::Plateau { min_lr, .. } if !(*min_lr >= 0.0 && *min_lr <= lr) => {
                return bad("train.schedule.min_lr", format!("must be in [0, lr = {lr}], got {min_lr}"));
            }
            _ => {}
        }
        if !(train.warmup_epochs >= 0.0 && train.warmup_epochs < train.epochs as f64) {
            return bad("train.warmup_epochs", format!("must be in [0, epochs = {}), got {}", train.epochs, train.warmup_epochs));
        }
        if let Some(stop) = &train.early_stopping {
            if stop.patience == 0 {
                return bad("train.early_stopping.patience", "must be at least 1 (0 would stop after the first epoch)".into());
            }
        }
        if let Some(finetune) = &train.finetune {
            let scale = finetune.backbone_lr_scale;
            if !(scale.is_finite() && scale > 0.0) {
                return bad("train.finetune.backbone_lr_scale", format!("must be a finite number > 0, got {scale}"));
            }
            if finetune.freeze_backbone_epochs > train.epochs {
                let message = format!("must be at most train.epochs = {}, got {}", train.epochs, finetune.freeze_backbone_epochs);
                return bad("train.finetune.freeze_backbone_epochs", message);
            }
        }
        if let Some(averaging) = &train.weight_averaging {
            averaging.validate(train.epochs)?;
        }
        if let Some(sparsity) = self.model.prune_sparsity.filter(|s| !(0.0..1.0).contains(s)) {
            return bad("model.prune_sparsity", format!("must be in [0, 1), got {sparsity}"));
        }
        if !(0.0..1.0).contains(&self.model.drop_path_rate) {
            return bad("model.drop_path_rate", format!("must be in [0, 1), got {}", self.model.drop_path_rate));
        }
        if self.model.drop_path_rate > 0.0 && !self.model.arch.is_vit() {
            return bad("model.drop_path_rate", format!("is a ViT setting; {} has no stochastic depth to set", self.model.arch));
        }
        if self.model.small_input && self.model.arch.is_vit() {
            return bad(
                "model.small_input",
                format!("{} has no small-input stem: choose the patch size for the input instead", self.model.arch),
            );
        }
        if train.workers == 0 {
            return bad("train.workers", "must be at least 1".into());
        }
        for (index, spec) in self.losses.iter().enumerate() {
            spec.validate().map_err(|e| TrainError::Config(format!("`loss[{index}]`: {e}")))?;
        }
        match (&self.method, self.losses.is_empty()) {
            (MethodConfig::Dino(_), false) => {
                return bad("loss", "kind = \"dino\" trains DINO's own loss and no [[loss]] term; remove them".into());
            }
            (MethodConfig::Dino(_), true) => {}
            (_, true) => return bad("loss", "declare at least one [[loss]] term".into()),
            (_, false) => {}
        }
        for (index, teacher) in self.teachers.iter().enumerate() {
            match teacher {
                TeacherConfig { run: Some(_), arch: None, weights: None, small_input: false } => {}
                TeacherConfig { run: None, arch: Some(_), weights: Some(_), .. } => {}
                _ => {
                    return bad(
                        &format!("teacher[{index}]"),
                        "give either `run` (a medkd run folder) or both `arch` and `weights` (with optional `small_input`)".into(),
                    );
                }
            }
        }
        self.method.validate(train.epochs).map_err(TrainError::Config)?;
        self.data.validate().map_err(|e| TrainError::Config(format!("`data`: {e}")))
    }

    /// Makes file paths absolute against `base`, so a saved config works from any folder.
    pub fn absolutize_paths(&mut self, base: &Path) {
        let absolute = |path: &Path| if path.is_absolute() { path.to_path_buf() } else { base.join(path) };
        self.data.path = absolute(&self.data.path);
        if let Some(weights) = self.model.pretrained.as_deref().filter(|w| *w != Path::new(pretrained::IMAGENET)) {
            self.model.pretrained = Some(absolute(weights));
        }
        for teacher in &mut self.teachers {
            teacher.run = teacher.run.as_deref().map(absolute);
            teacher.weights = teacher.weights.as_deref().map(absolute);
        }
        if let MethodConfig::Localize(LocalizeConfig { htl: Some(HtlConfig { file: Some(file), .. }), .. }) = &mut self.method {
            *file = absolute(file);
        }
        for loss in &mut self.losses {
            if let LossSpec::Sskd(SskdSpec { head: Some(head), .. }) = loss {
                *head = absolute(head);
            }
        }
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a RunConfig always serializes")
    }
}

/// A TOML document with `key=value` overrides applied (see [`RunConfig::load`]).
pub fn parse_table(text: &str, overrides: &[String]) -> Result<toml::Table, TrainError> {
    let mut tree: toml::Table = toml::from_str(text).map_err(|e| TrainError::Config(e.to_string()))?;
    apply_overrides(&mut tree, overrides)?;
    Ok(tree)
}

pub fn apply_overrides(tree: &mut toml::Table, overrides: &[String]) -> Result<(), TrainError> {
    overrides.iter().try_for_each(|assignment| apply_override(tree, assignment))
}

fn apply_override(tree: &mut toml::Table, assignment: &str) -> Result<(), TrainError> {
    let (key, raw) = assignment.split_once('=').ok_or_else(|| TrainError::Config(format!("--set '{assignment}': expected key=value")))?;
    let key = key.trim();
    let value = parse_override_value(raw.trim());
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().filter(|p| !p.is_empty()).ok_or_else(|| TrainError::Config(format!("--set '{assignment}': empty key")))?;
    let mut table = tree;
    for part in parts {
        table = table
            .entry(part)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| TrainError::Config(format!("--set '{assignment}': `{part}` is not a table")))?;
    }
    table.insert(last.to_string(), value);
    Ok(())
}

/// `0.1` → float, `[1, 2]` → array, `true` → bool, anything unparsable → string.
fn parse_override_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
        [data]
        format = "medmnist"
        path = "data/breastmnist.npz"
        [model]
        arch = "resnet18"
        [train]
        epochs = 2
        batch_size = 8
        optimizer = { kind = "sgd", lr = 0.1, momentum = 0.9 }
        [[loss]]
        kind = "cross_entropy"
    "#;

    fn error_of(text: &str, overrides: &[&str]) -> String {
        let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        RunConfig::parse(text, &overrides).expect_err("config should be rejected").to_string()
    }

    #[test]
    fn a_valid_config_parses_with_defaults() {
        let config = RunConfig::parse(BASE, &[]).unwrap();
        assert_eq!(config.train.select_metric, Metric::Auc);
        assert_eq!(config.train.eval_batch_size, 256);
        assert_eq!(config.train.schedule, ScheduleConfig::Constant {});
        assert_eq!(config.device, DeviceChoice::Flex);
    }

    #[test]
    fn overrides_set_nested_keys_with_typed_values() {
        let overrides =
            ["train.epochs=5", "train.optimizer.lr=0.01", "train.select_metric=loss", "model.small_input=true"].map(String::from);
        let config = RunConfig::parse(BASE, &overrides).unwrap();
        assert_eq!(config.train.epochs, 5);
        assert_eq!(config.train.optimizer.lr(), 0.01);
        assert_eq!(config.train.select_metric, Metric::Loss);
        assert!(config.model.small_input);
    }

    #[test]
    fn resolved_config_round_trips_through_toml() {
        let config = RunConfig::parse(BASE, &["train.schedule={ kind = \"cosine\", min_lr = 0.001 }".into()]).unwrap();
        assert_eq!(RunConfig::parse(&config.to_toml(), &[]).unwrap(), config);
    }

    /// A saved config names every file absolutely: data, teachers, a shared sskd head.
    #[test]
    fn paths_are_made_absolute_against_the_working_folder() {
        let overrides = ["teacher=[{ run = \"runs/t\" }]", "loss=[{ kind = \"sskd\", head = \"runs/s/h.bpk\" }]"].map(String::from);
        let mut config = RunConfig::parse(BASE, &overrides).unwrap();
        config.absolutize_paths(Path::new("/work"));
        assert_eq!(config.teachers[0].run.as_deref(), Some(Path::new("/work/runs/t")));
        assert!(matches!(&config.losses[0], LossSpec::Sskd(SskdSpec { head: Some(h), .. }) if h == Path::new("/work/runs/s/h.bpk")));
        assert_eq!(RunConfig::parse(&config.to_toml(), &[]).unwrap(), config);
    }

    #[test]
    fn unknown_keys_are_errors_that_name_the_key() {
        assert!(error_of(BASE, &["train.epochz=3"]).contains("epochz"));
        assert!(error_of(&format!("{BASE}\nlearning_rate = 1"), &[]).contains("learning_rate"));
        assert!(error_of(BASE, &["train.optimizer.momentun=0.5"]).contains("momentun"));
    }

    #[test]
    fn bad_values_name_the_key_and_the_expectation() {
        let message = error_of(BASE, &["train.optimizer.lr=-0.1"]);
        assert!(message.contains("train.optimizer.lr") && message.contains("> 0"), "{message}");
        let message = error_of(BASE, &["train.epochs=0"]);
        assert!(message.contains("train.epochs") && message.contains("at least 1"), "{message}");
        let message = error_of(BASE, &["train.select_metric=f2"]);
        assert!(message.contains("unknown metric \"f2\"") && message.contains("select_metric"), "{message}");
        assert!(error_of(BASE, &["train.optimizer.momentum=1.5"]).contains("train.optimizer.momentum"));
        assert!(error_of(BASE, &["train.warmup_epochs=2"]).contains("train.warmup_epochs"));
        let message = error_of(BASE, &["train.checkpoint_every_seconds=-1"]);
        assert!(message.contains("train.checkpoint_every_seconds") && message.contains(">= 0"), "{message}");
        assert!(error_of(BASE, &["model.arch=resnet19"]).contains("resnet19"));
        assert!(error_of(BASE, &["train.early_stopping={ patience = 0 }"]).contains("train.early_stopping.patience"));
        let message = error_of(BASE, &["train.weight_averaging={ kind = \"swa\", start_epoch = 3 }"]);
        assert!(message.contains("train.weight_averaging.start_epoch") && message.contains("epochs = 2"), "{message}");
        assert!(error_of(BASE, &["train.weight_averaging={ kind = \"ema\" }"]).contains("decay"));
        assert!(error_of(BASE, &["train.finetune={ backbone_lr_scale = 0.0 }"]).contains("train.finetune.backbone_lr_scale"));
        let message = error_of(BASE, &["train.finetune={ freeze_backbone_epochs = 3 }"]);
        assert!(message.contains("train.finetune.freeze_backbone_epochs") && message.contains("epochs = 2"), "{message}");
        assert!(error_of(BASE, &["train.finetune={ lr_scale = 0.1 }"]).contains("lr_scale"));
    }

    /// Several devices need a batch to cut and a method whose steps read only their shard.
    #[test]
    fn several_devices_are_refused_where_shards_cannot_be_stepped_apart() {
        assert_eq!(RunConfig::parse(BASE, &["devices=2".into()]).unwrap().devices, 2);
        assert!(!RunConfig::parse(BASE, &[]).unwrap().to_toml().contains("devices"), "one device is not written out");
        assert!(error_of(BASE, &["devices=0"]).contains("`devices`: must be at least 1"));
        let message = error_of(BASE, &["devices=9"]);
        assert!(message.contains("`devices`") && message.contains("`train.batch_size` is 8"), "{message}");
        let message = error_of(BASE, &["devices=2", "teacher=[{ run = \"runs/t\" }]"]);
        assert!(message.contains("`devices`") && message.contains("teachers"), "{message}");
        let message = error_of(BASE, &["devices=2", "method={ kind = \"dino\" }", "loss=[]"]);
        assert!(message.contains("`devices`") && message.contains("DINO"), "{message}");
    }

    #[test]
    fn bad_loss_terms_are_rejected_by_name() {
        let text = BASE.replace("kind = \"cross_entropy\"", "kind = \"cross_entropy\"\nlabel_smoothing = 1.5");
        assert!(error_of(&text, &[]).contains("label_smoothing"));
        let text = BASE.replace("kind = \"cross_entropy\"", "kind = \"no_such_term\"");
        assert!(error_of(&text, &[]).contains("no_such_term"));
        let text = BASE.replace("kind = \"cross_entropy\"", "kind = \"focal\"\ngamma = -1.0");
        let error = error_of(&text, &[]);
        assert!(error.contains("loss[0]") && error.contains("focal") && error.contains("gamma must be a finite number >= 0"), "{error}");
        let text = BASE.replace("kind = \"cross_entropy\"", "kind = \"cross_entropy\"\nweight = -1.0");
        assert!(error_of(&text, &[]).contains("weight"));
    }

    /// Every config shipped under configs/ is a valid run config (unknown keys, ranges).
    #[test]
    fn repository_configs_load() {
        use crate::stages::{Plan, PlanKind};
        let repository = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut dirs = vec![repository.join("configs")];
        let mut loaded = 0;
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "toml") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    let plan = [PlanKind::RosKd, PlanKind::Rskd].into_iter().find(|k| text.contains(&format!("\n[{}]", k.table())));
                    if let Some(kind) = plan {
                        // Configs name data relative to the repository root, and an [rskd] plan reads the data's classes.
                        Plan::load(kind, &path, &[], &repository).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    } else if text.contains("\n[distl]") {
                        crate::rounds::Rounds::load(&path, &[], &repository).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    } else {
                        RunConfig::load(&path, &[]).unwrap_or_else(|e| panic!("{e}"));
                    }
                    loaded += 1;
                }
            }
        }
        assert!(loaded >= 5, "found {loaded} configs");
    }

    #[test]
    fn sampling_names_a_rule() {
        let config = RunConfig::parse(BASE, &["train.sampling=square_root".into()]).unwrap();
        assert_eq!(config.train.sampling, Some(Sampling::SquareRoot));
        assert_eq!(RunConfig::parse(&config.to_toml(), &[]).unwrap(), config);
        let message = error_of(BASE, &["train.sampling=balanced"]);
        assert!(message.contains("balanced") && message.contains("class_balanced"), "{message}");
    }

    /// `[method]` picks the method by `kind`; unknown kinds and keys are errors naming them.
    #[test]
    fn the_method_table_names_a_registered_method() {
        let config = RunConfig::parse(&format!("{BASE}\n[method]\nkind = \"classify\"\n"), &[]).unwrap();
        assert_eq!(config.method, MethodConfig::default());
        assert!(!config.to_toml().contains("[method]"), "the default is not written out");
        let message = error_of(BASE, &["method={ kind = \"mean_teacher\" }"]);
        assert!(message.contains("mean_teacher") && message.contains("classify") && message.contains("distl"), "{message}");
        assert!(error_of(BASE, &["method={ kind = \"distl\" }"]).contains("missing field `labelled`"));
        assert!(error_of(BASE, &["method={ kind = \"classify\", rounds = 3 }"]).contains("rounds"));
    }

    #[test]
    fn malformed_overrides_are_errors() {
        assert!(error_of(BASE, &["train.epochs"]).contains("expected key=value"));
        assert!(error_of(BASE, &["train.epochs.x=1"]).contains("not a table"));
    }
}

//! Student weight smoothing (RoS-KD, methods.md §1): an exponential moving average (EMA) or a
//! stochastic weight average (SWA) of the student's weights. Averaged weights come with
//! BatchNorm statistics of the un-averaged models, which do not fit them, so the statistics are
//! recomputed with a forward pass over the training split before every evaluation, as
//! `torch.optim.swa_utils.update_bn` does.
//!
//! Written by hand: burn has no averaged-model helper. Tensors are matched by their module
//! path (e.g. `layer1.0.bn1.running_mean`), which survives saving, loading and resuming.

use std::collections::HashMap;

use burn::module::{ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use medkd_data::Loader;
use medkd_models::Model;

use crate::TrainError;
use crate::evaluate::batch_tensor;

/// `[train.weight_averaging]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum AveragingConfig {
    /// After every optimizer step: avg = decay * avg + (1 - decay) * weights (the first step copies).
    Ema { decay: f64 },
    /// The equal-weight mean of the weights at the end of each epoch from `start_epoch` on
    /// (counted from 1, as the progress log prints epochs).
    Swa { start_epoch: usize },
}

impl AveragingConfig {
    pub fn validate(&self, epochs: usize) -> Result<(), TrainError> {
        match *self {
            AveragingConfig::Ema { decay } if !(0.0..1.0).contains(&decay) => {
                Err(TrainError::Config(format!("`train.weight_averaging.decay`: must be in [0, 1), got {decay}")))
            }
            AveragingConfig::Swa { start_epoch } if start_epoch == 0 || start_epoch > epochs => Err(TrainError::Config(format!(
                "`train.weight_averaging.start_epoch`: must be in [1, epochs = {epochs}], got {start_epoch}"
            ))),
            _ => Ok(()),
        }
    }

    /// Short name written to metrics.jsonl and summary.json.
    pub fn name(&self) -> &'static str {
        match self {
            AveragingConfig::Ema { .. } => "ema",
            AveragingConfig::Swa { .. } => "swa",
        }
    }
}

/// The running average, on the plain (non-autodiff) device.
pub struct WeightAverage {
    config: AveragingConfig,
    /// `None` until the first update.
    pub model: Option<Model>,
    /// Number of weight sets averaged so far.
    pub count: u64,
}

impl WeightAverage {
    pub fn new(config: AveragingConfig) -> WeightAverage {
        WeightAverage { config, model: None, count: 0 }
    }

    /// Continues an average saved by an interrupted run.
    pub fn resumed(config: AveragingConfig, model: Option<Model>, count: u64) -> WeightAverage {
        WeightAverage { config, model, count }
    }

    /// Call after each optimizer step.
    pub fn after_step(&mut self, student: &Model) {
        if let AveragingConfig::Ema { decay } = self.config {
            let weight = if self.count == 0 { 1.0 } else { 1.0 - decay };
            self.blend(student, weight);
        }
    }

    /// Call after each finished epoch (0-based `epoch`).
    pub fn after_epoch(&mut self, student: &Model, epoch: usize) {
        if let AveragingConfig::Swa { start_epoch } = self.config {
            if epoch + 1 >= start_epoch {
                self.blend(student, 1.0 / (self.count + 1) as f64);
            }
        }
    }

    /// avg += weight * (student - avg), for every float tensor (BatchNorm statistics included;
    /// they are recomputed before use).
    fn blend(&mut self, student: &Model, weight: f64) {
        let current = student.valid();
        self.model = Some(match self.model.take() {
            Some(average) if weight < 1.0 => blend_toward(average, &current, weight),
            _ => current,
        });
        self.count += 1;
    }

    /// The average with BatchNorm statistics recomputed over `loader`, ready for evaluation;
    /// `None` before the first update.
    pub fn evaluation_model(&self, loader: &Loader, device: &Device) -> Result<Option<Model>, TrainError> {
        self.model.as_ref().map(|model| recompute_batch_norm(model, loader, device)).transpose()
    }
}

/// `average + weight · (current − average)` for every float tensor of a module, matched by
/// module path: one step of an exponential moving average (`weight = 1 − momentum`).
pub fn blend_toward<M: Module>(average: M, current: &M, weight: f64) -> M {
    let mut tensors = Collect::new(false);
    current.visit(&mut tensors);
    average.map(&mut Assign::new(Action::Blend { current: tensors.by_path, weight }))
}

/// torchvision's (and medkd-models') BatchNorm momentum.
const BATCH_NORM_MOMENTUM: f64 = 0.1;

/// Recomputes every BatchNorm's running mean and variance as the mean over `loader`'s batches
/// of the batch statistics (torch `update_bn`, i.e. momentum = None). burn's BatchNorm has a
/// fixed momentum m, so each batch starts from zeroed statistics, which then hold m times the
/// batch statistic; their sum over batches, divided by m and the batch count, is the mean.
pub fn recompute_batch_norm(model: &Model, loader: &Loader, device: &Device) -> Result<Model, TrainError> {
    let train_device = device.clone().autodiff();
    // valid() also commits the statistics a forward pass leaves pending in burn's RunningState.
    let mut model = model.valid();
    let mut sums: HashMap<String, Tensor<1>> = HashMap::new();
    let mut batches = 0usize;
    for batch in loader.epoch(0) {
        let batch = batch?;
        let zeroed = model.map(&mut Assign::new(Action::ZeroRunningStats)).to_device(&train_device).train().no_grad();
        let images = batch_tensor(&batch.images, batch.shape, &train_device);
        drop(zeroed.forward(images));
        model = zeroed.valid();
        let mut stats = Collect::new(true);
        model.visit(&mut stats);
        for (path, value) in stats.by_path {
            let sum = match sums.remove(&path) {
                Some(sum) => sum + value,
                None => value,
            };
            sums.insert(path, sum);
        }
        batches += 1;
    }
    if batches == 0 {
        return Err(TrainError::Input("cannot recompute BatchNorm statistics: the training split is empty".into()));
    }
    let scale = 1.0 / (BATCH_NORM_MOMENTUM * batches as f64);
    let means = sums.into_iter().map(|(path, sum)| (path, sum.mul_scalar(scale))).collect();
    Ok(model.map(&mut Assign::new(Action::SetRunningStats(means))))
}

fn is_running_stat(path: &[String]) -> bool {
    matches!(path.last().map(String::as_str), Some("running_mean" | "running_var"))
}

/// Float tensors of a module, flattened, by module path: all of them, or only the BatchNorm
/// running statistics.
struct Collect {
    path: Vec<String>,
    running_only: bool,
    by_path: HashMap<String, Tensor<1>>,
}

impl Collect {
    fn new(running_only: bool) -> Collect {
        Collect { path: Vec::new(), running_only, by_path: HashMap::new() }
    }
}

impl ModuleVisitor for Collect {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if !self.running_only || is_running_stat(&self.path) {
            self.by_path.insert(self.path.join("."), param.val().flatten(0, D - 1));
        }
    }
}

enum Action {
    /// Moves every float tensor by `weight` toward the tensor at the same path in `current`.
    Blend {
        current: HashMap<String, Tensor<1>>,
        weight: f64,
    },
    ZeroRunningStats,
    SetRunningStats(HashMap<String, Tensor<1>>),
}

/// Applies an [`Action`] to a module's float tensors, tracking their paths.
struct Assign {
    path: Vec<String>,
    action: Action,
}

impl Assign {
    fn new(action: Action) -> Assign {
        Assign { path: Vec::new(), action }
    }
}

impl ModuleMapper for Assign {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let key = self.path.join(".");
        match &mut self.action {
            Action::Blend { current, weight } => match current.remove(&key) {
                Some(current) => {
                    let weight = *weight;
                    param.map(|average| {
                        let delta = current.reshape(average.shape()).sub(average.clone());
                        average.add(delta.mul_scalar(weight))
                    })
                }
                None => param,
            },
            Action::ZeroRunningStats if is_running_stat(&self.path) => param.map(|t| t.zeros_like()),
            Action::SetRunningStats(values) => match values.remove(&key) {
                Some(value) => param.map(|t| value.reshape(t.shape())),
                None => param,
            },
            _ => param,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use medkd_data::{ImageDataset, LoaderOptions, Normalization, Pipeline, Subset, open_medmnist};
    use medkd_models::{Arch, ModelSpec};

    use super::*;

    fn spec() -> ModelSpec {
        ModelSpec { in_channels: 1, small_input: true, ..ModelSpec::new(Arch::ResNet18, 2) }
    }

    fn model(seed: u64) -> Model {
        let device = medkd_models::test_device();
        device.seed(seed);
        Model::new(&spec(), &device).unwrap()
    }

    fn tensors(model: &Model) -> HashMap<String, Vec<f32>> {
        let mut collect = Collect::new(false);
        model.visit(&mut collect);
        collect.by_path.into_iter().map(|(k, t)| (k, t.into_data().try_to_vec::<f32>().unwrap())).collect()
    }

    fn assert_close(actual: &[f32], expected: &[f32], tolerance: f32, what: &str) {
        assert_eq!(actual.len(), expected.len(), "{what}");
        for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
            assert!((a - e).abs() <= tolerance * (1.0 + e.abs()), "{what}[{i}]: {a} vs {e}");
        }
    }

    #[test]
    fn ema_copies_first_then_moves_by_one_minus_decay() {
        let (a, b) = (model(1), model(2));
        let mut average = WeightAverage::new(AveragingConfig::Ema { decay: 0.75 });
        average.after_step(&a);
        average.after_step(&b);
        average.after_epoch(&b, 0); // no effect on EMA
        assert_eq!(average.count, 2);
        let (ta, tb, avg) = (tensors(&a), tensors(&b), tensors(average.model.as_ref().unwrap()));
        assert!(avg.contains_key("ResNet.stem.conv.weight") && avg.contains_key("ResNet.fc.bias"), "{:?}", avg.keys());
        for (path, values) in &avg {
            let expected: Vec<f32> = ta[path].iter().zip(&tb[path]).map(|(x, y)| 0.75 * x + 0.25 * y).collect();
            assert_close(values, &expected, 1e-6, path);
        }
    }

    #[test]
    fn swa_is_the_equal_mean_of_epochs_from_start_epoch() {
        let models = [model(1), model(2), model(3), model(4)];
        let mut average = WeightAverage::new(AveragingConfig::Swa { start_epoch: 2 });
        for (epoch, m) in models.iter().enumerate() {
            average.after_step(m); // no effect on SWA
            average.after_epoch(m, epoch);
        }
        assert_eq!(average.count, 3);
        let all: Vec<_> = models.iter().map(tensors).collect();
        for (path, values) in tensors(average.model.as_ref().unwrap()) {
            let expected: Vec<f32> = (0..values.len()).map(|i| (all[1][&path][i] + all[2][&path][i] + all[3][&path][i]) / 3.0).collect();
            assert_close(&values, &expected, 1e-6, &path);
        }
    }

    #[test]
    fn bad_settings_name_the_key() {
        let err = AveragingConfig::Ema { decay: 1.0 }.validate(10).unwrap_err().to_string();
        assert!(err.contains("train.weight_averaging.decay") && err.contains("got 1"), "{err}");
        let err = AveragingConfig::Swa { start_epoch: 11 }.validate(10).unwrap_err().to_string();
        assert!(err.contains("train.weight_averaging.start_epoch") && err.contains("got 11"), "{err}");
        assert!(AveragingConfig::Swa { start_epoch: 0 }.validate(10).is_err());
    }

    /// A loader over BreastMNIST images `indices`, one batch of `batch` images at a time.
    fn loader(indices: Vec<usize>, batch: usize) -> Loader {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/breastmnist.npz");
        let [train, _, _] = open_medmnist(&path, None).unwrap();
        let dataset: Arc<dyn ImageDataset> = Arc::new(Subset::new(Arc::new(train), indices));
        let pipeline = Arc::new(Pipeline::new(&[], 1, Normalization::identity(1)).unwrap());
        let options = LoaderOptions { batch_size: batch, shuffle: false, drop_last: false, seed: 0, workers: 1, prefetch: 1 };
        Loader::new(dataset, pipeline, options).unwrap()
    }

    fn logits(model: &Model, loader: &Loader, device: &Device) -> Vec<f32> {
        let batch = loader.epoch(0).next().unwrap().unwrap();
        let images = batch_tensor(&batch.images, batch.shape, device);
        model.forward(images).logits.into_data().try_to_vec::<f32>().unwrap()
    }

    /// With the recomputed statistics, eval mode normalizes every layer exactly as train mode
    /// does on a batch of the same images, so the logits agree through all 20 BatchNorms. The
    /// two-batch loader (the same 16 images twice) checks the mean over batches.
    #[test]
    fn recomputed_batch_norm_reproduces_train_mode_on_the_same_images() {
        let device = medkd_models::test_device();
        let trained = model(7);
        let single = loader((0..16).collect(), 16);
        let train_device = device.clone().autodiff();
        let train_mode = trained.valid().to_device(&train_device).train().no_grad();
        let expected = logits(&train_mode, &single, &train_device);
        let before = logits(&trained.valid(), &single, &device);
        assert!(before.iter().zip(&expected).any(|(a, b)| (a - b).abs() > 1e-2), "fresh running stats already match");

        for loader in [single, loader((0..16).chain(0..16).collect(), 16)] {
            let recomputed = recompute_batch_norm(&trained, &loader, &device).unwrap();
            assert_close(&logits(&recomputed, &loader, &device), &expected, 1e-3, "logits");
        }
    }
}

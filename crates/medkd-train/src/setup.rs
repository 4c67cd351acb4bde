//! What every run builds from its config before it writes anything: data, model shape,
//! device, teachers and loss terms. `train`, `--resume`, `eval`, `predict`, `attack` and the
//! staged plans all start here, so bad input fails before a run folder is made.

use std::path::Path;
use std::sync::Arc;

use burn::prelude::*;
use medkd_data::{
    DataSplits, DatasetInfo, ImageDataset, Loader, LoaderOptions, Pipeline, SplitName, Task, build_pipelines, open_splits, sampling_weights,
};
use medkd_eval::ShotGroups;
use medkd_losses::{Objective, TaskFacts, TeacherFacts};
use medkd_models::{Model, ModelSpec, load_weights, load_weights_partial};

use crate::TrainError;
use crate::checkpoint::best_weights;
use crate::config::RunConfig;
use crate::device::make_devices;
use crate::evaluate::BoxSource;
use crate::htl::read_htl_file;
use crate::methods::SelfTrainingData;
use crate::methods::config::{HtlConfig, LocalizeConfig, MethodConfig};
use crate::methods::distl::prepare_data;
use crate::pretrained;
use crate::run_dir::RunDir;
use crate::teachers::{Teacher, load_teachers};

/// Data, model shape and device of a run, rebuilt identically from its config by
/// `train`, `--resume`, `eval` and `predict`.
pub struct RunSetup {
    pub splits: DataSplits,
    pub info: DatasetInfo,
    pub spec: ModelSpec,
    pub train_pipeline: Arc<Pipeline>,
    pub eval_pipeline: Arc<Pipeline>,
    pub device: Device,
    /// `[height, width]` of the eval transforms' output for the first training image.
    pub input_hw: [usize; 2],
    /// The same for the train transforms (seed 0).
    pub train_hw: [usize; 2],
    /// Many / medium / few-shot classes by training counts (`[shots]`).
    pub shot_groups: ShotGroups,
    /// Where a localization run's boxes come from (`[method.weak]`: class activation maps).
    pub box_source: BoxSource,
}

impl RunSetup {
    pub fn new(config: &RunConfig) -> Result<RunSetup, TrainError> {
        let splits = open_splits(&config.data, Path::new("."))?;
        let info = splits.train.info().clone();
        let box_source = match &config.method {
            MethodConfig::Localize(LocalizeConfig { weak: Some(weak), .. }) => {
                if info.class_names.is_empty() {
                    return Err(TrainError::Config(
                        "`method.weak`: weakly supervised localization trains on class labels; give the data `label_column` beside `box_columns`".into(),
                    ));
                }
                if config.model.arch.is_vit() {
                    return Err(TrainError::Config(format!(
                        "`method.weak`: Grad-CAM boxes need a CNN's last C x H x W map; {} gives tokens",
                        config.model.arch
                    )));
                }
                BoxSource::Cam { threshold: weak.cam_threshold }
            }
            _ => BoxSource::Regression,
        };
        let mut spec = ModelSpec {
            arch: config.model.arch,
            // A box regressor's four outputs: centre and size (medkd_losses::decode_boxes).
            num_classes: match (&config.method, box_source) {
                (MethodConfig::Localize(_), BoxSource::Regression) => 4,
                _ => info.class_names.len(),
            },
            in_channels: config.data.output_channels(info.channels),
            small_input: config.model.small_input,
            image_size: None,
            drop_path_rate: config.model.drop_path_rate,
        };
        let pipelines = build_pipelines(&config.data, splits.train.as_ref())?;
        let (train_pipeline, eval_pipeline) = (pipelines.train, pipelines.eval);
        // The first of a data-parallel run's devices: it evaluates and keeps the weights.
        let device = make_devices(config.device, config.devices)?.swap_remove(0);
        // Both pipelines' output sizes must fit the model (DenseNet needs >= 29 px, say).
        let first = splits.train.image(0)?;
        let [_, height, width] = eval_pipeline.apply_seeded(&first, 0)?.1;
        let [_, train_height, train_width] = train_pipeline.apply_seeded(&first, 0)?.1;
        // A ViT's position embeddings are learned for the eval size's patch grid.
        spec.image_size = Some([height, width]);
        for hw in [[height, width], [train_height, train_width]] {
            spec.check_input(hw).map_err(|e| TrainError::Config(format!("`model`: {e}")))?;
        }
        let (input_hw, train_hw) = ([height, width], [train_height, train_width]);
        let shot_groups = ShotGroups::new(config.shots, medkd_data::class_counts(splits.train.as_ref()));
        Ok(RunSetup { splits, info, spec, train_pipeline, eval_pipeline, device, input_hw, train_hw, shot_groups, box_source })
    }

    pub fn eval_loader(&self, config: &RunConfig, dataset: Arc<dyn ImageDataset>) -> Result<Loader, TrainError> {
        self.eval_loader_with(config, dataset, self.eval_pipeline.clone())
    }

    /// An unshuffled loader over `dataset` with `pipeline` in place of the eval pipeline.
    pub fn eval_loader_with(
        &self,
        config: &RunConfig,
        dataset: Arc<dyn ImageDataset>,
        pipeline: Arc<Pipeline>,
    ) -> Result<Loader, TrainError> {
        let options = LoaderOptions {
            batch_size: config.train.eval_batch_size,
            shuffle: false,
            drop_last: false,
            seed: config.seed,
            workers: config.train.workers,
            prefetch: config.train.prefetch,
        };
        Ok(Loader::new(dataset, pipeline, options)?)
    }

    /// The dataset of a split.
    pub fn split(&self, name: SplitName) -> Arc<dyn ImageDataset> {
        match name {
            SplitName::Train => self.splits.train.clone(),
            SplitName::Val => self.splits.val.clone(),
            SplitName::Test => self.splits.test.clone(),
        }
    }

    /// The model with its best weights, for evaluation and prediction.
    pub fn load_best(&self, run: &RunDir) -> Result<Model, TrainError> {
        self.load_best_on(run, &self.device)
    }

    /// [`RunSetup::load_best`] on another device (e.g. with autodiff, for attacks).
    pub fn load_best_on(&self, run: &RunDir, device: &Device) -> Result<Model, TrainError> {
        let model = Model::new(&self.spec, device)?;
        Ok(load_weights(model, &best_weights(run)?)?)
    }
}

/// Everything a run checks before it writes anything: data, teachers and loss terms.
pub struct Prepared {
    pub setup: RunSetup,
    pub teachers: Vec<Teacher>,
    pub objective: Objective,
    /// Per-sample draw weights of `train.sampling`, if any.
    pub sampling_weights: Option<Vec<f64>>,
    /// Per training sample, hard to learn: read from `method.htl.file`, if given.
    pub htl: Option<Vec<bool>>,
    /// What `dino` and `distl` runs need from the data (their split, the local crops).
    pub self_training: Option<SelfTrainingData>,
}

impl Prepared {
    pub fn new(config: &RunConfig) -> Result<Prepared, TrainError> {
        let setup = RunSetup::new(config)?;
        let localize = matches!(config.method, MethodConfig::Localize(_));
        if (setup.info.task == Task::Localization) != localize {
            return Err(TrainError::Config(match localize {
                true => "`method`: kind = \"localize\" trains box targets; give the data `box_columns`".into(),
                false => "`data`: box targets (task = localization) need `[method] kind = \"localize\"`; \
                          the classify method trains classifiers"
                    .into(),
            }));
        }
        let htl = match &config.method {
            MethodConfig::Localize(LocalizeConfig { htl: Some(HtlConfig { file: Some(file), .. }), .. }) => {
                Some(read_htl_file(file, setup.splits.train.as_ref())?)
            }
            _ => None,
        };
        if let Some(weights) = &config.model.pretrained {
            // Loaded once here so that a bad file fails before the run folder is made (the method
            // loads it again into its trainable model).
            let skip: Vec<&str> = config.model.pretrained_skip.iter().map(String::as_str).collect();
            let weights = pretrained::resolve(config.model.arch, weights)?;
            load_weights_partial(Model::new(&setup.spec, &setup.device)?, &weights, &skip)
                .map_err(|e| TrainError::Config(format!("`model.pretrained`: {e}")))?;
        }
        let teachers = load_teachers(&config.teachers, &setup.info, &setup.spec, &setup.device)?;
        for (index, teacher) in teachers.iter().enumerate() {
            teacher.spec.check_input(setup.input_hw).map_err(|e| TrainError::Config(format!("`teacher[{index}]`: {e}")))?;
        }
        let teacher_facts: Vec<TeacherFacts> = teachers.iter().map(Teacher::facts).collect();
        let objective = match config.method {
            MethodConfig::Dino(_) => Objective::none(),
            _ => build_objective(config, &setup, &teacher_facts)?,
        };
        if let MethodConfig::Localize(localize @ LocalizeConfig { htl, semi, .. }) = &config.method
            && (htl.is_some() || semi.is_some())
        {
            let key = if localize.htl.is_some() { "method.htl" } else { "method.semi" };
            if let Some(term) = objective.unweighted_terms().first() {
                return Err(TrainError::Config(format!(
                    "`{key}` weighs training samples, but the loss term '{term}' weighs every sample alike; use terms that weigh samples (box_l1, giou, cross_entropy)"
                )));
            }
        }
        let [height, width] = setup.train_hw;
        if objective.rotated_views() && height != width {
            return Err(TrainError::Config(format!(
                "`kd_rotated`/`sskd` rotate training images by 90 degrees and need them square, but the train transforms give {height}x{width}: end them with a square size"
            )));
        }
        let sampling_weights = config
            .train
            .sampling
            .map(|rule| sampling_weights(setup.splits.train.as_ref(), rule))
            .transpose()
            .map_err(|e| TrainError::Config(format!("`train.sampling`: {e}")))?;
        let self_training = prepare_data(config, &setup)?;
        if self_training.is_some() && !teachers.is_empty() {
            return Err(TrainError::Config(
                "`teacher`: dino and distl runs distil from their own EMA teacher; remove the [[teacher]] entries".into(),
            ));
        }
        Ok(Prepared { setup, teachers, objective, sampling_weights, htl, self_training })
    }
}

/// The config's loss terms, checked against the data and against these teachers.
pub fn build_objective(config: &RunConfig, setup: &RunSetup, teachers: &[TeacherFacts]) -> Result<Objective, TrainError> {
    Ok(Objective::new(
        &config.losses,
        &TaskFacts {
            num_classes: setup.spec.num_classes,
            multi_label: setup.info.task == Task::MultiLabel,
            // A weakly supervised localizer trains on the classes of its box data.
            boxes: setup.info.task == Task::Localization && setup.box_source == BoxSource::Regression,
            class_names: &setup.info.class_names,
            class_counts: &setup.shot_groups.train_counts,
            student: &Model::new(&setup.spec, &setup.device)?.layout(),
            teachers,
            seed: config.seed,
        },
    )?)
}

/// A split by its CLI name: `train`, `val` or `test`.
pub fn parse_split(name: &str) -> Result<SplitName, TrainError> {
    match name {
        "train" => Ok(SplitName::Train),
        "val" => Ok(SplitName::Val),
        "test" => Ok(SplitName::Test),
        other => Err(TrainError::Input(format!("unknown split '{other}': expected train, val or test"))),
    }
}

//! `method = "classify"` (the default): supervised classification whose objective is the config's
//! named, weighted loss terms, with frozen `[[teacher]]` entries for the KD terms (`medkd train`,
//! `medkd distill`, and every RoS-KD stage). SSD-KD is this method with its terms: SSKD's rotated
//! views and teacher heads, the teacher cache and trainable regressors all live here.

use std::collections::BTreeMap;
use std::sync::Arc;

use burn::prelude::*;
use medkd_data::{Batch, ImageDataset, Loader, LoaderOptions, Task};
use medkd_losses::{ConvRegressor, Features, LossContext, ProjectionHead, Targets, with_rotations};
use medkd_models::{Model, ModelSpec, load_weights_partial};
use serde_json::{Value, json};

use crate::TrainError;
use crate::config::RunConfig;
use crate::evaluate::batch_tensor;
use crate::method::{Method, StepAt, StepLoss, device_of};
use crate::pretrained;
use crate::run_dir::RunDir;
use crate::setup::Prepared;
use crate::sparse::KeptSparse;
use crate::teacher_head::teacher_head;
use crate::teachers::TeacherCache;

/// What the optimizer trains: the model, plus the regressors and projection heads some loss
/// terms put on its stage maps and embedding. Only the model is exported (`best.safetensors`);
/// the resume state holds both.
#[derive(Module, Debug)]
pub struct Student {
    pub model: Model,
    pub adapters: Vec<ConvRegressor>,
    /// Projection heads of `sskd` terms.
    pub heads: Vec<ProjectionHead>,
}

pub struct Classify<'a> {
    config: &'a RunConfig,
    prepared: &'a Prepared,
    /// SSKD's trained, frozen teacher heads (set by `prepare`).
    teacher_heads: Vec<ProjectionHead>,
    teacher_cache: Option<TeacherCache>,
    /// A pruned student's masks (`model.prune_sparsity`, set by `init`).
    sparse: Option<KeptSparse>,
}

impl<'a> Classify<'a> {
    pub fn new(config: &'a RunConfig, prepared: &'a Prepared) -> Classify<'a> {
        Classify { config, prepared, teacher_heads: Vec::new(), teacher_cache: None, sparse: None }
    }

    /// Teacher outputs are cached when they cannot change between epochs: no random train
    /// transform (the loader's augmentation differs per epoch), no term reading stage maps and
    /// no rotated views (the cache holds one view per sample).
    fn caches_teachers(&self) -> bool {
        let objective = &self.prepared.objective;
        !self.prepared.teachers.is_empty()
            && !self.config.data.train_transforms.iter().any(|t| t.is_random())
            && !objective.reads_teacher_stages()
            && !objective.rotated_views()
    }
}

impl Method for Classify<'_> {
    type Trainable = Student;

    fn init(&mut self, device: &Device) -> Result<Student, TrainError> {
        let objective = &self.prepared.objective;
        let (model, sparse) = initial_model(self.config, &self.prepared.setup.spec, device)?;
        self.sparse = sparse;
        let adapters = objective.adapter_shapes().iter().map(|&(from, to)| ConvRegressor::new(from, to, device)).collect();
        let heads = objective.projection_heads().iter().map(|h| ProjectionHead::new(h.student_dim, device)).collect();
        Ok(Student { model, adapters, heads })
    }

    fn model<'m>(&self, student: &'m Student) -> &'m Model {
        &student.model
    }

    fn train_loader(&self) -> Result<Loader, TrainError> {
        train_loader(self.config, self.prepared, self.prepared.setup.splits.train.clone())
    }

    /// SSKD stage 1, before the student's first epoch (kept in the run folder for --resume).
    fn prepare(&mut self, run: &RunDir) -> Result<(), TrainError> {
        let Prepared { setup, teachers, objective, .. } = self.prepared;
        self.teacher_heads = objective
            .projection_heads()
            .iter()
            .enumerate()
            .map(|(index, spec)| teacher_head(self.config, setup, teachers, spec, index, run))
            .collect::<Result<Vec<_>, _>>()?;
        self.teacher_cache = self.caches_teachers().then(|| TeacherCache::new(teachers, setup.splits.train.len()));
        Ok(())
    }

    fn step(&mut self, student: &Student, batch: Batch, at: StepAt) -> Result<StepLoss, TrainError> {
        let Prepared { setup, teachers, objective, .. } = self.prepared;
        let mut images = batch_tensor(&batch.images, batch.shape, &device_of(&student.model));
        if objective.rotated_views() {
            // Square: checked by Prepared::new.
            images = with_rotations(images);
        }
        let targets = if setup.info.task == Task::MultiLabel {
            Targets::MultiHot { values: batch.multi_hot(), num_labels: setup.spec.num_classes }
        } else {
            Targets::Classes(batch.class_labels())
        };
        let teacher_outputs: Vec<Features> = match &mut self.teacher_cache {
            Some(cache) => cache.outputs(teachers, &images, &batch.indices),
            None => teachers.iter().map(|t| t.forward(images.clone())).collect(),
        };
        let outputs = student.model.forward(images);
        let (total, terms) = objective.compute(&LossContext {
            student: &outputs,
            teachers: &teacher_outputs,
            targets: &targets,
            adapters: &student.adapters,
            student_heads: &student.heads,
            teacher_heads: &self.teacher_heads,
            step: at.global(),
            epoch: at.epoch as u64,
            sample_weights: None,
        })?;
        Ok(StepLoss { total, terms })
    }

    fn after_step(&mut self, student: Student, at: StepAt) -> Result<Student, TrainError> {
        Ok(match &mut self.sparse {
            Some(sparse) => Student { model: sparse.after_step(student.model, at), ..student },
            None => student,
        })
    }

    fn summary(&self) -> BTreeMap<String, Value> {
        let teachers: Vec<&str> = self.prepared.teachers.iter().map(|t| t.source.as_str()).collect();
        let mut summary =
            BTreeMap::from([("teachers".into(), json!(teachers)), ("teacher_cache".into(), json!(self.teacher_cache.is_some()))]);
        summary.extend(self.sparse.as_ref().map(KeptSparse::summary));
        summary
    }
}

/// The model a run starts from: freshly initialized, with `model.pretrained` weights loaded,
/// BatchNorm frozen and the weights pruned (what keeps them pruned beside it) when the config asks.
pub(crate) fn initial_model(config: &RunConfig, spec: &ModelSpec, device: &Device) -> Result<(Model, Option<KeptSparse>), TrainError> {
    let mut model = Model::new(spec, device)?;
    if let Some(weights) = &config.model.pretrained {
        let skip: Vec<&str> = config.model.pretrained_skip.iter().map(String::as_str).collect();
        model = load_weights_partial(model, &pretrained::resolve(config.model.arch, weights)?, &skip)?;
    }
    if config.train.finetune.as_ref().is_some_and(|f| f.frozen_batch_norm) {
        // Flags are not in checkpoints: a resumed run gets this from init too.
        model = model.freeze_batch_norm();
    }
    KeptSparse::start(config, model)
}

/// The shuffled training loader over `train` (the training split, or a view of it with other
/// targets), re-sampled by `train.sampling`.
pub(crate) fn train_loader(config: &RunConfig, prepared: &Prepared, train: Arc<dyn ImageDataset>) -> Result<Loader, TrainError> {
    let setup = &prepared.setup;
    let options = LoaderOptions {
        batch_size: config.train.batch_size,
        shuffle: true,
        // A last batch of one sample would make train-mode BatchNorm degenerate.
        drop_last: setup.splits.train.len() > config.train.batch_size,
        seed: config.seed,
        workers: config.train.workers,
        prefetch: config.train.prefetch,
    };
    let loader = Loader::new(train, setup.train_pipeline.clone(), options)?;
    Ok(match &prepared.sampling_weights {
        Some(weights) => loader.resampled(weights)?,
        None => loader,
    })
}

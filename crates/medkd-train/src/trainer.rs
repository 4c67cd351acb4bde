//! The one training loop. Methods differ only in their loss terms (and, later, in the
//! teachers whose outputs those terms read); the loop itself is shared.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use burn::optim::GradientsParams;
use burn::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};
use medkd_data::{
    DataSplits, DatasetInfo, Loader, LoaderOptions, Pipeline, Task, build_pipelines, open_splits, write_flipped_csv, write_split_csv,
};
use medkd_losses::{ConvRegressor, Features, LossContext, Objective, ProjectionHead, Targets, TaskFacts, with_rotations};
use medkd_models::{Model, ModelSpec, count_macs, count_params, load_weights, load_weights_partial};
use serde_json::json;

use crate::averaging::WeightAverage;
use crate::checkpoint::{BestRecord, TrainState, has_finished_epoch, load_last, save_best, save_last};
use crate::config::RunConfig;
use crate::device::make_device;
use crate::evaluate::{Evaluation, batch_tensor, evaluate, predict};
use crate::optim::build_optimizer;
use crate::run_dir::RunDir;
use crate::schedule::{ImprovementTracker, LrSchedule};
use crate::teacher_head::teacher_head;
use crate::teachers::{Teacher, TeacherCache, load_teachers};
use crate::{TrainError, build_info, higher_is_better};

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
}

impl RunSetup {
    pub fn new(config: &RunConfig) -> Result<RunSetup, TrainError> {
        let splits = open_splits(&config.data, Path::new("."))?;
        let info = splits.train.info().clone();
        let spec = ModelSpec {
            arch: config.model.arch,
            num_classes: info.class_names.len(),
            in_channels: config.data.output_channels(info.channels),
            small_input: config.model.small_input,
        };
        let pipelines = build_pipelines(&config.data, splits.train.as_ref())?;
        let (train_pipeline, eval_pipeline) = (pipelines.train, pipelines.eval);
        let device = make_device(config.device)?;
        // Both pipelines' output sizes must fit the model (DenseNet needs >= 29 px, say).
        let first = splits.train.image(0)?;
        let [_, height, width] = eval_pipeline.apply_seeded(&first, 0)?.1;
        let [_, train_height, train_width] = train_pipeline.apply_seeded(&first, 0)?.1;
        spec.check_input([height.min(train_height), width.min(train_width)]).map_err(|e| TrainError::Config(format!("`model`: {e}")))?;
        let (input_hw, train_hw) = ([height, width], [train_height, train_width]);
        Ok(RunSetup { splits, info, spec, train_pipeline, eval_pipeline, device, input_hw, train_hw })
    }

    pub fn eval_loader(&self, config: &RunConfig, dataset: Arc<dyn medkd_data::ImageDataset>) -> Result<Loader, TrainError> {
        self.eval_loader_with(config, dataset, self.eval_pipeline.clone())
    }

    /// An unshuffled loader over `dataset` with `pipeline` in place of the eval pipeline.
    pub fn eval_loader_with(
        &self,
        config: &RunConfig,
        dataset: Arc<dyn medkd_data::ImageDataset>,
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

    /// A split by its CLI name: `train`, `val` or `test`.
    pub fn split(&self, name: &str) -> Result<Arc<dyn medkd_data::ImageDataset>, TrainError> {
        match name {
            "train" => Ok(self.splits.train.clone()),
            "val" => Ok(self.splits.val.clone()),
            "test" => Ok(self.splits.test.clone()),
            other => Err(TrainError::Input(format!("unknown split '{other}': expected train, val or test"))),
        }
    }

    /// The model with its best weights, for evaluation and prediction.
    pub fn load_best(&self, run: &RunDir) -> Result<Model, TrainError> {
        self.load_best_on(run, &self.device)
    }

    /// [`RunSetup::load_best`] on another device (e.g. with autodiff, for attacks).
    pub fn load_best_on(&self, run: &RunDir, device: &Device) -> Result<Model, TrainError> {
        let model = Model::new(&self.spec, device)?;
        Ok(load_weights(model, &run.checkpoint("best", "safetensors"))?)
    }
}

/// What the optimizer trains: the model, plus the regressors and projection heads some loss
/// terms put on its stage maps and embedding. Only the model is exported (`best.safetensors`); the resume state holds both.
#[derive(Module, Debug)]
pub struct Student {
    pub model: Model,
    pub adapters: Vec<ConvRegressor>,
    /// Projection heads of `sskd` terms.
    pub heads: Vec<ProjectionHead>,
}

/// Everything a run checks before it writes anything: data, teachers and loss terms.
pub struct Prepared {
    pub setup: RunSetup,
    pub teachers: Vec<Teacher>,
    pub objective: Objective,
}

impl Prepared {
    pub fn new(config: &RunConfig) -> Result<Prepared, TrainError> {
        let setup = RunSetup::new(config)?;
        let teachers = load_teachers(&config.teachers, &setup.info, setup.spec.in_channels, &setup.device)?;
        for (index, teacher) in teachers.iter().enumerate() {
            teacher.spec.check_input(setup.input_hw).map_err(|e| TrainError::Config(format!("`teacher[{index}]`: {e}")))?;
        }
        let teacher_channels: Vec<Vec<usize>> = teachers.iter().map(Teacher::stage_channels).collect();
        let objective = build_objective(config, &setup, &teacher_channels)?;
        let [height, width] = setup.train_hw;
        if objective.rotated_views() && height != width {
            return Err(TrainError::Config(format!(
                "`kd_rotated`/`sskd` rotate training images by 90 degrees and need them square, but the train transforms give {height}x{width}: end them with a square size"
            )));
        }
        Ok(Prepared { setup, teachers, objective })
    }
}

/// The config's loss terms, checked against the data and against teachers with these stage
/// channels (one list per teacher).
pub fn build_objective(config: &RunConfig, setup: &RunSetup, teacher_channels: &[Vec<usize>]) -> Result<Objective, TrainError> {
    Ok(Objective::new(
        &config.losses,
        &TaskFacts {
            num_classes: setup.spec.num_classes,
            multi_label: setup.info.task == Task::MultiLabel,
            class_names: &setup.info.class_names,
            class_counts: &medkd_data::class_counts(setup.splits.train.as_ref()),
            student_channels: &Model::new(&setup.spec, &setup.device)?.stage_channels(),
            teacher_channels,
            seed: config.seed,
        },
    )?)
}

/// Where the run stands when `train` returns.
pub struct Outcome {
    pub summary: serde_json::Value,
    pub test: Evaluation,
}

/// Trains a new run (`resume = false`, the folder must not hold one) or continues the one
/// in `run` from its last finished epoch; then evaluates the best checkpoint on test.
/// `prepared` is built first by the caller, so bad input fails before a run folder is made.
pub fn train(config: &RunConfig, prepared: &Prepared, run: &RunDir, resume: bool, show_progress: bool) -> Result<Outcome, TrainError> {
    let Prepared { setup, teachers, objective } = prepared;
    if !resume {
        run.write_text(&run.config_path(), &config.to_toml())?;
        if let Some(rows) = &setup.splits.split_table {
            write_split_csv(rows, &run.split_path())?;
        }
        if let Some(rows) = &setup.splits.flipped_labels {
            write_flipped_csv(rows, &run.root().join("label_noise.csv"))?;
        }
    }
    let train_device = setup.device.clone().autodiff();
    // Model init is the only draw from the backend's generator; seed it from the run seed.
    train_device.seed(config.seed);
    let mut model = Model::new(&setup.spec, &train_device)?;
    if let Some(weights) = &config.model.pretrained {
        let skip: Vec<&str> = config.model.pretrained_skip.iter().map(String::as_str).collect();
        model = load_weights_partial(model, weights, &skip)?;
    }
    let adapters = objective.adapter_shapes().iter().map(|&(from, to)| ConvRegressor::new(from, to, &train_device)).collect();
    let heads = objective.projection_heads().iter().map(|h| ProjectionHead::new(h.student_dim, &train_device)).collect();
    let mut student = Student { model, adapters, heads };
    let mut optimizer = build_optimizer(&config.train.optimizer);
    let schedule =
        LrSchedule::new(config.train.optimizer.lr(), config.train.epochs, config.train.warmup_epochs, config.train.schedule.clone());
    let select = config.train.select_metric.as_str();
    let min_delta = config.train.early_stopping.as_ref().map_or(0.0, |e| e.min_delta);
    let mut state = TrainState {
        epochs_done: 0,
        best: ImprovementTracker::new(higher_is_better(select), min_delta),
        schedule: schedule.initial_state(higher_is_better(select)),
        wall_seconds: 0.0,
        averaged: 0,
    };
    let mut average = config.train.weight_averaging.clone().map(WeightAverage::new);
    // A run stopped before its first epoch was saved (during SSKD's head stage, say) starts
    // over: the seeded student above is the one an uninterrupted run would have trained.
    if resume && has_finished_epoch(run) {
        let resumed = load_last(run, student, optimizer)?;
        (student, optimizer, state) = (resumed.student, resumed.optimizer, resumed.state);
        if let (Some(averaging), Some(path)) = (&config.train.weight_averaging, resumed.average) {
            let model = load_weights(Model::new(&setup.spec, &setup.device)?, &path)?;
            average = Some(WeightAverage::resumed(averaging.clone(), Some(model), state.averaged));
        }
    }
    if resume {
        run.truncate_metrics_from(state.epochs_done)?;
    }

    let train_loader = Loader::new(
        setup.splits.train.clone(),
        setup.train_pipeline.clone(),
        LoaderOptions {
            batch_size: config.train.batch_size,
            shuffle: true,
            // A last batch of one sample would make train-mode BatchNorm degenerate.
            drop_last: setup.splits.train.len() > config.train.batch_size,
            seed: config.seed,
            workers: config.train.workers,
            prefetch: config.train.prefetch,
        },
    )?;
    let val_loader = setup.eval_loader(config, setup.splits.val.clone())?;
    // Averaged weights get their BatchNorm statistics from the training images, un-augmented.
    let batch_norm_loader = setup.eval_loader(config, setup.splits.train.clone())?;
    let steps = train_loader.num_batches();
    // SSKD stage 1, before the student's first epoch (kept in the run folder for --resume).
    let teacher_heads = objective
        .projection_heads()
        .iter()
        .enumerate()
        .map(|(index, spec)| teacher_head(config, setup, teachers, spec, index, run))
        .collect::<Result<Vec<_>, _>>()?;
    let mut teacher_cache = cache_teachers(config, prepared).then(|| TeacherCache::new(teachers, setup.splits.train.len()));
    let multi_label = setup.info.task == Task::MultiLabel;
    let started = Instant::now();
    let wall_before = state.wall_seconds;

    for epoch in state.epochs_done..config.train.epochs {
        let bar = progress_bar(show_progress, steps, epoch, config.train.epochs);
        let mut term_sums: BTreeMap<String, f64> = BTreeMap::new();
        let mut loss_sum = 0.0;
        let mut lr = 0.0;
        for (step, batch) in train_loader.epoch(epoch).enumerate() {
            let batch = batch?;
            lr = schedule.lr(epoch, step, steps, &state.schedule);
            let mut images = batch_tensor(&batch.images, batch.shape, &train_device);
            if objective.rotated_views() {
                // Square: checked by Prepared::new.
                images = with_rotations(images);
            }
            let targets = if multi_label {
                Targets::MultiHot { values: batch.multi_hot(), num_labels: setup.spec.num_classes }
            } else {
                Targets::Classes(batch.class_labels())
            };
            let teacher_outputs: Vec<Features> = match &mut teacher_cache {
                Some(cache) => cache.outputs(teachers, &images, &batch.indices),
                None => teachers.iter().map(|t| t.forward(images.clone())).collect(),
            };
            let outputs = student.model.forward(images);
            let (loss, terms) = objective.compute(&LossContext {
                student: &outputs,
                teachers: &teacher_outputs,
                targets: &targets,
                adapters: &student.adapters,
                student_heads: &student.heads,
                teacher_heads: &teacher_heads,
                step: (epoch * steps + step) as u64,
                epoch: epoch as u64,
            })?;
            let loss_value = loss.clone().into_scalar::<f32>() as f64;
            let term_values: Vec<(String, f64)> = terms.into_iter().map(|t| (t.name, t.value.into_scalar::<f32>() as f64)).collect();
            if !loss_value.is_finite() {
                let detail = term_values.iter().map(|(n, v)| format!("{n} = {v}")).collect::<Vec<_>>().join(", ");
                return Err(TrainError::NonFiniteLoss { epoch, step, terms: detail });
            }
            let grads = GradientsParams::from_grads(loss.backward(), &student);
            student = optimizer.step(lr, student, grads);
            if let Some(average) = &mut average {
                average.after_step(&student.model);
            }

            loss_sum += loss_value;
            for (name, value) in &term_values {
                *term_sums.entry(name.clone()).or_default() += value;
            }
            bar.set_message(format!("loss {:.4} lr {lr:.2e}", loss_sum / (step + 1) as f64));
            bar.inc(1);
        }
        bar.finish_and_clear();

        // With weight averaging, the average is what is evaluated and saved once it exists.
        let averaged_model = match &mut average {
            Some(average) => {
                average.after_epoch(&student.model, epoch);
                state.averaged = average.count;
                average.evaluation_model(&batch_norm_loader, &setup.device)?
            }
            None => None,
        };
        let evaluated = averaged_model.as_ref().unwrap_or(&student.model);
        let evaluated_name = match (&averaged_model, &config.train.weight_averaging) {
            (Some(_), Some(averaging)) => averaging.name(),
            _ => "student",
        };
        let val = evaluate(&predict(evaluated, &val_loader, &setup.info, &setup.device)?, &setup.info)?;
        let metric = val.metric(select);
        let improved = state.best.observe(epoch, metric);
        schedule.end_epoch(epoch, metric, &mut state.schedule);
        state.epochs_done = epoch + 1;
        state.wall_seconds = wall_before + started.elapsed().as_secs_f64();
        if improved {
            save_best(run, evaluated, &BestRecord { epoch, metric: select.to_string(), value: metric })?;
        } else if state.best.best_epoch.is_none() {
            return Err(TrainError::Config(format!(
                "`train.select_metric`: {select} is undefined on this validation split ({} samples, task {}); choose another metric",
                setup.splits.val.len(),
                setup.info.task
            )));
        }
        save_last(run, &student, &optimizer, average.as_ref().and_then(|a| a.model.as_ref()), &state)?;

        let batches = steps.max(1) as f64;
        let train_terms: BTreeMap<String, f64> = term_sums.into_iter().map(|(k, v)| (k, v / batches)).collect();
        run.append_metrics(&json!({
            "epoch": epoch,
            "lr": lr,
            "train_loss": loss_sum / batches,
            "train_terms": train_terms,
            "val": val.to_json(),
            "evaluated": evaluated_name,
            "best_epoch": state.best.best_epoch,
            "wall_seconds": state.wall_seconds,
            "medkd_commit": build_info::COMMIT,
        }))?;
        eprintln!(
            "epoch {:>3}/{}  train loss {:.4}  val {select} {:.4}  val acc {:.4}{}",
            epoch + 1,
            config.train.epochs,
            loss_sum / batches,
            metric,
            val.metric("acc"),
            if improved { "  *best" } else { "" }
        );
        if let Some(stop) = &config.train.early_stopping {
            if state.best.stale_epochs >= stop.patience {
                eprintln!("early stopping: no {select} improvement for {} epochs", stop.patience);
                break;
            }
        }
    }

    let best_model = setup.load_best(run)?;
    let test_loader = setup.eval_loader(config, setup.splits.test.clone())?;
    let test = evaluate(&predict(&best_model, &test_loader, &setup.info, &setup.device)?, &setup.info)?;
    let val = evaluate(&predict(&best_model, &val_loader, &setup.info, &setup.device)?, &setup.info)?;
    let input_hw = setup.input_hw;
    let summary = json!({
        "dataset": setup.info.name,
        "class_names": setup.info.class_names,
        "input_channels": setup.spec.in_channels,
        "model": config.model.arch,
        "teachers": teachers.iter().map(|t| t.source.clone()).collect::<Vec<_>>(),
        "teacher_cache": teacher_cache.is_some(),
        "weight_averaging": config.train.weight_averaging.as_ref().map(|a| a.name()),
        "params": count_params(&best_model),
        "macs": count_macs(&setup.spec, input_hw),
        "input_size": input_hw,
        "epochs_run": state.epochs_done,
        "best_epoch": state.best.best_epoch,
        "select_metric": select,
        "wall_seconds": state.wall_seconds,
        "medkd": build_info::json(),
        "seed": config.seed,
        "seeds": {
            "model_init": config.seed,
            "split": setup.splits.split_table.as_ref().map(|_| config.data.split.clone().unwrap_or_default().seed),
            "shuffle_and_augment": config.seed,
        },
        "val": val.to_json(),
        "test": test.to_json(),
    });
    run.write_json(&run.summary_path(), &summary)?;
    Ok(Outcome { summary, test })
}

/// Teacher outputs are cached when they cannot change between epochs: no random train
/// transform (the loader's augmentation differs per epoch), no term reading stage maps and no
/// rotated views (the cache holds one view per sample).
fn cache_teachers(config: &RunConfig, prepared: &Prepared) -> bool {
    !prepared.teachers.is_empty()
        && !config.data.train_transforms.iter().any(|t| t.is_random())
        && !prepared.objective.reads_teacher_stages()
        && !prepared.objective.rotated_views()
}

fn progress_bar(show: bool, steps: usize, epoch: usize, epochs: usize) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(steps as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta} {msg}")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_prefix(format!("epoch {}/{}", epoch + 1, epochs));
    bar
}

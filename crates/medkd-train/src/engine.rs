//! The one training loop, written once for every method ([`Method`]): optimizer, learning-rate
//! schedule, checkpoints and exact resume, weight averaging, best-checkpoint selection, early
//! stopping, the metrics log, the progress bar, the non-finite-loss guard and the final
//! summary.json.
//!
//! Data parallelism (`devices` > 1) rides on burn's cross-device autodiff rather than an
//! all-reduce of our own: each batch is cut into one shard per device, shard k's loss is computed
//! on a copy of the trainable moved to device k with `Module::to_device` (an operation autodiff
//! records), and the shard losses, weighted by shard size, are added on the first device. The one
//! backward pass then carries every copy's gradient back to the parameters on the first device
//! and sums them there, where the optimizer steps. (burn 0.22's all-reduce runs on CUDA alone,
//! and burn-train's multi-device learner would replace this loop.) Where each sample's loss is its
//! own this is the gradient of one device with the whole batch; batch statistics (BatchNorm) are
//! per shard, as with PyTorch's DistributedDataParallel without SyncBatchNorm.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::module::{Module, ParamId};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};
use medkd_data::{Batch, write_csv, write_flipped_csv};
use medkd_eval::Metric;
use medkd_losses::TermValue;
use medkd_models::{Model, count_macs, count_params, load_weights};
use serde_json::json;

use crate::averaging::WeightAverage;
use crate::checkpoint::{BestChoice, CheckpointWriter, TrainState, best_weights, has_finished_epoch, load_last, method_state_for};
use crate::config::{FinetuneConfig, RunConfig};
use crate::device::make_devices;
use crate::evaluate::{Evaluation, Report, calibrate};
use crate::method::{Method, StepAt, StepLoss};
use crate::optim::build_optimizer;
use crate::run_dir::RunDir;
use crate::schedule::{ImprovementTracker, LrSchedule};
use crate::setup::RunSetup;
use crate::summary::{Seeds, Summary};
use crate::{TrainError, build_info};

/// Where the run stands when [`fit`] returns.
pub struct Outcome {
    pub summary: Summary,
    pub test: Evaluation,
}

static STOP: AtomicBool = AtomicBool::new(false);

/// Asks every running `fit` to stop before its next step (the CLI's Ctrl-C / SIGTERM handler);
/// returns whether a stop had been asked already.
pub fn request_stop() -> bool {
    STOP.swap(true, Ordering::SeqCst)
}

/// The backend generator's seed at the start of `epoch` of a run seeded `seed`: the run seed
/// itself for epoch 0, so runs that draw nothing before their first step (every method but
/// SSKD's head stage) repeat what earlier binaries trained.
fn epoch_seed(seed: u64, epoch: usize) -> u64 {
    seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Trains a new run (`resume = false`, the folder must not hold one) or continues the one in
/// `run` from its last finished epoch; then evaluates the best checkpoint on test and writes
/// summary.json. `setup` and `method` are built first by the caller, so bad input fails before a
/// run folder is made.
pub fn fit<M: Method>(
    config: &RunConfig,
    setup: &RunSetup,
    method: &mut M,
    run: &RunDir,
    resume: bool,
    show_progress: bool,
) -> Result<Outcome, TrainError> {
    let _lock = run.lock()?;
    if !resume {
        run.write_text(&run.config_path(), &config.to_toml())?;
        if let Some(rows) = &setup.splits.split_table {
            write_csv(rows, &run.split_path())?;
        }
        if !setup.splits.skipped_images.is_empty() {
            write_csv(&setup.splits.skipped_images, &run.root().join("skipped_images.csv"))?;
        }
        if let Some(rows) = &setup.splits.flipped_labels {
            write_flipped_csv(rows, &run.root().join("label_noise.csv"))?;
        }
    }
    // The first device is `setup.device`: evaluation and checkpoints happen there.
    let devices: Vec<Device> = make_devices(config.device, config.devices)?.into_iter().map(|d| d.autodiff()).collect();
    let train_device = devices[0].clone();
    // Copies moved to other devices take the parameters' BatchNorm running statistics with them
    // (burn shares them between clones); the first device gets them back after each step.
    let gather = devices.iter().any(|d| *d != train_device);
    // Anything a method draws while it is built comes from the run seed. Parameters are
    // initialized lazily, at their first use in epoch 0, from the reseed below.
    train_device.seed(config.seed);
    let mut trainable = method.init(&train_device)?;
    let train = &config.train;
    let mut optimizer = build_optimizer(&train.optimizer, train.decay_biases_and_norms, train.grad_clip_norm, &trainable);
    let schedule =
        LrSchedule::new(config.train.optimizer.lr(), config.train.epochs, config.train.warmup_epochs, config.train.schedule.clone());
    let select = config.train.select_metric;
    let min_delta = config.train.early_stopping.as_ref().map_or(0.0, |e| e.min_delta);
    let mut state = TrainState {
        epochs_done: 0,
        best: ImprovementTracker::new(select.higher_is_better(), min_delta),
        schedule: schedule.initial_state(select.higher_is_better()),
        wall_seconds: 0.0,
        averaged: 0,
    };
    let mut average = config.train.weight_averaging.clone().map(WeightAverage::new);
    // A run stopped before its first epoch was saved (during SSKD's head stage, say) starts
    // over: the seeded module above is the one an uninterrupted run would have trained.
    if resume && has_finished_epoch(run) {
        let resumed = load_last(run, trainable, optimizer)?;
        (trainable, optimizer, state) = (resumed.trainable, resumed.optimizer, resumed.state);
        if let (Some(averaging), Some(path)) = (&config.train.weight_averaging, resumed.average) {
            let model = load_weights(Model::new(&method.spec(setup), &setup.device)?, &path)?;
            average = Some(WeightAverage::resumed(averaging.clone(), Some(model), state.averaged));
        }
        method.load_state(&resumed.method)?;
    }
    if resume {
        run.truncate_metrics_from(state.epochs_done)?;
    }

    // Fine-tuning steps the backbone apart from the rest; its parameter ids survive every step.
    let finetune = config.train.finetune.as_ref().map(|f| (f, method.model(&trainable).backbone_params()));
    let train_loader = method.train_loader()?;
    let val_loader = setup.eval_loader(config, setup.splits.val.clone())?;
    // Averaged weights get their BatchNorm statistics from the training images, un-augmented.
    let batch_norm_loader = setup.eval_loader(config, setup.splits.train.clone())?;
    let steps = train_loader.num_batches();
    method.prepare(run)?;
    let started = Instant::now();
    let wall_before = state.wall_seconds;
    let mut checkpoints = CheckpointWriter::new(run, state.epochs_done, config.train.checkpoint_every_seconds);

    for epoch in state.epochs_done..config.train.epochs {
        // Parameter init and dropout masks depend on (seed, epoch) alone, not on what the process
        // drew before (a resumed run, a loaded SSKD head), so a resumed run draws the same ones.
        for device in &devices {
            device.seed(epoch_seed(config.seed, epoch));
        }
        let bar = progress_bar(show_progress, steps, epoch, config.train.epochs);
        let mut term_sums: BTreeMap<String, f64> = BTreeMap::new();
        let mut loss_sum = 0.0;
        let mut lr = 0.0;
        for (step, batch) in train_loader.epoch(epoch).enumerate() {
            let at = StepAt { epoch, step, steps };
            lr = schedule.lr(epoch, step, steps, &state.schedule);
            if stop_requested() {
                return Err(TrainError::Stopped { epoch: epoch + 1, saved: state.epochs_done });
            }
            let batch = batch?;
            let indices = batch.indices.clone();
            let loss = sharded_step(method, &trainable, batch, at, &devices)?;
            let loss_value = loss.total.clone().into_scalar::<f32>() as f64;
            let term_values: Vec<(String, f64)> = loss.terms.into_iter().map(|t| (t.name, t.value.into_scalar::<f32>() as f64)).collect();
            if !loss_value.is_finite() {
                let detail = term_values.iter().map(|(n, v)| format!("{n} = {v}")).collect::<Vec<_>>().join(", ");
                let ids: Vec<String> = indices.iter().map(|&i| train_loader.dataset().id(i)).collect();
                let samples = match ids.len() {
                    0..=16 => ids.join(", "),
                    n => format!("{}, ... and {} more", ids[..16].join(", "), n - 16),
                };
                return Err(TrainError::NonFiniteLoss { epoch, step, terms: detail, samples });
            }
            trainable = optimizer_step(&mut optimizer, finetune.as_ref(), epoch, lr, trainable, loss.total);
            if gather {
                trainable = trainable.fork(&train_device);
            }
            trainable = method.after_step(trainable, at)?;
            if let Some(average) = &mut average {
                average.after_step(method.model(&trainable));
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
                average.after_epoch(method.model(&trainable), epoch);
                state.averaged = average.count;
                average.evaluation_model(&batch_norm_loader, &setup.device)?
            }
            None => None,
        };
        let evaluated = averaged_model.as_ref().unwrap_or(method.model(&trainable));
        let evaluated_name = match (&averaged_model, &config.train.weight_averaging) {
            (Some(_), Some(averaging)) => averaging.name(),
            _ => "student",
        };
        let val = method.evaluate(evaluated, &val_loader, setup)?;
        let metric = val.metric(select);
        let improved = state.best.observe(epoch, metric);
        schedule.end_epoch(epoch, metric, &mut state.schedule);
        state.epochs_done = epoch + 1;
        state.wall_seconds = wall_before + started.elapsed().as_secs_f64();
        if !improved && state.best.best_epoch.is_none() {
            return Err(TrainError::Config(format!(
                "`train.select_metric`: {select} is undefined on this validation split ({} samples, task {}); choose another metric",
                setup.splits.val.len(),
                setup.info.task
            )));
        }
        // The epoch's line goes first: a kill before the resume set below is committed leaves a
        // line that `--resume` truncates, never a committed epoch without its line.
        let batches = steps.max(1) as f64;
        let train_terms: BTreeMap<String, f64> = term_sums.into_iter().map(|(k, v)| (k, v / batches)).collect();
        run.append_metrics(&json!({
            "epoch": epoch,
            "lr": lr,
            "train_loss": loss_sum / batches,
            "train_terms": train_terms,
            "val": val.split_metrics(),
            "evaluated": evaluated_name,
            "best_epoch": state.best.best_epoch,
            "wall_seconds": state.wall_seconds,
            "medkd_commit": build_info::COMMIT,
        }))?;
        // The write in flight first: once committed it deletes every other set's files, these
        // included.
        checkpoints.wait()?;
        let mut method_state = method_state_for(run, &state);
        method.save_state(&mut method_state)?;
        let best = improved.then(|| BestChoice { model: evaluated, epoch, metric: select.name(), value: metric });
        checkpoints.save(best, &trainable, &optimizer, average.as_ref().and_then(|a| a.model.as_ref()), &state, method_state)?;

        let accuracy = Some(val.metric(Metric::Accuracy)).filter(|a| !a.is_nan()).map(|a| format!("  val acc {a:.4}"));
        eprintln!(
            "epoch {:>3}/{}  train loss {:.4}  val {select} {:.4}{}{}",
            epoch + 1,
            config.train.epochs,
            loss_sum / batches,
            metric,
            accuracy.unwrap_or_default(),
            if improved { "  *best" } else { "" }
        );
        if let Some(stop) = &config.train.early_stopping {
            if state.best.stale_epochs >= stop.patience {
                eprintln!("early stopping: no {select} improvement for {} epochs", stop.patience);
                break;
            }
        }
    }

    checkpoints.finish()?;
    let spec = method.spec(setup);
    let best_model = load_weights(Model::new(&spec, &setup.device)?, &best_weights(run)?)?;
    let test_loader = setup.eval_loader(config, setup.splits.test.clone())?;
    let test = method.evaluate(&best_model, &test_loader, setup)?;
    let val = method.evaluate(&best_model, &val_loader, setup)?;
    // Single-label evaluations keep what they scored; other targets have nothing to calibrate.
    let calibration = match (&val.scored, &test.scored) {
        (Some(val), Some(test)) => Some(calibrate(val, test, &setup.info)?),
        _ => None,
    };
    for (split, evaluation) in [("val", &val), ("test", &test)] {
        if let Some(scored) = &evaluation.scored {
            scored.write_csv(&run.predictions_path(split), &setup.info.class_names)?;
        }
        if let (Some(boxes), Report::Boxes(report)) = (&evaluation.boxes, &evaluation.report) {
            boxes.write_csv(&run.predictions_path(split), Some(&report.iou))?;
        }
    }
    // The gallery only illustrates the report: a failure there must not leave a trained run
    // without its summary.
    if let Some(scored) = &test.scored
        && let Err(error) = crate::gallery::write_gallery(run, setup, &best_model, scored)
    {
        eprintln!("warning: no gallery for the report ({error}); `medkd report {}` tries again", run.root().display());
    }
    let summary = Summary {
        dataset: setup.info.name.clone(),
        class_names: setup.info.class_names.clone(),
        input_channels: spec.in_channels,
        task: Some(setup.info.task),
        normalization: Some(setup.eval_pipeline.normalization().clone()),
        model: config.model.arch,
        small_input: Some(spec.small_input),
        weight_averaging: config.train.weight_averaging.as_ref().map(|a| a.name().to_string()),
        params: count_params(&best_model),
        macs: count_macs(&spec, setup.input_hw),
        input_size: setup.input_hw,
        epochs_run: state.epochs_done,
        best_epoch: state.best.best_epoch,
        select_metric: select,
        wall_seconds: state.wall_seconds,
        medkd: build_info::json(),
        seed: config.seed,
        seeds: Seeds {
            model_init: config.seed,
            split: setup.splits.split_table.as_ref().map(|_| config.data.split.clone().unwrap_or_default().seed),
            shuffle_and_augment: config.seed,
        },
        skipped_images: setup.splits.skipped_images.clone(),
        val: val.split_metrics(),
        test: test.split_metrics(),
        calibration,
        method: method.summary(),
    };
    run.write_json(&run.summary_path(), &summary)?;
    Ok(Outcome { summary, test })
}

/// The loss of one batch on `devices`: the method's step on the first device, or with several
/// devices the shard losses weighted by shard size (see the module's notes), each term likewise.
fn sharded_step<M: Method>(
    method: &mut M,
    trainable: &M::Trainable,
    batch: Batch,
    at: StepAt,
    devices: &[Device],
) -> Result<StepLoss, TrainError> {
    if devices.len() == 1 {
        return method.step(trainable, batch, at);
    }
    let samples = batch.indices.len() as f64;
    let first = &devices[0];
    let mut total: Option<Tensor<1>> = None;
    let mut terms: Vec<TermValue> = Vec::new();
    for (k, (shard, device)) in batch.split(devices.len()).into_iter().zip(devices).enumerate() {
        let weight = shard.indices.len() as f64 / samples;
        let loss = match k {
            0 => method.step(trainable, shard, at)?,
            _ => method.step(&trainable.clone().to_device(device), shard, at)?,
        };
        let weighted = |value: Tensor<1>| value.to_device(first).mul_scalar(weight);
        let shard_total = weighted(loss.total);
        total = Some(match total {
            Some(sum) => sum + shard_total,
            None => shard_total,
        });
        for term in loss.terms {
            let value = weighted(term.value);
            match terms.iter_mut().find(|t| t.name == term.name) {
                Some(sum) => sum.value = sum.value.clone() + value,
                None => terms.push(TermValue { name: term.name, value }),
            }
        }
    }
    Ok(StepLoss { total: total.expect("a batch has at least one shard"), terms })
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

/// One optimizer step on `loss`. Fine-tuning splits the gradients: the classifier and any loss
/// heads step at `lr`, the backbone at `lr × backbone_lr_scale` once its frozen epochs are over
/// (a parameter without a gradient in a step is left as it is, optimizer state included).
fn optimizer_step<T: Module>(
    optimizer: &mut ModuleOptimizer,
    finetune: Option<&(&FinetuneConfig, Vec<ParamId>)>,
    epoch: usize,
    lr: f64,
    trainable: T,
    loss: Tensor<1>,
) -> T {
    let mut grads = loss.backward();
    let Some((finetune, backbone_ids)) = finetune else {
        let grads = GradientsParams::from_grads(grads, &trainable);
        return optimizer.step(lr, trainable, grads);
    };
    let backbone = GradientsParams::from_params(&mut grads, &trainable, backbone_ids);
    let rest = GradientsParams::from_grads(grads, &trainable);
    let trainable = optimizer.step(lr, trainable, rest);
    if epoch < finetune.freeze_backbone_epochs {
        return trainable;
    }
    optimizer.step(lr * finetune.backbone_lr_scale, trainable, backbone)
}

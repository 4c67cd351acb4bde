//! The seam between the training loop and a method. The loop ([`crate::engine::fit`]) owns the
//! optimizer, the learning-rate schedule, checkpoints and exact resume, weight averaging,
//! best-checkpoint selection, the metrics log, the progress bar and the non-finite-loss guard. A
//! method supplies only what differs: the module it trains, where its batches come from, what one
//! step computes (named, weighted loss terms), what it does after a step, and the state it keeps
//! across `--resume`. Modelled on mdistiller's one class per distiller (`forward_train` gives the
//! logits and a dict of named losses) and burn-train's `TrainStep`, cut to this run-folder contract.

use burn::module::Module;
use burn::prelude::*;
use medkd_data::{Batch, Loader};
use medkd_losses::TermValue;
use medkd_models::{Model, ModelSpec};
use serde_json::Value;
use std::collections::BTreeMap;

use crate::TrainError;
use crate::checkpoint::MethodState;
use crate::evaluate::{Evaluation, evaluate, predict};
use crate::run_dir::RunDir;
use crate::setup::RunSetup;

/// Where a step stands in the run (all 0-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepAt {
    pub epoch: usize,
    pub step: usize,
    /// Steps per epoch.
    pub steps: usize,
}

impl StepAt {
    /// Steps finished before this one since the run began.
    pub fn global(&self) -> u64 {
        (self.epoch * self.steps + self.step) as u64
    }
}

/// Where a step's tensors go: the device of `trainable`'s parameters, which in a data-parallel
/// step is the shard's.
pub fn device_of(trainable: &impl Module) -> Device {
    trainable.devices().swap_remove(0)
}

/// One step's loss: the weighted total that is back-propagated, and each named term's unweighted
/// value for the metrics log.
pub struct StepLoss {
    pub total: Tensor<1>,
    pub terms: Vec<TermValue>,
}

pub trait Method {
    /// What the optimizer trains: the model plus whatever trainable modules the method adds
    /// (regressors, projection heads). Saved whole in the resume set.
    type Trainable: Module + 'static;

    /// A freshly initialized trainable module on `device` (an autodiff device that the loop has
    /// seeded with the run seed). A resumed run loads its saved weights over this one.
    fn init(&mut self, device: &Device) -> Result<Self::Trainable, TrainError>;

    /// The model inside the trainable module: what is evaluated, averaged and exported.
    fn model<'a>(&self, trainable: &'a Self::Trainable) -> &'a Model;

    /// The shape of that model (architecture, outputs, channels): the run's by default; a box
    /// regressor, say, has four outputs whatever the classes.
    fn spec(&self, setup: &RunSetup) -> ModelSpec {
        setup.spec.clone()
    }

    /// Scores `model` (eval mode) on the split `loader` holds: every epoch on validation, to select
    /// the best checkpoint by `train.select_metric`, and at the end on validation and test.
    /// Classification metrics by default; a localization method scores boxes
    /// ([`crate::evaluate::evaluate_box_predictions`]).
    fn evaluate(&self, model: &Model, loader: &Loader, setup: &RunSetup) -> Result<Evaluation, TrainError> {
        evaluate(&predict(model, loader, &setup.info, &setup.device)?, &setup.info, &setup.shot_groups)
    }

    /// The loader whose batches [`Method::step`] receives; its batch count is the epoch's length.
    fn train_loader(&self) -> Result<Loader, TrainError>;

    /// Work before the first epoch that the trainable module does not take part in (SSKD's
    /// teacher heads). It runs on resume too, so keep what it makes in the run folder.
    fn prepare(&mut self, _run: &RunDir) -> Result<(), TrainError> {
        Ok(())
    }

    /// The loss of one batch, its tensors made on the trainable's device ([`device_of`]).
    fn step(&mut self, trainable: &Self::Trainable, batch: Batch, at: StepAt) -> Result<StepLoss, TrainError>;

    /// After the optimizer has updated `trainable`, before the weight average sees it: an EMA
    /// teacher follows the student here, and a pruned model puts its fixed masks back.
    fn after_step(&mut self, trainable: Self::Trainable, _at: StepAt) -> Result<Self::Trainable, TrainError> {
        Ok(trainable)
    }

    /// Saves what [`Method::load_state`] needs to continue exactly (EMA teachers, a loss term's
    /// running centre); called after every finished epoch.
    fn save_state(&self, _state: &mut MethodState) -> Result<(), TrainError> {
        Ok(())
    }

    /// Restores the state of [`Method::save_state`] when a run resumes.
    fn load_state(&mut self, _state: &MethodState) -> Result<(), TrainError> {
        Ok(())
    }

    /// Method-specific facts added to summary.json (e.g. the teachers it distilled from).
    fn summary(&self) -> BTreeMap<String, Value> {
        BTreeMap::new()
    }
}

//! `method = "localize"`: one box per image (lesion localization). The model's four outputs are
//! decoded into a normalized box ([`medkd_losses::decode_boxes`]) and trained with the config's
//! box terms (`box_l1`, `giou`); runs are scored and selected by box IoU. With `[method.htl]`,
//! hard-to-learn samples weigh `1 + beta` in those terms (Jaiswal et al., WACV 2023): a fixed set
//! from `medkd prune`, or one refreshed every few epochs by pruning the model being trained.
//! With `[method.semi]`, only part of the training images keep their boxes and the others learn
//! from an EMA teacher's pseudo-boxes ([`PseudoBoxes`]). With `[method.weak]`, the model is a
//! classifier trained on the images' classes and its boxes come from its class activation maps
//! ([`crate::evaluate::cam_boxes`]); HTL samples then weigh up its class terms.

use std::collections::BTreeMap;

use burn::prelude::*;
use medkd_data::{Batch, Loader};
use medkd_losses::{LossContext, Targets, box_l1, giou_loss};
use medkd_models::Model;
use serde_json::{Value, json};

use crate::TrainError;
use crate::checkpoint::MethodState;
use crate::config::RunConfig;
use crate::evaluate::{BoxSource, Evaluation, batch_tensor, evaluate_box_predictions, predict_boxes};
use crate::htl::find_htl;
use crate::method::{Method, StepAt, StepLoss, device_of};
use crate::methods::classify::{initial_model, train_loader};
use crate::methods::config::{HtlConfig, LocalizeConfig};
use crate::methods::pseudo_boxes::PseudoBoxes;
use crate::run_dir::RunDir;
use crate::setup::{Prepared, RunSetup};
use crate::sparse::KeptSparse;

pub struct Localize<'a> {
    config: &'a RunConfig,
    prepared: &'a Prepared,
    htl_config: Option<&'a HtlConfig>,
    /// Per training sample: hard to learn now.
    htl: Vec<bool>,
    /// `(epoch, HTL samples)` after each adaptive refresh, for summary.json.
    refreshes: Vec<(usize, usize)>,
    semi: Option<PseudoBoxes<'a>>,
    /// A pruned model's masks (`model.prune_sparsity`, set by `init`).
    sparse: Option<KeptSparse>,
}

impl<'a> Localize<'a> {
    pub fn new(config: &'a RunConfig, prepared: &'a Prepared, method: &'a LocalizeConfig) -> Localize<'a> {
        let n = prepared.setup.splits.train.len();
        let htl = prepared.htl.clone().unwrap_or_else(|| vec![false; n]);
        let semi = method.semi.as_ref().map(|semi| PseudoBoxes::new(semi, n));
        Localize { config, prepared, htl_config: method.htl.as_ref(), htl, refreshes: Vec::new(), semi, sparse: None }
    }

    /// Every `refresh_epochs` epochs, at the end of the epoch: the training images on which the
    /// model and its pruned copy disagree become the HTL set (eval transforms, so the set does
    /// not depend on the epoch's augmentation).
    fn refresh(&mut self, model: &Model, at: StepAt) -> Result<(), TrainError> {
        let Some(HtlConfig { refresh_epochs: Some(every), sparsity, agreement, .. }) = self.htl_config else { return Ok(()) };
        if at.step + 1 != at.steps || (at.epoch + 1) % every != 0 {
            return Ok(());
        }
        let setup = &self.prepared.setup;
        let loader = setup.eval_loader(self.config, setup.splits.train.clone())?;
        self.htl = find_htl(model, *sparsity, *agreement, &loader, setup.box_source, &setup.device)?;
        let count = self.htl.iter().filter(|h| **h).count();
        self.refreshes.push((at.epoch, count));
        eprintln!("hard-to-learn samples after epoch {}: {count} of {}", at.epoch + 1, self.htl.len());
        Ok(())
    }
}

impl Method for Localize<'_> {
    type Trainable = Model;

    fn init(&mut self, device: &Device) -> Result<Model, TrainError> {
        let (model, sparse) = initial_model(self.config, &self.prepared.setup.spec, device)?;
        self.sparse = sparse;
        Ok(model)
    }

    fn model<'m>(&self, model: &'m Model) -> &'m Model {
        model
    }

    fn train_loader(&self) -> Result<Loader, TrainError> {
        let train = self.prepared.setup.splits.train.clone();
        train_loader(self.config, self.prepared, self.semi.as_ref().map_or(train.clone(), |semi| semi.dataset(train)))
    }

    fn prepare(&mut self, run: &RunDir) -> Result<(), TrainError> {
        match &self.semi {
            Some(semi) => semi.write_labelled(run, self.prepared.setup.splits.train.as_ref()),
            None => Ok(()),
        }
    }

    /// Box terms on the true boxes (or, with `[method.semi]`, pseudo-boxes for the unlabelled
    /// images), each sample weighted by its HTL factor times its semi-supervised weight.
    fn step(&mut self, model: &Model, batch: Batch, at: StepAt) -> Result<StepLoss, TrainError> {
        let boxes = batch.boxes().ok_or_else(|| TrainError::Input("the localize method needs a box for every training image".into()))?;
        let mut weights: Option<Vec<f32>> =
            self.htl_config.map(|h| batch.indices.iter().map(|&i| if self.htl[i] { 1.0 + h.beta as f32 } else { 1.0 }).collect());
        if let Some(semi) = &self.semi {
            let semi_weights = semi.weights(&batch, at);
            weights = Some(match weights {
                Some(htl) => htl.iter().zip(&semi_weights).map(|(h, s)| h * s).collect(),
                None => semi_weights,
            });
        }
        let outputs = model.forward(batch_tensor(&batch.images, batch.shape, &device_of(model)));
        let targets = match self.prepared.setup.box_source {
            BoxSource::Regression => Targets::Boxes(boxes),
            BoxSource::Cam { .. } => Targets::Classes(batch.class_labels()),
        };
        let context = LossContext {
            step: at.global(),
            sample_weights: weights.as_deref(),
            ..LossContext::student_only(&outputs, &targets, at.epoch as u64)
        };
        let (total, terms) = self.prepared.objective.compute(&context)?;
        Ok(StepLoss { total, terms })
    }

    fn after_step(&mut self, model: Model, at: StepAt) -> Result<Model, TrainError> {
        let model = match &mut self.sparse {
            Some(sparse) => sparse.after_step(model, at),
            None => model,
        };
        if let Some(semi) = &mut self.semi {
            semi.after_step(&model, at, self.config, &self.prepared.setup)?;
        }
        self.refresh(&model, at)?;
        Ok(model)
    }

    /// Box metrics; the loss is the mean per-box L1 + GIoU loss, unweighted, or for boxes from
    /// activation maps the classifier's cross-entropy.
    fn evaluate(&self, model: &Model, loader: &Loader, setup: &RunSetup) -> Result<Evaluation, TrainError> {
        let boxes = predict_boxes(model, loader, setup.box_source, &setup.device)?;
        if let Some(loss) = boxes.class_loss {
            return evaluate_box_predictions(boxes, loss);
        }
        let device = setup.device.clone().without_autodiff();
        let tensor = |b: &[[f32; 4]]| Tensor::<2>::from_data(TensorData::new(b.concat(), [b.len(), 4]), &device);
        let (predicted, truth) = (tensor(&boxes.predicted), tensor(&boxes.truth()?));
        let loss = (box_l1(predicted.clone(), truth.clone()) + giou_loss(predicted, truth)).mean().into_scalar::<f32>();
        evaluate_box_predictions(boxes, f64::from(loss))
    }

    fn save_state(&self, state: &mut MethodState) -> Result<(), TrainError> {
        if self.htl_config.is_some() {
            state.put("htl", &self.htl);
            state.put("htl_refreshes", &self.refreshes);
        }
        self.semi.as_ref().map_or(Ok(()), |semi| semi.save_state(state))
    }

    fn load_state(&mut self, state: &MethodState) -> Result<(), TrainError> {
        if self.htl_config.is_some() {
            self.htl = state.get("htl")?;
            self.refreshes = state.get("htl_refreshes")?;
        }
        if let Some(semi) = &mut self.semi {
            let setup = &self.prepared.setup;
            semi.load_state(state, Model::new(&setup.spec, &setup.device.clone().without_autodiff())?)?;
        }
        Ok(())
    }

    fn summary(&self) -> BTreeMap<String, Value> {
        let mut summary = self.semi.as_ref().map(PseudoBoxes::summary).unwrap_or_default();
        summary.extend(self.sparse.as_ref().map(KeptSparse::summary));
        let Some(htl) = self.htl_config else { return summary };
        let source = match &htl.file {
            Some(file) => json!({ "file": file }),
            None => json!({ "refresh_epochs": htl.refresh_epochs, "sparsity": htl.sparsity, "agreement": htl.agreement }),
        };
        let refreshes: Vec<Value> = self.refreshes.iter().map(|(epoch, count)| json!({ "epoch": epoch + 1, "htl": count })).collect();
        let count = self.htl.iter().filter(|h| **h).count();
        summary.insert(
            "htl".into(),
            json!({ "beta": htl.beta, "source": source, "htl_at_end": count, "train_samples": self.htl.len(), "refreshes": refreshes }),
        );
        summary
    }
}

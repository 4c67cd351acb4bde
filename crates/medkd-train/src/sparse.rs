//! Fine-tuning a pruned model (`model.prune_sparsity`): the initial weights (usually
//! `model.pretrained`) pruned by global magnitude ([`prune_global`]), and their zeros put back
//! after every optimizer step, so that the model trains as sparse as it was pruned. The reached
//! sparsity is checked at the start and after the last step, and recorded in summary.json.
//!
//! A resumed run prunes the same initial weights again, so its masks need no saving.

use medkd_models::{Masks, Model, Pruned, prune_global, sparsity_of};
use serde_json::{Value, json};

use crate::TrainError;
use crate::config::RunConfig;
use crate::method::StepAt;

pub struct KeptSparse {
    masks: Masks,
    requested: f64,
    at_start: Pruned,
    at_end: Option<Pruned>,
    epochs: usize,
}

impl KeptSparse {
    /// `model` pruned as the config asks, and what keeps it so; `model` unchanged without
    /// `model.prune_sparsity`.
    pub fn start(config: &RunConfig, model: Model) -> Result<(Model, Option<KeptSparse>), TrainError> {
        let Some(requested) = config.model.prune_sparsity else { return Ok((model, None)) };
        let (model, at_start) = prune_global(model, requested)?;
        let masks = Masks::of(&model);
        Ok((model, Some(KeptSparse { masks, requested, at_start, at_end: None, epochs: config.train.epochs })))
    }

    /// After an optimizer step: the pruned weights back to zero; after the run's last step, the
    /// sparsity reached is counted.
    pub fn after_step(&mut self, model: Model, at: StepAt) -> Model {
        let model = self.masks.apply(model);
        if at.epoch + 1 == self.epochs && at.step + 1 == at.steps {
            self.at_end = Some(sparsity_of(&model));
        }
        model
    }

    /// summary.json's `pruned`: the requested sparsity and the share of zero conv and linear
    /// weights at the start and after the last step.
    pub fn summary(&self) -> (String, Value) {
        let reached = |p: &Pruned| json!({ "sparsity": p.sparsity(), "zeros": p.zeros, "weights": p.weights });
        (
            "pruned".into(),
            json!({ "requested": self.requested, "start": reached(&self.at_start), "end": self.at_end.as_ref().map(reached) }),
        )
    }
}

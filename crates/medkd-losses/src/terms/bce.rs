//! `kind = "bce"`: binary cross-entropy on logits, averaged over samples and labels (multi-label
//! tasks, [`crate::bce_with_logits`]).

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::term::{LossTerm, Needs, TermAt, TermSpec, label_kind};
use crate::{LossContext, LossError, Targets, TaskFacts, bce_with_logits};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BceSpec {
    #[serde(default = "crate::spec::unit_weight")]
    pub weight: f64,
}

impl TermSpec for BceSpec {
    fn kind(&self) -> &'static str {
        "bce"
    }

    fn weight(&self) -> f64 {
        self.weight
    }

    fn resolve(&self, facts: &TaskFacts, _needs: &mut Needs) -> Result<Box<dyn LossTerm>, LossError> {
        label_kind(self.kind(), true, "multi-label targets", "the dataset is single-label (use kind = \"cross_entropy\")", facts)?;
        Ok(Box::new(Bce))
    }
}

struct Bce;

impl LossTerm for Bce {
    fn value(&self, ctx: &LossContext, at: &TermAt) -> Result<Tensor<1>, LossError> {
        let Targets::MultiHot { values, num_labels } = ctx.targets else {
            unreachable!("Objective::new checked the task kind, and the loader yields targets of that kind")
        };
        let logits = &ctx.student.logits;
        let n = values.len() / num_labels;
        let targets = Tensor::<2>::from_data(TensorData::new(values.clone(), [n, *num_labels]), &logits.device());
        Ok(bce_with_logits(at.per_image(logits), targets))
    }
}

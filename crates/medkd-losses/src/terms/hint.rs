//! `kind = "hint"`: FitNets hint, the mean squared error between a student stage map, passed
//! through a trainable 1x1 [`crate::ConvRegressor`] when the channel counts differ, and the
//! teacher's map ([`crate::hint_mse`]).

use serde::{Deserialize, Serialize};

use crate::term::{LossTerm, Needs, StageMaps, TermSpec};
use crate::{LossError, TaskFacts, hint_mse};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HintSpec {
    #[serde(default = "crate::spec::unit_weight")]
    pub weight: f64,
    #[serde(default)]
    pub teacher: usize,
    #[serde(default = "last_stage")]
    pub stage: usize,
}

/// The last of a CNN's four stages.
pub(crate) fn last_stage() -> usize {
    3
}

impl TermSpec for HintSpec {
    fn kind(&self) -> &'static str {
        "hint"
    }

    fn weight(&self) -> f64 {
        self.weight
    }

    fn resolve(&self, facts: &TaskFacts, needs: &mut Needs) -> Result<Box<dyn LossTerm>, LossError> {
        StageMaps::resolve(self.kind(), self.teacher, self.stage, hint_mse, facts, needs)
    }
}

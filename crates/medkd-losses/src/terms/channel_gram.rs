//! `kind = "channel_gram"`: SSD-KD's channel-relation term, the RMSE between per-instance
//! `C x C` Gram matrices of a stage map divided by `C H W` ([`crate::channel_gram_rmse`]), the
//! student's map regressed as for `hint`.

use serde::{Deserialize, Serialize};

use crate::term::{LossTerm, Needs, StageMaps, TermSpec};
use crate::{LossError, TaskFacts, channel_gram_rmse};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelGramSpec {
    #[serde(default = "crate::spec::unit_weight")]
    pub weight: f64,
    #[serde(default)]
    pub teacher: usize,
    #[serde(default = "crate::terms::hint::last_stage")]
    pub stage: usize,
}

impl TermSpec for ChannelGramSpec {
    fn kind(&self) -> &'static str {
        "channel_gram"
    }

    fn weight(&self) -> f64 {
        self.weight
    }

    fn resolve(&self, facts: &TaskFacts, needs: &mut Needs) -> Result<Box<dyn LossTerm>, LossError> {
        StageMaps::resolve(self.kind(), self.teacher, self.stage, channel_gram_rmse, facts, needs)
    }
}

//! The registry of training methods: a config's `method` names one, and [`train`] runs it on
//! the shared loop ([`crate::engine::fit`]). Adding a method is one file here implementing
//! [`crate::method::Method`], one [`MethodName`] variant and one arm in [`train`].

mod classify;

pub use classify::{Classify, Student};

use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::config::RunConfig;
use crate::engine::{Outcome, fit};
use crate::run_dir::RunDir;
use crate::setup::Prepared;

/// `method = "..."` in a run config.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MethodName {
    /// Supervised classification with the config's loss terms and optional frozen teachers.
    #[default]
    Classify,
}

impl MethodName {
    pub fn is_default(&self) -> bool {
        *self == MethodName::default()
    }
}

/// Trains a new run (`resume = false`) or continues the one in `run`, with the config's method.
/// `prepared` is built first by the caller, so bad input fails before a run folder is made.
pub fn train(config: &RunConfig, prepared: &Prepared, run: &RunDir, resume: bool, show_progress: bool) -> Result<Outcome, TrainError> {
    match config.method {
        MethodName::Classify => fit(config, &prepared.setup, &mut Classify::new(config, prepared), run, resume, show_progress),
    }
}

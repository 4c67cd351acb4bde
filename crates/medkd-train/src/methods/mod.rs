//! The registry of training methods: a config's `[method]` table names one, and [`train`] runs
//! it on the shared loop ([`crate::engine::fit`]). Adding a method is one file here implementing
//! [`crate::method::Method`] next to its config section, one [`MethodConfig`] variant and one arm
//! in [`train`].

mod classify;

pub use classify::{Classify, ClassifyConfig, Student};

use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::config::RunConfig;
use crate::engine::{Outcome, fit};
use crate::run_dir::RunDir;
use crate::setup::Prepared;

/// The `[method]` table of a run config: which method runs on the loop (`kind`) and that method's
/// own keys, declared in its file. Absent, the method is `classify`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MethodConfig {
    /// Supervised classification with the config's loss terms and optional frozen teachers.
    Classify(ClassifyConfig),
}

impl Default for MethodConfig {
    fn default() -> Self {
        MethodConfig::Classify(ClassifyConfig::default())
    }
}

impl MethodConfig {
    pub fn is_default(&self) -> bool {
        *self == MethodConfig::default()
    }
}

/// Trains a new run (`resume = false`) or continues the one in `run`, with the config's method.
/// `prepared` is built first by the caller, so bad input fails before a run folder is made.
pub fn train(config: &RunConfig, prepared: &Prepared, run: &RunDir, resume: bool, show_progress: bool) -> Result<Outcome, TrainError> {
    match &config.method {
        MethodConfig::Classify(_) => fit(config, &prepared.setup, &mut Classify::new(config, prepared), run, resume, show_progress),
    }
}

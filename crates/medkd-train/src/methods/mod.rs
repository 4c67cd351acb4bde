//! The registry of training methods: a config's `[method]` table names one, and [`train`] runs
//! it on the shared loop ([`crate::engine::fit`]). Adding a method is one file here implementing
//! [`crate::method::Method`], its keys and [`MethodConfig`] variant in `config.rs` here, and one
//! arm in [`train`].

mod classify;
pub mod config;
pub(crate) mod distl;
mod localize;
mod pseudo_boxes;

pub use classify::{Classify, Student};
pub use config::{
    ClassifyConfig, DinoConfig, DinoPretrainConfig, DistlConfig, HtlConfig, LocalCrops, LocalizeConfig, MethodConfig, PseudoLabels,
    SemiConfig, WeakConfig,
};
pub use distl::{SelfDistillation, SelfDistilled, SelfTrainingData};
pub use localize::Localize;

use crate::TrainError;
use crate::config::RunConfig;
use crate::engine::{Outcome, fit};
use crate::run_dir::RunDir;
use crate::setup::Prepared;

/// Trains a new run (`resume = false`) or continues the one in `run`, with the config's method.
/// `prepared` is built first by the caller, so bad input fails before a run folder is made.
pub fn train(config: &RunConfig, prepared: &Prepared, run: &RunDir, resume: bool, show_progress: bool) -> Result<Outcome, TrainError> {
    match &config.method {
        MethodConfig::Classify(_) => fit(config, &prepared.setup, &mut Classify::new(config, prepared), run, resume, show_progress),
        MethodConfig::Localize(localize) => {
            fit(config, &prepared.setup, &mut Localize::new(config, prepared, localize), run, resume, show_progress)
        }
        MethodConfig::Dino(_) | MethodConfig::Distl(_) => {
            fit(config, &prepared.setup, &mut SelfDistillation::new(config, prepared), run, resume, show_progress)
        }
    }
}

//! medkd's training engine: config, the training loop, evaluation, checkpoints and the run
//! folder contract.

pub mod attack;
pub mod averaging;
pub mod build_info;
pub mod checkpoint;
pub mod config;
pub mod device;
mod error;
pub mod evaluate;
pub mod optim;
pub mod roskd;
pub mod run_dir;
pub mod schedule;
pub mod teacher_head;
pub mod teachers;
pub mod trainer;

pub use config::RunConfig;
pub use error::TrainError;
pub use run_dir::RunDir;
pub use teachers::{Teacher, load_teachers};
pub use trainer::{Outcome, Prepared, RunSetup, train};

/// Direction of a selection metric: everything but `loss` and `ece` is better when higher.
pub fn higher_is_better(metric: &str) -> bool {
    !matches!(metric, "loss" | "ece")
}

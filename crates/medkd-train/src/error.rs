use std::path::{Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum TrainError {
    #[error("config error: {0}")]
    Config(String),
    #[error("config file {path}: {message}")]
    ConfigFile { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Data(#[from] medkd_data::DataError),
    #[error(transparent)]
    Model(#[from] medkd_models::ModelError),
    #[error(transparent)]
    Loss(#[from] medkd_losses::LossError),
    #[error(transparent)]
    Eval(#[from] medkd_eval::EvalError),
    #[error(
        "non-finite loss at epoch {epoch}, step {step}: {terms}, on the batch of {samples} (lower the learning rate or check these inputs)"
    )]
    NonFiniteLoss { epoch: usize, step: usize, terms: String, samples: String },
    #[error(
        "stopped by a signal in epoch {epoch}; the resume set of the last finished epoch ({saved}) is saved, and \
         `--resume DIR` continues from it (runs resume at epoch boundaries, so that epoch's steps are trained again)"
    )]
    Stopped { epoch: usize, saved: usize },
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    #[error("run folder {path}: {message}")]
    RunFolder { path: PathBuf, message: String },
    #[error("{0}")]
    Input(String),
    #[error("device '{device}' is not built into this binary; rebuild with `--features {feature}`")]
    DeviceNotBuilt { device: String, feature: &'static str },
}

impl TrainError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        TrainError::Io { path: path.to_path_buf(), source }
    }

    /// Attaches the config file's path to a config error.
    pub(crate) fn in_file(self, path: &Path) -> Self {
        match self {
            TrainError::Config(message) => TrainError::ConfigFile { path: path.to_path_buf(), message },
            other => other,
        }
    }
}

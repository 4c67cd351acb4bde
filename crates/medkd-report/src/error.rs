use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ReportError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A file that is there but not what medkd writes.
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    /// A folder with nothing to report.
    #[error("{path}: {message}")]
    NotARun { path: PathBuf, message: String },
}

impl ReportError {
    pub(crate) fn invalid(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        ReportError::Invalid { path: path.into(), message: message.into() }
    }
}

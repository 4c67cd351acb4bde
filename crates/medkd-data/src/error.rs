//! The crate's single error type. Every message names the file, the 1-based data row, the column
//! or key, and what was expected, so a user can fix the input without reading code.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot decode image {path}: {source}")]
    Image {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },

    #[error("cannot read DICOM {path}: {message}")]
    Dicom { path: PathBuf, message: String },

    #[error("image file {path} does not exist (listed in data row {row} of {listed_in})")]
    MissingImage { path: PathBuf, listed_in: PathBuf, row: usize },

    #[error("{path}: npz has no key `{key}`; keys found: [{}]", found.join(", "))]
    NpzMissingKey { path: PathBuf, key: String, found: Vec<String> },

    #[error("{path}: key `{key}`: {message}")]
    Npz { path: PathBuf, key: String, message: String },

    #[error("{path}: {split} label out of range at index {index}: value {value}, but the dataset has {num_classes} classes")]
    LabelOutOfRange { path: PathBuf, split: String, index: usize, value: u64, num_classes: usize },

    #[error("{path}: no column `{column}`; columns found: [{}]", found.join(", "))]
    MissingColumn { path: PathBuf, column: String, found: Vec<String> },

    #[error("{path}: data row {row}, column `{column}`: {message}")]
    CsvValue { path: PathBuf, row: usize, column: String, message: String },

    #[error("{path}: {source}")]
    CsvFile {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },

    #[error("{path}: data row {row}: {source}")]
    Csv {
        path: PathBuf,
        row: usize,
        #[source]
        source: csv::Error,
    },

    #[error("transform `{op}`: field `{field}`: {message}")]
    TransformParam { op: &'static str, field: &'static str, message: String },

    #[error("data config: {0}")]
    Config(String),

    #[error("dataset {path}: {message}")]
    Dataset { path: PathBuf, message: String },

    #[error("{0}")]
    UnknownDataset(String),

    #[error("download of {url} failed: {message}")]
    Download { url: String, message: String },

    #[error("{path}: {algorithm} mismatch: expected {expected}, got {actual}; the download was deleted")]
    ChecksumMismatch { path: PathBuf, algorithm: &'static str, expected: String, actual: String },

    #[error("batch of sample {index} (id {id}): {message}")]
    Batch { index: usize, id: String, message: String },

    #[error("data loader worker stopped unexpectedly: {0}")]
    Worker(String),
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io { path: path.into(), source }
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        DataError::Config(message.into())
    }

    pub(crate) fn param(op: &'static str, field: &'static str, message: impl Into<String>) -> Self {
        DataError::TransformParam { op, field, message: message.into() }
    }
}

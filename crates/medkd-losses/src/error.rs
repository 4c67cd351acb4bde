use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum LossError {
    #[error("loss term '{term}': {message}")]
    BadParameter { term: String, message: String },
    #[error("loss term '{term}' needs {needs}, but {found}")]
    Incompatible { term: String, needs: String, found: String },
}

impl LossError {
    pub(crate) fn bad(term: &str, message: impl Into<String>) -> Self {
        LossError::BadParameter { term: term.to_string(), message: message.into() }
    }
}

use thiserror::Error;

/// Why a set of predictions could not be evaluated.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum EvalError {
    #[error("empty input: there are no samples to evaluate")]
    Empty,

    #[error("need at least {min} {what}, got {got}")]
    TooFewClasses { what: &'static str, min: usize, got: usize },

    #[error("got {actual} class/label names, expected one per class (K = {expected})")]
    NamesMismatch { expected: usize, actual: usize },

    #[error("{what} has length {actual}, expected N*K = {n}*{k} = {expected}")]
    LengthMismatch { what: &'static str, n: usize, k: usize, expected: usize, actual: usize },

    #[error("{what} has length {len}, which is not a multiple of K = {k}")]
    RaggedRows { what: &'static str, len: usize, k: usize },

    #[error("label {label} of sample {sample} is out of range for K = {num_classes} classes")]
    LabelOutOfRange { sample: usize, label: usize, num_classes: usize },

    #[error("probability at index {index} (sample {sample}, class {class}) is not finite: {value}")]
    NonFiniteProbability { index: usize, sample: usize, class: usize, value: f32 },

    #[error("{what}[{index}] is {value}, expected a finite score")]
    NonFiniteScore { what: &'static str, index: usize, value: f32 },

    #[error("target at index {index} (sample {sample}, label {label}) is {value}, expected 0 or 1")]
    InvalidTarget { index: usize, sample: usize, label: usize, value: u8 },

    #[error("{which} box of sample {sample} has a coordinate that is not finite")]
    NonFiniteBox { which: &'static str, sample: usize },

    /// A configured value that is out of range, with the key it was given under.
    #[error("{0}")]
    Config(String),

    #[error("unknown metric {name:?}, expected one of: {}", crate::metric::known_names())]
    UnknownMetric { name: String },
}

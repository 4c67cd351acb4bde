use std::fmt::Write as _;
use std::path::PathBuf;

use crate::model::Arch;

/// A tensor whose shape in a weights file differs from the one the model expects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShapeMismatch {
    /// torchvision state-dict name.
    pub name: String,
    /// Shape the model expects, in PyTorch layout (Linear weights are `[out, in]`).
    pub expected: Vec<usize>,
    /// Shape found in the file.
    pub found: Vec<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("invalid model spec: {0}")]
    InvalidSpec(String),

    #[error("unknown architecture `{0}`; valid names: {names}", names = Arch::ALL.map(Arch::name).join(", "))]
    UnknownArch(String),

    #[error("unsupported weights file `{}`: expected {expected}", .path.display())]
    UnsupportedFormat { path: PathBuf, expected: &'static str },

    #[error("cannot read weights from `{}`: {message}", .path.display())]
    Read { path: PathBuf, message: String },

    #[error("cannot write weights to `{}`: {message}", .path.display())]
    Write { path: PathBuf, message: String },

    /// Strict loading found tensors missing, unexpected or mis-shaped; every offender is listed.
    #[error(
        "weights in `{}` do not match the model:{}",
        .path.display(),
        mismatch_report(.missing, .unexpected, .mismatched)
    )]
    Mismatch { path: PathBuf, missing: Vec<String>, unexpected: Vec<String>, mismatched: Vec<ShapeMismatch> },

    #[error("pruning: {0}")]
    Prune(String),

    #[error("ONNX export of {arch}: {source}")]
    Onnx { arch: Arch, source: medkd_onnx::OnnxError },
}

fn mismatch_report(missing: &[String], unexpected: &[String], mismatched: &[ShapeMismatch]) -> String {
    let mut report = String::new();
    for (title, names) in [("missing", missing), ("unexpected", unexpected)] {
        if !names.is_empty() {
            let _ = write!(report, "\n  {title} tensors ({}): {}", names.len(), names.join(", "));
        }
    }
    if !mismatched.is_empty() {
        let _ = write!(report, "\n  mis-shaped tensors ({}):", mismatched.len());
        for m in mismatched {
            let _ = write!(report, "\n    {}: expected {:?}, found {:?}", m.name, m.expected, m.found);
        }
    }
    report
}

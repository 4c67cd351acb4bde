//! `medkd report` and `medkd compare`. The report is one self-contained HTML page per run folder (no network, plots inline as
//! SVG) with the training curves, the test split's ROC and precision-recall curves, confusion
//! matrix, reliability diagram and per-class table, attack curves and a model card. A staged
//! run (RoS-KD, relational subsets KD) gets one page with a section per stage.
//!
//! The numbers behind every plot are embedded in the page as JSON (`#medkd-data`), so tests
//! check plots by their data: the curves against scikit-learn, the confusion counts against
//! summary.json. `compare` ([`compare`]) tables runs grouped over seeds; [`prune_page`] draws
//! `medkd prune`'s sparsity curves.

mod charts;
pub mod compare;
mod error;
mod html;
mod prune;
mod run_files;
mod section;

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

pub use error::ReportError;
pub use prune::prune_page;
pub use run_files::{RunFiles, Scores, read_scores};

use crate::html::escape;

/// The page and the data behind its plots.
pub struct Report {
    pub html: String,
    pub data: Value,
}

/// The file a report is written to in its folder.
pub const REPORT_FILE: &str = "report.html";

/// The stage folders of a staged run in `folder` (`<kind>.toml` beside `student/` and
/// `teachers/<name>/`): `(label, path)`, the student first; `None` for a single run.
fn stages(folder: &Path) -> Option<Vec<(String, PathBuf)>> {
    let staged = ["roskd.toml", "rskd.toml"].iter().any(|plan| folder.join(plan).is_file());
    if !staged {
        return None;
    }
    let mut teachers: Vec<PathBuf> = std::fs::read_dir(folder.join("teachers"))
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()).collect())
        .unwrap_or_default();
    teachers.sort();
    let mut stages = vec![("student".to_string(), folder.join("student"))];
    stages.extend(teachers.into_iter().map(|path| {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        (format!("teacher {name}"), path)
    }));
    Some(stages)
}

/// The run folders a report of `folder` reads: `folder` itself, or a staged run's stages.
pub fn run_folders(folder: &Path) -> Vec<PathBuf> {
    stages(folder).map_or_else(|| vec![folder.to_path_buf()], |stages| stages.into_iter().map(|(_, path)| path).collect())
}

/// Renders the report of a finished run folder, or of a staged run's output folder.
pub fn render(folder: &Path) -> Result<Report, ReportError> {
    let name = folder.canonicalize().ok().and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())).unwrap_or_default();
    let title = format!("medkd report: {name}");
    match stages(folder) {
        None => {
            let run = RunFiles::read(folder)?;
            let (body, data) = section::run(&run, None)?;
            let body = format!("<h1>{}</h1>\n{body}", escape(&title));
            Ok(Report { html: html::page(&title, &body, &data), data })
        }
        Some(stages) => {
            let mut body = format!("<h1>{}</h1>\n", escape(&title));
            let mut finished = Vec::new();
            for (label, path) in &stages {
                if path.join("summary.json").is_file() {
                    finished.push((label, RunFiles::read(path)?));
                }
            }
            if finished.is_empty() {
                return Err(ReportError::NotARun {
                    path: folder.to_path_buf(),
                    message: "a staged run with no finished stage yet (no summary.json under student/ or teachers/)".into(),
                });
            }
            body.push_str(&section::stage_overview(&finished));
            let mut data = serde_json::Map::new();
            for (i, (label, run)) in finished.iter().enumerate() {
                let (section, stage_data) = section::run(run, Some((label, &format!("stage-{i}"))))?;
                body.push_str(&section);
                data.insert(label.to_string(), stage_data);
            }
            let data = json!({ "stages": data });
            Ok(Report { html: html::page(&title, &body, &data), data })
        }
    }
}

/// Writes `report.html` into `folder` (whole, under a temporary name first) and returns its
/// path.
pub fn write_report(folder: &Path) -> Result<PathBuf, ReportError> {
    let report = render(folder)?;
    let path = folder.join(REPORT_FILE);
    medkd_train::run_dir::write_atomic(&path, report.html.as_bytes()).map_err(|e| ReportError::invalid(&path, e.to_string()))?;
    Ok(path)
}

//! What a report reads from a finished run folder: summary.json, metrics.jsonl, the config,
//! `predictions/test.csv` and any `attack*.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use medkd_train::Summary;
use serde::Deserialize;
use serde_json::Value;

use crate::ReportError;

/// One finished run's files.
pub struct RunFiles {
    pub root: PathBuf,
    pub config: String,
    pub summary: Summary,
    pub epochs: Vec<Epoch>,
    /// The best checkpoint's test probabilities (runs written before medkd kept them have none).
    pub test: Option<Scores>,
    pub attacks: Vec<Attack>,
    /// `gallery/gallery.json` with each tile's PNG bytes.
    pub gallery: Vec<(GalleryTile, Vec<u8>)>,
}

/// One entry of `gallery/gallery.json` (medkd-train's `gallery`).
#[derive(Deserialize, serde::Serialize, Clone)]
pub struct GalleryTile {
    pub file: String,
    pub image: String,
    pub group: String,
    pub label: String,
    pub predicted: String,
    pub confidence: f32,
    pub map: [usize; 2],
    /// `grad_cam` (galleries from before ViTs have no such key) or `cls_attention`.
    #[serde(default = "grad_cam")]
    pub saliency: String,
}

fn grad_cam() -> String {
    "grad_cam".into()
}

/// One line of metrics.jsonl: the epoch's training loss, each named term, the learning rate
/// and the numeric validation metrics.
pub struct Epoch {
    pub epoch: usize,
    pub lr: f64,
    pub train_loss: f64,
    pub terms: BTreeMap<String, f64>,
    pub val: BTreeMap<String, f64>,
}

/// `predictions/<split>.csv`: per sample an id, the true class and one probability per class.
pub struct Scores {
    pub ids: Vec<String>,
    pub labels: Vec<usize>,
    /// Rows of `class_names.len()` probabilities.
    pub probs: Vec<f32>,
}

/// An attack.json: the attack's name and, per eps, the metrics under attack (eps 0: clean).
pub struct Attack {
    pub file: String,
    pub kind: String,
    /// `(eps, accuracy, balanced accuracy)`, clean first.
    pub points: Vec<(f64, f64, f64)>,
}

impl RunFiles {
    /// Reads the run folder `root`; a missing or malformed file is an error naming it.
    pub fn read(root: &Path) -> Result<RunFiles, ReportError> {
        let summary_path = root.join("summary.json");
        if !summary_path.is_file() {
            let mut runs: Vec<String> = std::fs::read_dir(root)
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.join("summary.json").is_file() || p.join("student").join("summary.json").is_file())
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect();
            runs.sort();
            let message = if runs.is_empty() {
                "no summary.json: not a finished medkd run (a run writes it after its last epoch; \
                 `medkd train --resume` finishes an interrupted one)"
                    .to_string()
            } else {
                format!("no summary.json: this folder holds runs ({}); report each, or `medkd compare` them", runs.join(", "))
            };
            return Err(ReportError::NotARun { path: root.to_path_buf(), message });
        }
        let summary = Summary::read(&summary_path).map_err(|e| ReportError::invalid(&summary_path, e.to_string()))?;
        let config_path = root.join("config.toml");
        let config = read_text(&config_path)?;
        let epochs = read_epochs(&root.join("metrics.jsonl"))?;
        let predictions = root.join("predictions").join("test.csv");
        // A localization run's predictions are boxes (image, x0 .. y1, true box, IoU), not class scores.
        let boxes = summary.test.report.get("mean_iou").is_some();
        let test = (predictions.is_file() && !boxes).then(|| read_scores(&predictions, &summary.class_names)).transpose()?;
        let mut attacks = Vec::new();
        let mut entries: Vec<PathBuf> = std::fs::read_dir(root)
            .map_err(|e| ReportError::Io { path: root.to_path_buf(), source: e })?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("attack") && n.ends_with(".json")))
            .collect();
        entries.sort();
        for path in entries {
            attacks.push(read_attack(&path)?);
        }
        let gallery = read_gallery(&root.join("gallery"))?;
        Ok(RunFiles { root: root.to_path_buf(), config, summary, epochs, test, attacks, gallery })
    }
}

fn read_text(path: &Path) -> Result<String, ReportError> {
    std::fs::read_to_string(path).map_err(|e| ReportError::Io { path: path.to_path_buf(), source: e })
}

fn read_epochs(path: &Path) -> Result<Vec<Epoch>, ReportError> {
    #[derive(Deserialize)]
    struct Line {
        epoch: usize,
        lr: f64,
        train_loss: f64,
        #[serde(default)]
        train_terms: BTreeMap<String, f64>,
        val: BTreeMap<String, Value>,
    }
    let text = read_text(path)?;
    let epochs = (text.lines().enumerate())
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            let line: Line = serde_json::from_str(line)
                .map_err(|e| ReportError::invalid(path, format!("line {}: not a medkd metrics record ({e})", i + 1)))?;
            let val = line.val.into_iter().filter_map(|(name, v)| Some((name, v.as_f64()?))).collect();
            Ok(Epoch { epoch: line.epoch, lr: line.lr, train_loss: line.train_loss, terms: line.train_terms, val })
        })
        .collect::<Result<Vec<_>, ReportError>>()?;
    if epochs.is_empty() {
        return Err(ReportError::invalid(path, "no epochs recorded"));
    }
    Ok(epochs)
}

/// Reads a `predictions/<split>.csv` of a run whose classes are `class_names`.
pub fn read_scores(path: &Path, class_names: &[String]) -> Result<Scores, ReportError> {
    let invalid = |message: String| ReportError::invalid(path, message);
    let mut reader = csv::Reader::from_path(path).map_err(|e| invalid(e.to_string()))?;
    let header = reader.headers().map_err(|e| invalid(e.to_string()))?.clone();
    let expected: Vec<&str> = ["image", "label"].into_iter().chain(class_names.iter().map(String::as_str)).collect();
    if header.iter().collect::<Vec<_>>() != expected {
        return Err(invalid(format!("header is {:?}; expected {:?} (the run's classes)", header.iter().collect::<Vec<_>>(), expected)));
    }
    let (mut ids, mut labels, mut probs) = (Vec::new(), Vec::new(), Vec::new());
    for (row, record) in reader.records().enumerate() {
        let record = record.map_err(|e| invalid(e.to_string()))?;
        let line = row + 2;
        ids.push(record[0].to_string());
        let label = class_names
            .iter()
            .position(|name| name == &record[1])
            .ok_or_else(|| invalid(format!("line {line}: label '{}' is not one of the run's classes", &record[1])))?;
        labels.push(label);
        for (c, field) in record.iter().skip(2).enumerate() {
            let p: f32 = field.parse().map_err(|_| invalid(format!("line {line}, column {}: '{field}' is not a probability", c + 3)))?;
            probs.push(p);
        }
    }
    Ok(Scores { ids, labels, probs })
}

fn read_attack(path: &Path) -> Result<Attack, ReportError> {
    #[derive(Deserialize)]
    struct Metrics {
        acc: f64,
        balanced_acc: f64,
    }
    #[derive(Deserialize)]
    struct Point {
        eps: f64,
        #[serde(flatten)]
        metrics: Metrics,
    }
    #[derive(Deserialize)]
    struct Options {
        kind: String,
    }
    #[derive(Deserialize)]
    struct File {
        options: Options,
        clean: Metrics,
        adversarial: Vec<Point>,
    }
    let file: File =
        serde_json::from_str(&read_text(path)?).map_err(|e| ReportError::invalid(path, format!("not a medkd attack report ({e})")))?;
    let points = std::iter::once((0.0, file.clean.acc, file.clean.balanced_acc))
        .chain(file.adversarial.iter().map(|p| (p.eps, p.metrics.acc, p.metrics.balanced_acc)))
        .collect();
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(Attack { file: name, kind: file.options.kind, points })
}

fn read_gallery(folder: &Path) -> Result<Vec<(GalleryTile, Vec<u8>)>, ReportError> {
    let path = folder.join("gallery.json");
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let tiles: Vec<GalleryTile> =
        serde_json::from_str(&read_text(&path)?).map_err(|e| ReportError::invalid(&path, format!("not a medkd gallery ({e})")))?;
    tiles
        .into_iter()
        .map(|tile| {
            let png = folder.join(&tile.file);
            let bytes = std::fs::read(&png).map_err(|e| ReportError::Io { path: png, source: e })?;
            Ok((tile, bytes))
        })
        .collect()
}

//! `medkd compare`: finished runs grouped into rows (a recipe over seeds), each metric's mean ±
//! sample std over the seeds, and paired differences between rows over their common seeds with
//! a paired t-test; as Markdown, CSV and HTML.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use medkd_train::Summary;
use statrs::distribution::{ContinuousCDF, StudentsT};

use crate::ReportError;
use crate::html::{escape, page, table};

/// The metrics `compare` knows: name, table header, and where a summary keeps it.
const METRICS: &[(&str, &str)] = &[
    ("acc", "accuracy"),
    ("balanced_acc", "balanced acc"),
    ("macro_f1", "macro-F1"),
    ("auc", "macro AUC"),
    ("auc_lower", "AUC CI low"),
    ("auc_upper", "AUC CI high"),
    ("ece", "ECE"),
    ("ece_at_t", "ECE at T"),
    ("temperature", "T"),
    ("loss", "loss"),
    ("many_recall", "many recall"),
    ("medium_recall", "medium recall"),
    ("few_recall", "few recall"),
    ("mean_iou", "mean IoU"),
    ("acc_at_50", "acc at IoU 0.5"),
    ("acc_at_75", "acc at IoU 0.75"),
    ("s_per_epoch", "s / epoch"),
    ("params_m", "params (M)"),
    ("mflops", "MFLOPs"),
];

pub const DEFAULT_METRICS: &[&str] = &["balanced_acc", "macro_f1", "auc", "acc", "ece"];

/// What to compare and how.
pub struct CompareOptions {
    /// Group by this config key (dotted, e.g. `train.finetune.backbone_lr_scale`), or by
    /// `dataset` (summary.json's), instead of the run folder's name without its `_s<seed>`
    /// suffix.
    pub by: Option<String>,
    pub metrics: Vec<String>,
    /// `val` or `test`.
    pub split: String,
    /// `(row, reference)`: paired differences row − reference over their common seeds.
    pub pairs: Vec<(String, String)>,
    /// Every other row paired with this one, after `pairs`.
    pub baseline: Option<String>,
}

/// One finished run as `compare` sees it.
struct Run {
    path: PathBuf,
    group: String,
    seed: u64,
    dataset: String,
    values: BTreeMap<String, f64>,
    made_by: String,
}

/// A row of the table: one group's runs by seed.
pub struct Row {
    pub name: String,
    /// `seed → metric → value`.
    pub by_seed: BTreeMap<u64, BTreeMap<String, f64>>,
}

/// A paired difference of one metric between two rows.
pub struct Paired {
    pub diffs: Vec<f64>,
    pub p_value: Option<f64>,
}

/// The comparison: rows in the order their first run was given, and the binaries and CPUs that
/// made the runs.
pub struct Comparison {
    pub metrics: Vec<String>,
    pub rows: Vec<Row>,
    pub pairs: Vec<(String, String)>,
    pub made_by: Vec<String>,
}

fn metric_value(summary: &Summary, split: &str, metric: &str) -> Option<f64> {
    let m = if split == "val" { &summary.val } else { &summary.test };
    match metric {
        "acc" => m.acc,
        "balanced_acc" => m.balanced_acc,
        "macro_f1" => m.macro_f1,
        "auc" => m.auc,
        // DeLong's 95% interval of a binary task's AUC (the report's `auc_ci`).
        "auc_lower" => m.report["auc_ci"]["lower"].as_f64(),
        "auc_upper" => m.report["auc_ci"]["upper"].as_f64(),
        "ece" => m.ece,
        "loss" => m.loss,
        "many_recall" => m.many_recall,
        "medium_recall" => m.medium_recall,
        "few_recall" => m.few_recall,
        "mean_iou" => m.mean_iou,
        "acc_at_50" => m.acc_at_50,
        "acc_at_75" => m.acc_at_75,
        "ece_at_t" if split == "test" => summary.calibration.as_ref().map(|c| c.test_ece_after),
        "temperature" => summary.calibration.as_ref().map(|c| c.temperature),
        "s_per_epoch" => Some(summary.wall_seconds / summary.epochs_run.max(1) as f64),
        "params_m" => Some(summary.params as f64 / 1e6),
        // One multiply-accumulate is two floating-point operations.
        "mflops" => Some(2.0 * summary.macs as f64 / 1e6),
        _ => None,
    }
}

/// A metric's table header: `FGSM 2/255` for `fgsm@2/255`.
pub fn header(metric: &str) -> String {
    match attack_metric(metric) {
        Some((kind, eps_text, _)) => format!("{} {eps_text}", kind.to_uppercase()),
        None => METRICS.iter().find(|(name, _)| *name == metric).map_or(metric, |(_, header)| header).to_string(),
    }
}

/// `fgsm@2/255` or `pgd@0.03`: accuracy under that attack at that eps (from the run's
/// `attack*.json`), as `(kind, eps as written, eps)`.
fn attack_metric(metric: &str) -> Option<(&str, &str, f64)> {
    let (kind, eps_text) = metric.split_once('@')?;
    if kind != "fgsm" && kind != "pgd" {
        return None;
    }
    let eps = match eps_text.split_once('/') {
        Some((a, b)) => a.parse::<f64>().ok()? / b.parse::<f64>().ok()?,
        None => eps_text.parse().ok()?,
    };
    Some((kind, eps_text, eps))
}

/// Accuracy under the attack of `kind` at `eps` in the attack reports beside `summary_path`
/// (`attack.json`, `attack_<kind>.json`, ...); `None` where no report has it.
fn attack_accuracy(summary_path: &Path, kind: &str, eps: f64) -> Result<Option<f64>, ReportError> {
    let folder = summary_path.parent().unwrap_or(Path::new("."));
    let Ok(entries) = std::fs::read_dir(folder) else { return Ok(None) };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("attack") && n.ends_with(".json")))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| ReportError::Io { path: file.clone(), source: e })?;
        let report: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| ReportError::invalid(&file, format!("not a medkd attack report ({e})")))?;
        if report["options"]["kind"] != kind {
            continue;
        }
        let points = report["adversarial"].as_array().ok_or_else(|| ReportError::invalid(&file, "no `adversarial` list"))?;
        // eps is stored as the f64 of the fraction the attack was given; 1e-9 tells 1/255 from 2/255.
        if let Some(point) = points.iter().find(|p| p["eps"].as_f64().is_some_and(|e| (e - eps).abs() < 1e-9)) {
            return Ok(point["acc"].as_f64());
        }
    }
    Ok(None)
}

/// The summary.json a run folder reports: its own, or a staged run's student's.
fn summary_path(folder: &Path) -> Result<PathBuf, ReportError> {
    [folder.join("summary.json"), folder.join("student").join("summary.json")].into_iter().find(|p| p.is_file()).ok_or_else(|| {
        ReportError::NotARun {
            path: folder.to_path_buf(),
            message: "no summary.json (nor student/summary.json): not a finished medkd run".into(),
        }
    })
}

/// The run folder's name without a trailing `_s<digits>`, the campaigns' seed suffix.
fn default_group(folder: &Path) -> String {
    let name = folder.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match name.rsplit_once("_s") {
        Some((stem, seed)) if !stem.is_empty() && !seed.is_empty() && seed.bytes().all(|b| b.is_ascii_digit()) => stem.to_string(),
        _ => name,
    }
}

/// The value at dotted `key` in the run's config.toml (array elements by index: `loss.0.kind`).
fn config_value(config_path: &Path, key: &str) -> Result<String, ReportError> {
    let text = std::fs::read_to_string(config_path).map_err(|e| ReportError::Io { path: config_path.to_path_buf(), source: e })?;
    let tree: toml::Value = toml::from_str(&text).map_err(|e| ReportError::invalid(config_path, format!("not TOML ({e})")))?;
    let mut value = &tree;
    for part in key.split('.') {
        let next = match value {
            toml::Value::Table(table) => table.get(part),
            toml::Value::Array(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        };
        value = next.ok_or_else(|| ReportError::invalid(config_path, format!("no config key `{key}` (for --by)")))?;
    }
    Ok(match value {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

fn read_run(folder: &Path, options: &CompareOptions) -> Result<Run, ReportError> {
    let path = summary_path(folder)?;
    let summary = Summary::read(&path).map_err(|e| ReportError::invalid(&path, e.to_string()))?;
    let group = match options.by.as_deref() {
        Some("dataset") => summary.dataset.clone(),
        Some(key) => config_value(&path.with_file_name("config.toml"), key)?,
        None => default_group(folder),
    };
    let mut values = BTreeMap::new();
    for metric in &options.metrics {
        let value = match attack_metric(metric) {
            Some((kind, _, eps)) => attack_accuracy(&path, kind, eps)?,
            None => metric_value(&summary, &options.split, metric),
        };
        values.extend(value.map(|v| (metric.clone(), v)));
    }
    let machine = &summary.medkd["machine"];
    let text = |v: &serde_json::Value| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string());
    let commit = text(&summary.medkd["commit"]);
    let made_by = if machine.is_object() {
        let threads = &machine["threads"];
        let plural = if threads == 1 { "" } else { "s" };
        format!("binary {commit}, {} ({}, {} thread{plural})", text(&machine["cpu_model"]), text(&machine["simd"]), text(threads))
    } else {
        format!("binary {commit} (CPU not recorded)")
    };
    Ok(Run { path, group, seed: summary.seed, dataset: summary.dataset, values, made_by })
}

/// Reads and groups the runs; refuses mixed datasets without `--by`, a seed given twice in a
/// row, unknown metrics and pairs naming a row that is not there.
pub fn compare(folders: &[PathBuf], options: &CompareOptions) -> Result<Comparison, ReportError> {
    let cli = |message: String| ReportError::invalid("medkd compare", message);
    if folders.is_empty() {
        return Err(cli("no run folders given".into()));
    }
    if options.split != "val" && options.split != "test" {
        return Err(cli(format!("--split must be val or test, got '{}'", options.split)));
    }
    for metric in &options.metrics {
        if !METRICS.iter().any(|(name, _)| name == metric) && attack_metric(metric).is_none() {
            let known: Vec<&str> = METRICS.iter().map(|(name, _)| *name).collect();
            return Err(cli(format!(
                "unknown metric '{metric}'; known: {}, and accuracy under attack as fgsm@EPS or pgd@EPS (e.g. fgsm@2/255)",
                known.join(", ")
            )));
        }
    }
    let runs = folders.iter().map(|f| read_run(f, options)).collect::<Result<Vec<_>, _>>()?;
    if options.by.is_none()
        && let Some(other) = runs.iter().find(|r| r.dataset != runs[0].dataset)
    {
        return Err(ReportError::invalid(
            &other.path,
            format!(
                "dataset '{}', but {} is dataset '{}': runs of different datasets are compared only with --by KEY naming what sets them apart",
                other.dataset,
                runs[0].path.display(),
                runs[0].dataset
            ),
        ));
    }
    let mut rows: Vec<Row> = Vec::new();
    let mut first_path: BTreeMap<(String, u64), PathBuf> = BTreeMap::new();
    for run in &runs {
        if let Some(earlier) = first_path.insert((run.group.clone(), run.seed), run.path.clone()) {
            return Err(ReportError::invalid(
                &run.path,
                format!(
                    "seed {} of row '{}' is also {}: give each seed of a row once (or --by a key that tells them apart)",
                    run.seed,
                    run.group,
                    earlier.display()
                ),
            ));
        }
        let at = match rows.iter().position(|r| r.name == run.group) {
            Some(i) => i,
            None => {
                rows.push(Row { name: run.group.clone(), by_seed: BTreeMap::new() });
                rows.len() - 1
            }
        };
        rows[at].by_seed.insert(run.seed, run.values.clone());
    }
    let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
    for (row, reference) in &options.pairs {
        for name in [row, reference] {
            if !names.contains(&name.as_str()) {
                return Err(cli(format!("--pair names row '{name}', which no run gives; rows: {}", names.join(", "))));
            }
        }
    }
    let mut pairs = options.pairs.clone();
    if let Some(reference) = &options.baseline {
        if !names.contains(&reference.as_str()) {
            return Err(cli(format!("--baseline '{reference}' is not a row; rows: {}", names.join(", "))));
        }
        pairs.extend(names.iter().filter(|name| *name != reference).map(|name| (name.to_string(), reference.clone())));
    }
    let mut made_by: Vec<String> = runs.iter().map(|r| r.made_by.clone()).collect();
    made_by.sort();
    made_by.dedup();
    Ok(Comparison { metrics: options.metrics.clone(), rows, pairs, made_by })
}

/// Sample standard deviation (ddof = 1); `None` below two values.
fn sample_std(values: &[f64]) -> Option<f64> {
    if values.len() < 2 {
        return None;
    }
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    Some((values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (values.len() - 1) as f64).sqrt())
}

/// Two-sided p-value of the paired t-test on `diffs` (scipy's `ttest_rel`); `None` below two
/// pairs or when every difference is the same (no spread to test against).
pub fn paired_t_p_value(diffs: &[f64]) -> Option<f64> {
    let std = sample_std(diffs)?;
    if std == 0.0 {
        return None;
    }
    let n = diffs.len() as f64;
    let t = diffs.iter().sum::<f64>() / n / (std / n.sqrt());
    let dist = StudentsT::new(0.0, 1.0, n - 1.0).ok()?;
    Some(2.0 * dist.cdf(-t.abs()))
}

impl Row {
    fn seeds(&self) -> String {
        self.by_seed.keys().map(u64::to_string).collect::<Vec<_>>().join(",")
    }

    fn values(&self, metric: &str) -> Vec<f64> {
        self.by_seed.values().filter_map(|m| m.get(metric).copied()).collect()
    }
}

impl Comparison {
    fn row(&self, name: &str) -> &Row {
        self.rows.iter().find(|r| r.name == name).expect("compare checked the pairs' rows")
    }

    /// The seeds both rows have.
    fn common_seeds(&self, row: &str, reference: &str) -> Vec<u64> {
        let (a, b) = (self.row(row), self.row(reference));
        a.by_seed.keys().filter(|s| b.by_seed.contains_key(s)).copied().collect()
    }

    pub fn paired(&self, row: &str, reference: &str, metric: &str) -> Paired {
        let (a, b) = (self.row(row), self.row(reference));
        let diffs: Vec<f64> =
            self.common_seeds(row, reference).iter().filter_map(|s| Some(a.by_seed[s].get(metric)? - b.by_seed[s].get(metric)?)).collect();
        Paired { p_value: paired_t_p_value(&diffs), diffs }
    }

    /// `mean ± std` to 3 decimals (`x (1 seed)` for one run, `–` for none), as the results page
    /// prints them.
    fn cell(values: &[f64]) -> String {
        match values {
            [] => "–".into(),
            [one] => format!("{one:.3} (1 seed)"),
            _ => format!("{:.3} ± {:.3}", values.iter().sum::<f64>() / values.len() as f64, sample_std(values).expect("two or more")),
        }
    }

    /// `+mean ± std (higher/n, p P)`.
    fn paired_cell(paired: &Paired) -> String {
        let d = &paired.diffs;
        if d.is_empty() {
            return "–".into();
        }
        let mean = d.iter().sum::<f64>() / d.len() as f64;
        let spread = sample_std(d).map_or(String::new(), |s| format!(" ± {s:.3}"));
        let p = match paired.p_value {
            Some(p) if p < 0.01 => ", p < 0.01".to_string(),
            Some(p) => format!(", p {p:.2}"),
            None => String::new(),
        };
        format!("{mean:+.3}{spread} ({}/{}{p})", d.iter().filter(|&&x| x > 0.0).count(), d.len())
    }

    /// The row table and the paired table, header rows first (cells as in [`Self::markdown`]).
    pub fn tables(&self) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
        let headers: Vec<String> = self.metrics.iter().map(|m| header(m)).collect();
        let mut rows = vec![["row".to_string(), "seeds".to_string()].into_iter().chain(headers.iter().cloned()).collect::<Vec<_>>()];
        for row in &self.rows {
            let mut cells = vec![row.name.clone(), row.seeds()];
            cells.extend(self.metrics.iter().map(|m| Self::cell(&row.values(m))));
            rows.push(cells);
        }
        let mut paired = vec![["row − reference".to_string(), "seeds".to_string()].into_iter().chain(headers).collect::<Vec<_>>()];
        for (row, reference) in &self.pairs {
            let seeds = self.common_seeds(row, reference).iter().map(u64::to_string).collect::<Vec<_>>().join(",");
            let mut cells = vec![format!("{row} − {reference}"), seeds];
            cells.extend(self.metrics.iter().map(|m| Self::paired_cell(&self.paired(row, reference, m))));
            paired.push(cells);
        }
        (rows, paired)
    }

    pub fn markdown(&self) -> String {
        let (rows, paired) = self.tables();
        let mut out = markdown_table(&rows);
        if paired.len() > 1 {
            out.push_str("\nPaired differences (row − reference over their common seeds: mean ± std, seeds where the row is higher, paired t-test p):\n\n");
            out.push_str(&markdown_table(&paired));
        }
        let _ = write!(out, "\nMade by: {}\n", self.made_by.join("; "));
        out
    }

    /// Long format: one line per row (or pair) and metric, with every seed's value.
    pub fn csv(&self) -> String {
        let mut writer = csv::Writer::from_writer(Vec::new());
        let _ = writer.write_record(["row", "reference", "metric", "seeds", "n", "mean", "std", "higher", "p_value", "values"]);
        let join = |values: &[f64]| values.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(";");
        let opt = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
        for row in &self.rows {
            for metric in &self.metrics {
                let values = row.values(metric);
                let mean = (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64);
                let record = [
                    &row.name,
                    "",
                    metric,
                    &row.seeds(),
                    &values.len().to_string(),
                    &opt(mean),
                    &opt(sample_std(&values)),
                    "",
                    "",
                    &join(&values),
                ];
                let _ = writer.write_record(record);
            }
        }
        for (row, reference) in &self.pairs {
            let seeds = self.common_seeds(row, reference).iter().map(u64::to_string).collect::<Vec<_>>().join(",");
            for metric in &self.metrics {
                let p = self.paired(row, reference, metric);
                let mean = (!p.diffs.is_empty()).then(|| p.diffs.iter().sum::<f64>() / p.diffs.len() as f64);
                let higher = p.diffs.iter().filter(|&&d| d > 0.0).count().to_string();
                let record = [
                    row,
                    reference,
                    metric,
                    &seeds,
                    &p.diffs.len().to_string(),
                    &opt(mean),
                    &opt(sample_std(&p.diffs)),
                    &higher,
                    &opt(p.p_value),
                    &join(&p.diffs),
                ];
                let _ = writer.write_record(record);
            }
        }
        String::from_utf8(writer.into_inner().expect("writing to memory")).expect("CSV of UTF-8 fields")
    }

    pub fn html(&self) -> String {
        let (rows, paired) = self.tables();
        let escaped = |t: &[Vec<String>]| t.iter().map(|r| r.iter().map(|c| escape(c)).collect()).collect::<Vec<Vec<String>>>();
        let mut body = format!("<h1>medkd compare</h1>{}", table(&escaped(&rows)));
        if paired.len() > 1 {
            let _ = write!(
                body,
                "<h2>Paired differences</h2><p class=\"note\">Row − reference over their common seeds: mean ± std, seeds where the row is higher, paired t-test p.</p>{}",
                table(&escaped(&paired))
            );
        }
        let _ = write!(body, "<p class=\"note\">Made by: {}</p>", escape(&self.made_by.join("; ")));
        page("medkd compare", &body, &serde_json::Value::Null)
    }
}

fn markdown_table(rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        let _ = writeln!(out, "| {} |", row.join(" | "));
        if i == 0 {
            let _ = writeln!(out, "|{}", "---|".repeat(row.len()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_suffix_is_the_default_group() {
        assert_eq!(default_group(Path::new("results/pretrained/pretrained_x0.1_s2")), "pretrained_x0.1");
        assert_eq!(default_group(Path::new("results/longtail/ham10000_s0/rskd_ce")), "rskd_ce");
        assert_eq!(default_group(Path::new("runs/demo_s")), "demo_s");
        assert_eq!(default_group(Path::new("runs/_s1")), "_s1");
    }

    #[test]
    fn cells_as_the_results_page_prints_them() {
        assert_eq!(Comparison::cell(&[0.5, 0.6, 0.7]), "0.600 ± 0.100");
        assert_eq!(Comparison::cell(&[0.25]), "0.250 (1 seed)");
        assert_eq!(Comparison::cell(&[]), "–");
        let paired = Paired { diffs: vec![0.01, 0.03, -0.01], p_value: Some(0.4226) };
        assert_eq!(Comparison::paired_cell(&paired), "+0.010 ± 0.020 (2/3, p 0.42)");
        let sure = Paired { diffs: vec![0.1, 0.11, 0.1], p_value: Some(0.0004) };
        assert_eq!(Comparison::paired_cell(&sure), "+0.103 ± 0.006 (3/3, p < 0.01)");
    }

    #[test]
    fn no_p_value_without_spread() {
        assert_eq!(paired_t_p_value(&[0.1]), None);
        assert_eq!(paired_t_p_value(&[0.1, 0.1]), None);
    }
}

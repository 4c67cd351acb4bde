//! The page of `medkd prune` (`report.html` beside `prune.json`): box IoU and the dense/pruned
//! agreement against sparsity for each run of the population, and the hard-to-learn counts.

use serde::Deserialize;
use serde_json::Value;

use crate::charts::{LineChart, Series, fitted_range};
use crate::html::{escape, figure, number, page, table};

/// One row of `prune.json`'s `curve`.
#[derive(Deserialize)]
struct CurveRow {
    run: String,
    reached: f64,
    mean_iou: f64,
    mean_agreement: f64,
}

/// The page for `report`, the `prune.json` value; an error names the field that is not as
/// `medkd prune` writes it.
pub fn prune_page(report: &Value) -> Result<String, String> {
    let rows: Vec<CurveRow> = serde_json::from_value(report["curve"].clone()).map_err(|e| format!("prune.json `curve`: {e}"))?;
    let runs: Vec<String> = serde_json::from_value(report["runs"].clone()).map_err(|e| format!("prune.json `runs`: {e}"))?;
    let series = |value: fn(&CurveRow) -> f64| -> Vec<Series> {
        (runs.iter())
            .map(|run| Series { name: run.clone(), points: rows.iter().filter(|r| &r.run == run).map(|r| (r.reached, value(r))).collect() })
            .collect()
    };
    let chart = |title: &str, y_label: &str, series: Vec<Series>| {
        let y = fitted_range(series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).chain([0.0, 1.0]));
        LineChart {
            title,
            x_label: "sparsity (share of conv and linear weights zero)",
            y_label,
            x: 0.0..1.0,
            y,
            series,
            marker: None,
            diagonal: false,
            integer_x: false,
        }
        .svg()
    };
    let iou = chart("Box IoU against sparsity", "mean IoU with the true box", series(|r| r.mean_iou))?;
    let agreement = chart("Dense and pruned boxes agree", "mean IoU, dense vs pruned box", series(|r| r.mean_agreement))?;
    let per_run = report["htl_per_run"].as_array().cloned().unwrap_or_default();
    let mut counts = vec![vec!["run".to_string(), format!("HTL at sparsity {}", report["htl_sparsity"])]];
    counts.extend(runs.iter().zip(&per_run).map(|(run, n)| vec![escape(run), n.to_string()]));
    counts.push(vec!["population (most runs)".into(), report["htl"].to_string()]);
    let mut overlaps = vec![vec!["runs".to_string(), "Jaccard overlap of their HTL sets".to_string()]];
    for pair in report["overlap"].as_array().into_iter().flatten() {
        let names: Vec<String> = pair["runs"].as_array().into_iter().flatten().filter_map(|r| r.as_str()).map(escape).collect();
        overlaps.push(vec![names.join(" / "), number(pair["jaccard"].as_f64())]);
    }
    let body = format!(
        "<h1>Pruning a population of localization runs</h1>\n<p class=\"note\">{} images of the {} split; an image is hard to learn (HTL) \
         for a run when its pruned box overlaps its dense box with IoU below {}.</p>\n<div class=\"plots\">{}{}</div>\n<h2>Hard-to-learn images</h2>\n{}\n{}",
        report["samples"],
        escape(report["split"].as_str().unwrap_or("?")),
        report["agreement"],
        figure("prune_iou", &iou),
        figure("prune_agreement", &agreement),
        table(&counts),
        table(&overlaps),
    );
    Ok(page("medkd prune", &body, report))
}

//! One run's section of the page: model card, metrics, training curves, test-split plots,
//! attack curves and the config, each with the data it was drawn from.

use std::fmt::Write;

use medkd_eval::{average_precision, precision_recall_curve, reliability_bins, roc_curve, scale_temperature};
use serde_json::{Value, json};

use crate::ReportError;
use crate::charts::{LineChart, Series, fitted_range, reliability_svg};
use crate::html::{escape, figure, number, table};
use crate::run_files::RunFiles;

type Section = (String, Value);

fn render_error(run: &RunFiles, what: &str, message: String) -> ReportError {
    ReportError::invalid(&run.root, format!("drawing {what}: {message}"))
}

/// The section of `run`; `stage` = `(label, anchor)` within a staged run's page.
pub fn run(run: &RunFiles, stage: Option<(&str, &str)>) -> Result<Section, ReportError> {
    let mut html = String::new();
    let mut data = serde_json::Map::new();
    if let Some((label, anchor)) = stage {
        let _ = write!(html, "<section id=\"{}\"><h2>{}</h2>", escape(anchor), escape(label));
    } else {
        html.push_str("<section>");
    }
    html.push_str(&model_card(run));
    html.push_str(&metrics_table(run));
    html.push_str(&training_curves(run, &mut data)?);
    html.push_str(&test_plots(run, &mut data)?);
    html.push_str(&gallery(run, &mut data));
    html.push_str(&attacks(run, &mut data)?);
    let _ = writeln!(
        html,
        "<h3>Config</h3><p class=\"note\">Reproduce with <code>medkd train --config {}</code>.</p><details><summary>config.toml</summary><pre>{}</pre></details></section>",
        escape(&run.root.join("config.toml").display().to_string()),
        escape(&run.config)
    );
    Ok((html, Value::Object(data)))
}

/// A staged run's table of every finished stage's test metrics.
pub fn stage_overview(stages: &[(&String, RunFiles)]) -> String {
    let mut rows = vec![["stage", "model", "balanced acc", "macro-F1", "AUC", "accuracy"].map(String::from).to_vec()];
    for (i, (label, run)) in stages.iter().enumerate() {
        let test = &run.summary.test;
        rows.push(vec![
            format!("<a href=\"#stage-{i}\">{}</a>", escape(label)),
            escape(&run.summary.model.to_string()),
            number(test.balanced_acc),
            number(test.macro_f1),
            number(test.auc),
            number(test.acc),
        ]);
    }
    format!("<h2>Stages (test split)</h2>{}", table(&rows))
}

fn model_card(run: &RunFiles) -> String {
    let s = &run.summary;
    let machine = &s.medkd["machine"];
    let text = |v: &Value| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string());
    let split_size = |report: &Value| report["n"].as_u64().map_or("–".into(), |n| n.to_string());
    let seeds = format!(
        "{} (model init {}, shuffle and augmentation {}, split {})",
        s.seed,
        s.seeds.model_init,
        s.seeds.shuffle_and_augment,
        s.seeds.split.map_or("given by the data".into(), |seed| seed.to_string())
    );
    let best = s.best_epoch.map_or("none".into(), |e| format!("{} of {}", e + 1, s.epochs_run));
    let rows = [
        ("Data", format!("{}: {} classes ({}); val {} and test {} images", s.dataset, s.class_names.len(), s.class_names.join(", "), split_size(&s.val.report), split_size(&s.test.report))),
        ("Model", format!("{}, input {}×{}×{}, {:.2} M parameters, {:.1} M MACs per image", s.model, s.input_channels, s.input_size[0], s.input_size[1], s.params as f64 / 1e6, s.macs as f64 / 1e6)),
        ("Input", s.normalization.as_ref().map_or("normalization not recorded (a run of an older medkd)".into(), |n| format!("values in [0, 1] after the eval transforms, then per channel (x − mean) / std with mean {:?} and std {:?}", n.mean, n.std))),
        ("Weights kept", format!("epoch {best} by validation {}{}", s.select_metric, s.weight_averaging.as_ref().map_or(String::new(), |a| format!(", weight average {a}")))),
        ("Training time", format!("{:.0} s ({:.1} s per epoch)", s.wall_seconds, s.wall_seconds / s.epochs_run.max(1) as f64)),
        ("Seeds", seeds),
        ("Built by", format!("medkd {} (commit {}) on {} ({}, {} threads)", text(&s.medkd["version"]), text(&s.medkd["commit"]), text(&machine["cpu_model"]), text(&machine["simd"]), text(&machine["threads"]))),
        ("Intended use", "Research on the dataset above. Not a medical device: the metrics are from held-out splits of one dataset, not from an external hospital, and say nothing of images from other scanners, clinics or populations until measured there.".into()),
    ];
    let mut html = String::from("<h3>Model card</h3><table class=\"card\">");
    for (key, value) in rows {
        let _ = write!(html, "<tr><th>{}</th><td>{}</td></tr>", escape(key), escape(&value));
    }
    html.push_str("</table>");
    html
}

fn metrics_table(run: &RunFiles) -> String {
    let s = &run.summary;
    let mut rows = vec![["split", "accuracy", "balanced acc", "macro-F1", "AUC", "ECE", "loss"].map(String::from).to_vec()];
    for (name, m) in [("val", &s.val), ("test", &s.test)] {
        rows.push(vec![
            name.into(),
            number(m.acc),
            number(m.balanced_acc),
            number(m.macro_f1),
            number(m.auc),
            number(m.ece),
            number(m.loss),
        ]);
    }
    let mut html = format!("<h3>Metrics of the kept weights</h3>{}", table(&rows));
    if let Some(c) = &s.calibration {
        let _ = write!(
            html,
            "<p class=\"note\">Temperature scaling fitted on val: T = {:.3}; val NLL {:.4} → {:.4}; test ECE {:.4} → {:.4} (eval and predict apply it; accuracy and AUC do not change).</p>",
            c.temperature, c.val_nll_before, c.val_nll_after, c.test_ece_before, c.test_ece_after
        );
    }
    html
}

fn training_curves(run: &RunFiles, data: &mut serde_json::Map<String, Value>) -> Result<String, ReportError> {
    let epochs = &run.epochs;
    let x = |e: usize| (e + 1) as f64;
    let x_range = 0.5..(epochs.iter().map(|e| x(e.epoch)).fold(1.0, f64::max) + 0.5);
    let marker = run.summary.best_epoch.map(|e| (x(e), format!("kept: epoch {}", e + 1)));
    let mut losses = vec![Series { name: "train loss".into(), points: epochs.iter().map(|e| (x(e.epoch), e.train_loss)).collect() }];
    let terms: Vec<&String> = epochs[0].terms.keys().collect();
    if terms.len() > 1 {
        for term in &terms {
            let points = epochs.iter().filter_map(|e| Some((x(e.epoch), *e.terms.get(*term)?))).collect();
            losses.push(Series { name: format!("term {term}"), points });
        }
    }
    let val_loss: Vec<(f64, f64)> = epochs.iter().filter_map(|e| Some((x(e.epoch), *e.val.get("loss")?))).collect();
    if !val_loss.is_empty() {
        losses.push(Series { name: "val loss".into(), points: val_loss });
    }
    let mut names: Vec<&String> = epochs.iter().flat_map(|e| e.val.keys()).filter(|k| *k != "loss").collect();
    names.sort();
    names.dedup();
    let metrics: Vec<Series> = names
        .iter()
        .map(|name| Series {
            name: name.to_string(),
            points: epochs.iter().filter_map(|e| Some((x(e.epoch), *e.val.get(*name)?))).collect(),
        })
        .collect();
    let lr = vec![Series { name: "learning rate".into(), points: epochs.iter().map(|e| (x(e.epoch), e.lr)).collect() }];
    let charts = [
        (
            "loss",
            LineChart {
                title: "Loss per epoch",
                x_label: "epoch",
                y_label: "loss",
                x: x_range.clone(),
                y: fitted_range(losses.iter().flat_map(|s| s.points.iter().map(|p| p.1))),
                series: losses,
                marker: marker.clone(),
                diagonal: false,
                integer_x: true,
            },
        ),
        (
            "val_metrics",
            LineChart {
                title: "Validation metrics per epoch",
                x_label: "epoch",
                y_label: "value",
                x: x_range.clone(),
                y: fitted_range(metrics.iter().flat_map(|s| s.points.iter().map(|p| p.1)).chain([0.0, 1.0])),
                series: metrics,
                marker,
                diagonal: false,
                integer_x: true,
            },
        ),
        (
            "lr",
            LineChart {
                title: "Learning rate (end of epoch)",
                x_label: "epoch",
                y_label: "lr",
                x: x_range,
                y: fitted_range(lr[0].points.iter().map(|p| p.1).chain([0.0])),
                series: lr,
                marker: None,
                diagonal: false,
                integer_x: true,
            },
        ),
    ];
    let mut html = String::from("<h3>Training</h3><div class=\"plots\">");
    for (kind, chart) in &charts {
        html.push_str(&figure(kind, &chart.svg().map_err(|e| render_error(run, kind, e))?));
        let series: Vec<Value> = chart.series.iter().map(|s| json!({ "name": s.name, "points": s.points })).collect();
        data.insert((*kind).into(), json!(series));
    }
    html.push_str("</div>");
    Ok(html)
}

fn test_plots(run: &RunFiles, data: &mut serde_json::Map<String, Value>) -> Result<String, ReportError> {
    let s = &run.summary;
    let mut html = String::from("<h3>Test split</h3>");
    if let Some(confusion) = confusion_of(&s.test.report) {
        html.push_str(&confusion_heat_map(&confusion, &s.class_names));
        data.insert("confusion".into(), json!(confusion));
    }
    if let Some(per_class) = s.test.report["per_class"].as_array().or(s.test.report["per_label"].as_array()) {
        html.push_str(&per_class_table(per_class));
    }
    if s.test.report.get("mean_iou").is_some() {
        html.push_str(
            "<p class=\"note\">A localization run: each test image's predicted and true box and their IoU are in predictions/test.csv.</p>",
        );
        return Ok(html);
    }
    let Some(scores) = &run.test else {
        html.push_str("<p class=\"note\">No predictions/test.csv in this run folder (runs of medkd before it kept one): no ROC, precision-recall or reliability plots. <code>medkd report</code> writes it from the best checkpoint.</p>");
        return Ok(html);
    };
    let k = s.class_names.len();
    let mut roc_series = Vec::new();
    let mut pr_series = Vec::new();
    let (mut roc_data, mut pr_data) = (Vec::new(), Vec::new());
    for (c, class) in s.class_names.iter().enumerate() {
        let pairs: Vec<(f32, bool)> = scores.labels.iter().enumerate().map(|(i, &y)| (scores.probs[i * k + c], y == c)).collect();
        if let Some(roc) = roc_curve(&pairs) {
            let auc = s.test.report["per_class"][c]["auc"].as_f64();
            roc_series.push(Series {
                name: format!("{class} (AUC {})", number(auc)),
                points: roc.fpr.iter().copied().zip(roc.tpr.iter().copied()).collect(),
            });
            roc_data.push(json!({ "class": class, "auc": auc, "curve": roc }));
        }
        if let (Some(pr), Some(ap)) = (precision_recall_curve(&pairs), average_precision(&pairs)) {
            pr_series.push(Series {
                name: format!("{class} (AP {ap:.3})"),
                points: pr.recall.iter().copied().zip(pr.precision.iter().copied()).collect(),
            });
            pr_data.push(json!({ "class": class, "average_precision": ap, "curve": pr }));
        }
    }
    data.insert("roc".into(), json!(roc_data));
    data.insert("pr".into(), json!(pr_data));
    let mut charts = vec![
        (
            "roc",
            LineChart {
                title: "ROC, one class against the rest",
                x_label: "false positive rate",
                y_label: "true positive rate",
                x: 0.0..1.0,
                y: 0.0..1.0,
                series: roc_series,
                marker: None,
                diagonal: true,
                integer_x: false,
            },
        ),
        (
            "pr",
            LineChart {
                title: "Precision-recall, one class against the rest",
                x_label: "recall",
                y_label: "precision",
                x: 0.0..1.0,
                y: 0.0..1.0,
                series: pr_series,
                marker: None,
                diagonal: false,
                integer_x: false,
            },
        ),
    ];
    let mut figures: Vec<(String, String)> = Vec::new();
    for (kind, chart) in charts.drain(..) {
        figures.push((kind.into(), chart.svg().map_err(|e| render_error(run, kind, e))?));
    }
    let mut reliability = serde_json::Map::new();
    let mut panels = vec![("reliability", "Reliability (as trained)", 1.0)];
    if let Some(c) = &s.calibration {
        panels.push(("reliability_calibrated", "Reliability at the fitted temperature", c.temperature));
    }
    for (kind, title, t) in panels {
        let probs = if t == 1.0 { scores.probs.clone() } else { scale_temperature(&scores.probs, k, t) };
        let top = top_class(&probs, &scores.labels, k);
        let ece = medkd_eval::expected_calibration_error(top.iter().copied());
        let title = format!("{title}: ECE {ece:.4}");
        let bins = reliability_bins(top);
        let drawn: Vec<(f64, f64, f64, u64)> = bins.iter().map(|b| (b.lower, b.upper, b.accuracy, b.count)).collect();
        figures.push((kind.into(), reliability_svg(&title, &drawn).map_err(|e| render_error(run, kind, e))?));
        reliability.insert(kind.into(), json!({ "temperature": t, "ece": ece, "bins": bins }));
    }
    data.insert("reliability".into(), Value::Object(reliability));
    html.push_str("<div class=\"plots\">");
    for (kind, svg) in &figures {
        html.push_str(&figure(kind, svg));
    }
    html.push_str("</div>");
    Ok(html)
}

/// `(top-class probability, was it right)` per sample.
fn top_class(probs: &[f32], labels: &[usize], k: usize) -> Vec<(f32, bool)> {
    (probs.chunks_exact(k).zip(labels))
        .map(|(row, &label)| {
            let top = (0..k).fold(0, |top, c| if row[c] > row[top] { c } else { top });
            (row[top], top == label)
        })
        .collect()
}

fn confusion_of(report: &Value) -> Option<Vec<Vec<u64>>> {
    report["confusion"].as_array()?.iter().map(|row| row.as_array()?.iter().map(Value::as_u64).collect()).collect()
}

/// The confusion matrix as a table whose cells are shaded by the row's fraction (the class's
/// recall on the diagonal).
fn confusion_heat_map(confusion: &[Vec<u64>], class_names: &[String]) -> String {
    let mut html = String::from(
        "<figure data-plot=\"confusion\"><figcaption>Confusion matrix: rows true class, columns predicted; shade = fraction of the row</figcaption><table class=\"heat\"><tr><th>true \\ predicted</th>",
    );
    for name in class_names {
        let _ = write!(html, "<th>{}</th>", escape(name));
    }
    html.push_str("</tr>");
    for (name, row) in class_names.iter().zip(confusion) {
        let total = row.iter().sum::<u64>().max(1) as f64;
        let _ = write!(html, "<tr><th>{}</th>", escape(name));
        for &count in row {
            let share = count as f64 / total;
            let ink = if share > 0.55 { "#fff" } else { "#222" };
            let _ = write!(html, "<td style=\"background:rgba(31,119,180,{share:.3});color:{ink}\">{count}</td>");
        }
        html.push_str("</tr>");
    }
    html.push_str("</table></figure>");
    html
}

fn per_class_table(per_class: &[Value]) -> String {
    let mut rows = vec![["class", "precision", "recall", "F1", "AUC", "support"].map(String::from).to_vec()];
    for class in per_class {
        rows.push(vec![
            escape(class["name"].as_str().unwrap_or("")),
            number(class["precision"].as_f64()),
            number(class["recall"].as_f64()),
            number(class["f1"].as_f64()),
            number(class["auc"].as_f64()),
            class["support"].as_u64().map_or("–".into(), |n| n.to_string()),
        ]);
    }
    table(&rows)
}

fn attacks(run: &RunFiles, data: &mut serde_json::Map<String, Value>) -> Result<String, ReportError> {
    if run.attacks.is_empty() {
        return Ok(String::new());
    }
    let mut series = Vec::new();
    let mut kept = Vec::new();
    for attack in &run.attacks {
        series
            .push(Series { name: format!("{} accuracy", attack.kind), points: attack.points.iter().map(|p| (p.0 * 255.0, p.1)).collect() });
        series.push(Series {
            name: format!("{} balanced acc", attack.kind),
            points: attack.points.iter().map(|p| (p.0 * 255.0, p.2)).collect(),
        });
        kept.push(json!({ "file": attack.file, "kind": attack.kind, "eps_acc_balanced_acc": attack.points }));
    }
    let chart = LineChart {
        title: "Accuracy under attack (test split)",
        x_label: "eps × 255",
        y_label: "value",
        x: fitted_range(series.iter().flat_map(|s| s.points.iter().map(|p| p.0))),
        y: 0.0..1.0,
        series,
        marker: None,
        diagonal: false,
        integer_x: false,
    };
    data.insert("attacks".into(), json!(kept));
    let svg = chart.svg().map_err(|e| render_error(run, "attacks", e))?;
    Ok(format!("<h3>Robustness</h3><div class=\"plots\">{}</div>", figure("attacks", &svg)))
}

/// The gallery's tiles, grouped, each PNG inline and captioned with true and predicted class.
fn gallery(run: &RunFiles, data: &mut serde_json::Map<String, Value>) -> String {
    use base64::Engine;
    if run.gallery.is_empty() {
        return String::new();
    }
    let attention = run.gallery.first().is_some_and(|(tile, _)| tile.saliency == "cls_attention");
    let what = if attention {
        "The last block's attention from the CLS token (which the head reads) to each patch, averaged over the heads, red where it is high; the same map for every class"
    } else {
        "Grad-CAM of the predicted class on the last feature map, red where it raises that class's score"
    };
    let mut html = format!(
        "<h3>Test images and where the model looks</h3><p class=\"note\">{what}; confidence is the model's own probability (before temperature scaling).</p><figure data-plot=\"gallery\">",
    );
    if let Some((tile, _)) = run.gallery.first() {
        let [h, w] = tile.map;
        let map = if attention { "The patch grid" } else { "The last feature map" };
        let _ = write!(html, "<figcaption>{map} is {h}×{w} at this input size");
        html.push_str(if h * w == 1 {
            ": one cell, so the map cannot point anywhere (a larger input or the small-input stem gives one that can).</figcaption>"
        } else {
            ".</figcaption>"
        });
    }
    let mut group = "";
    for (tile, png) in &run.gallery {
        if tile.group != group {
            if !group.is_empty() {
                html.push_str("</div>");
            }
            group = &tile.group;
            let _ = write!(html, "<h4>{}</h4><div class=\"plots\">", escape(group));
        }
        let _ = write!(
            html,
            "<figure class=\"tile\"><img alt=\"{image}\" src=\"data:image/png;base64,{data}\"><figcaption>{image}<br>true {label}<br>predicted {predicted} ({confidence:.2})</figcaption></figure>",
            image = escape(&tile.image),
            data = base64::engine::general_purpose::STANDARD.encode(png),
            label = escape(&tile.label),
            predicted = escape(&tile.predicted),
            confidence = tile.confidence
        );
    }
    html.push_str("</div></figure>");
    data.insert("gallery".into(), json!(run.gallery.iter().map(|(tile, _)| tile.clone()).collect::<Vec<_>>()));
    html
}

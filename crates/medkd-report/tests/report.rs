//! The report of a real run (the README demo, tests/fixtures/demo_run), checked by the data
//! behind its plots: ROC and precision-recall curves against scikit-learn
//! (tools/golden/report_curves_golden.py), the confusion counts against summary.json, and bad
//! run folders refused with the file named.

use std::path::{Path, PathBuf};

use medkd_report::{ReportError, render, write_report};
use serde_json::Value;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/demo_run")
}

/// A copy of the fixture in a temporary folder, for tests that change or add files.
fn copy_fixture(to: &Path) {
    for entry in walk(&fixture()) {
        let target = to.join(entry.strip_prefix(fixture()).unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&entry, &target).unwrap();
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { files.extend(walk(&path)) } else { files.push(path) }
    }
    files
}

/// The JSON the page embeds in `#medkd-data`.
fn embedded_data(html: &str) -> Value {
    let start = html.find("<script type=\"application/json\" id=\"medkd-data\">").expect("the data element");
    let rest = &html[start..];
    let body = &rest[rest.find('>').unwrap() + 1..rest.find("</script>").unwrap()];
    serde_json::from_str(body).expect("the embedded data is JSON")
}

fn floats(value: &Value) -> Vec<Option<f64>> {
    value.as_array().expect("an array").iter().map(Value::as_f64).collect()
}

fn assert_close(ours: &Value, golden: &Value, tolerance: f64, what: &str) {
    let (ours, golden) = (floats(ours), floats(golden));
    assert_eq!(ours.len(), golden.len(), "{what}: {} points, scikit-learn has {}", ours.len(), golden.len());
    for (i, (a, b)) in ours.iter().zip(&golden).enumerate() {
        match (a, b) {
            (Some(a), Some(b)) => assert!((a - b).abs() <= tolerance, "{what}[{i}]: {a} vs scikit-learn {b}"),
            (None, None) => {}
            _ => panic!("{what}[{i}]: {a:?} vs scikit-learn {b:?}"),
        }
    }
}

#[test]
fn curves_match_scikit_learn_and_confusion_matches_summary() {
    let golden: Value = serde_json::from_str(include_str!("golden/demo_curves.json")).unwrap();
    let report = render(&fixture()).unwrap();
    // The page carries the same data it was rendered with.
    assert_eq!(embedded_data(&report.html), report.data);
    let data = &report.data;
    for (c, class) in golden["classes"].as_array().unwrap().iter().enumerate() {
        let (roc, golden_roc) = (&data["roc"][c], &golden["roc"][c]);
        assert_eq!(roc["class"], *class);
        // Rates are ratios of counts: exact. Thresholds are the CSV's float32 values, which
        // scikit-learn read as float64.
        assert_close(&roc["curve"]["fpr"], &golden_roc["fpr"], 0.0, "fpr");
        assert_close(&roc["curve"]["tpr"], &golden_roc["tpr"], 0.0, "tpr");
        assert_close(&roc["curve"]["thresholds"], &golden_roc["thresholds"], 1e-7, "ROC thresholds");
        let (pr, golden_pr) = (&data["pr"][c], &golden["pr"][c]);
        assert_close(&pr["curve"]["precision"], &golden_pr["precision"], 1e-15, "precision");
        assert_close(&pr["curve"]["recall"], &golden_pr["recall"], 1e-15, "recall");
        assert_close(&pr["curve"]["thresholds"], &golden_pr["thresholds"], 1e-7, "PR thresholds");
        let ap = pr["average_precision"].as_f64().unwrap();
        assert!((ap - golden_pr["average_precision"].as_f64().unwrap()).abs() < 1e-12, "AP {ap}");
    }
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(fixture().join("summary.json")).unwrap()).unwrap();
    assert_eq!(data["confusion"], summary["test"]["report"]["confusion"]);
    assert_eq!(data["confusion"], golden["confusion"]);
}

#[test]
fn every_plot_is_on_the_page() {
    let report = render(&fixture()).unwrap();
    for kind in ["loss", "val_metrics", "lr", "confusion", "roc", "pr", "reliability", "reliability_calibrated", "attacks", "gallery"] {
        assert_eq!(report.html.matches(&format!("data-plot=\"{kind}\"")).count(), 1, "plot {kind}");
    }
    // Self-contained: nothing fetched from elsewhere, no script that runs.
    for outside in ["src=\"http", "href=\"http", "url(http", "<link", "@import"] {
        assert!(!report.html.contains(outside), "the page refers to {outside}");
    }
    assert!(!report.html.contains("<script>"));
    // The loss curve has one point per recorded epoch, on 1-based epochs.
    let epochs = std::fs::read_to_string(fixture().join("metrics.jsonl")).unwrap().lines().count();
    let train = &report.data["loss"][0];
    assert_eq!(train["name"], "train loss");
    assert_eq!(train["points"].as_array().unwrap().len(), epochs);
    assert_eq!(train["points"][0][0], 1.0);
    // The attack curve starts at the clean metrics (eps 0), then follows attack.json.
    let attack: Value = serde_json::from_str(&std::fs::read_to_string(fixture().join("attack.json")).unwrap()).unwrap();
    let points = &report.data["attacks"][0]["eps_acc_balanced_acc"];
    assert_eq!(points[0], serde_json::json!([0.0, attack["clean"]["acc"], attack["clean"]["balanced_acc"]]));
    assert_eq!(points.as_array().unwrap().len(), 1 + attack["adversarial"].as_array().unwrap().len());
    // The reliability bins count every test image; the calibrated panel uses summary.json's T.
    let bins = report.data["reliability"]["reliability"]["bins"].as_array().unwrap();
    let counted: u64 = bins.iter().map(|b| b["count"].as_u64().unwrap()).sum();
    assert_eq!(counted, 156);
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(fixture().join("summary.json")).unwrap()).unwrap();
    assert_eq!(report.data["reliability"]["reliability_calibrated"]["temperature"], summary["calibration"]["temperature"]);
    // Every gallery tile is inline, as listed in gallery.json.
    let tiles: Value = serde_json::from_str(&std::fs::read_to_string(fixture().join("gallery/gallery.json")).unwrap()).unwrap();
    let ids = |tiles: &Value| tiles.as_array().unwrap().iter().map(|t| (t["image"].clone(), t["group"].clone())).collect::<Vec<_>>();
    assert_eq!(ids(&report.data["gallery"]), ids(&tiles));
    assert_eq!(report.html.matches("src=\"data:image/png;base64,").count(), tiles.as_array().unwrap().len());
    let ece = report.data["reliability"]["reliability"]["ece"].as_f64().unwrap();
    assert!((ece - summary["test"]["ece"].as_f64().unwrap()).abs() < 1e-6, "ECE {ece} against summary.json");
}

#[test]
fn a_staged_run_gets_a_section_per_stage() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rskd.toml"), "").unwrap();
    copy_fixture(&dir.path().join("student"));
    copy_fixture(&dir.path().join("teachers/0-first"));
    // A stage still training (no summary.json) is left out.
    std::fs::create_dir_all(dir.path().join("teachers/1-second")).unwrap();
    let path = write_report(dir.path()).unwrap();
    assert_eq!(path, dir.path().join("report.html"));
    let html = std::fs::read_to_string(&path).unwrap();
    let data = embedded_data(&html);
    let stages: Vec<&String> = data["stages"].as_object().unwrap().keys().collect();
    assert_eq!(stages, ["student", "teacher 0-first"]);
    assert_eq!(html.matches("data-plot=\"roc\"").count(), 2);
    assert!(html.contains("<a href=\"#stage-1\">teacher 0-first</a>"));
}

fn error_text(result: Result<impl Sized, ReportError>) -> String {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_run_folders_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let message = error_text(render(dir.path()));
    assert!(message.contains("no summary.json") && message.contains(&dir.path().display().to_string()), "{message}");

    // A folder of runs (a campaign's cell) says what it holds.
    let cell = tempfile::tempdir().unwrap();
    copy_fixture(&cell.path().join("kd"));
    copy_fixture(&cell.path().join("baseline"));
    let message = error_text(render(cell.path()));
    assert!(message.contains("this folder holds runs (baseline, kd)") && message.contains("medkd compare"), "{message}");

    copy_fixture(dir.path());
    std::fs::remove_file(dir.path().join("metrics.jsonl")).unwrap();
    let message = error_text(render(dir.path()));
    assert!(message.contains("metrics.jsonl"), "{message}");

    std::fs::write(dir.path().join("metrics.jsonl"), "").unwrap();
    let message = error_text(render(dir.path()));
    assert!(message.contains("metrics.jsonl: no epochs recorded"), "{message}");

    std::fs::write(dir.path().join("metrics.jsonl"), "{\"epoch\": 0}\n").unwrap();
    let message = error_text(render(dir.path()));
    assert!(message.contains("metrics.jsonl: line 1: not a medkd metrics record"), "{message}");

    copy_fixture(dir.path());
    let predictions = dir.path().join("predictions/test.csv");
    let text = std::fs::read_to_string(&predictions).unwrap().replacen("\n0,malignant,", "\n0,benign?,", 1);
    std::fs::write(&predictions, text).unwrap();
    let message = error_text(render(dir.path()));
    assert!(message.contains("test.csv: line 2: label 'benign?' is not one of the run's classes"), "{message}");

    std::fs::write(&predictions, "image,label,a,b\n").unwrap();
    let message = error_text(render(dir.path()));
    assert!(message.contains("test.csv: header is"), "{message}");

    copy_fixture(dir.path());
    std::fs::write(dir.path().join("attack.json"), "{}").unwrap();
    let message = error_text(render(dir.path()));
    assert!(message.contains("attack.json: not a medkd attack report"), "{message}");
}

//! `medkd compare` against the results page: the multi-seed tables of BENCHMARKS.md come out of
//! the kept run folders under results/ with the same numbers, and so do the DISTL tables (DeLong's
//! intervals and paired tests on the kept test predictions); the paired t-test's p-values
//! against scipy (tools/golden/paired_t_golden.py); bad input refused naming the file.

use std::path::{Path, PathBuf};

use medkd_report::compare::{CompareOptions, Comparison, compare, header, paired_t_p_value};
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

const METRICS: [&str; 14] = [
    "acc",
    "balanced_acc",
    "macro_f1",
    "auc",
    "ece",
    "ece_at_t",
    "temperature",
    "loss",
    "many_recall",
    "medium_recall",
    "few_recall",
    "mean_iou",
    "acc_at_50",
    "acc_at_75",
];

/// The first Markdown table after `heading` in BENCHMARKS.md, and the one after it when
/// `second`: rows of cells.
fn page_table(heading: &str, second: bool) -> Vec<Vec<String>> {
    let page = std::fs::read_to_string(repo().join("BENCHMARKS.md")).unwrap();
    let start = page.find(heading).unwrap_or_else(|| panic!("BENCHMARKS.md has no '{heading}'"));
    let lines: Vec<&str> = page[start..].lines().collect();
    let mut tables: Vec<Vec<Vec<String>>> = Vec::new();
    let mut in_table = false;
    for line in lines {
        if line.starts_with('|') {
            if !in_table {
                tables.push(Vec::new());
                in_table = true;
            }
            if !line.starts_with("|---") {
                let cells = line.trim().trim_matches('|').split(" | ").map(|c| c.trim().to_string()).collect();
                tables.last_mut().unwrap().push(cells);
            }
        } else {
            in_table = false;
            if tables.len() == 2 {
                break;
            }
        }
    }
    tables.swap_remove(usize::from(second))
}

/// Every cell of the page's table whose column compare knows equals compare's, row by row
/// (compare's paired cells add `, p …`, which the page does not print).
fn assert_same_numbers(page: &[Vec<String>], ours: &[Vec<String>]) -> usize {
    assert_same_numbers_as(page, ours, 0, &|header| header.to_string(), &|label| Some(label.to_string()))
}

/// As [`assert_same_numbers`], for a page table whose rows are labelled in column `label_at`
/// (`row_name` gives compare's row for a label, or `None` to skip the row) and whose headers
/// `column_name` renames to compare's.
fn assert_same_numbers_as(
    page: &[Vec<String>],
    ours: &[Vec<String>],
    label_at: usize,
    column_name: &dyn Fn(&str) -> String,
    row_name: &dyn Fn(&str) -> Option<String>,
) -> usize {
    let columns: Vec<(usize, usize)> = (page[0].iter().enumerate())
        .filter(|(i, _)| *i != label_at)
        .filter_map(|(i, name)| Some((i, ours[0].iter().position(|h| *h == column_name(name))?)))
        .collect();
    assert!(columns.len() >= 3, "the page's columns {:?} against {:?}", page[0], ours[0]);
    let mut checked = 0;
    for row in &page[1..] {
        let Some(name) = row_name(&row[label_at]) else { continue };
        let ours_row = ours.iter().find(|r| r[0] == name).unwrap_or_else(|| panic!("compare has no row '{name}'"));
        for &(i, j) in &columns {
            // Tables written before compare printed p-values have none.
            let cell = match ours_row[j].split_once(", p ") {
                Some((head, _)) if !row[i].contains(", p ") => format!("{head})"),
                _ => ours_row[j].clone(),
            };
            // The page marks the best cell of a column in bold.
            assert_eq!(cell, row[i].trim_matches('*'), "row '{}', column '{}'", row[label_at], page[0][i]);
            checked += 1;
        }
    }
    checked
}

fn options(pairs: &[(&str, &str)]) -> CompareOptions {
    CompareOptions {
        by: None,
        metrics: METRICS.iter().map(|m| m.to_string()).collect(),
        split: "test".into(),
        pairs: pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
        baseline: None,
    }
}

#[test]
fn long_tail_tables_come_out_of_the_kept_runs() {
    let ham = ["ce", "focal", "class_balanced", "balanced_softmax", "ldam_drw", "rskd_ce", "rskd_balanced_softmax"];
    let retina = ["ce", "balanced_softmax", "rskd_ce", "rskd_balanced_softmax"];
    for (dataset, rows, heading) in
        [("ham10000", &ham[..], "### HAM10000, MobileNetV2 at 64 px"), ("retinamnist", &retina[..], "### RetinaMNIST, ResNet-18 at 28 px")]
    {
        let runs: Vec<PathBuf> =
            rows.iter().flat_map(|row| (0..3).map(move |seed| repo().join(format!("results/longtail/{dataset}_s{seed}/{row}")))).collect();
        let mut pairs: Vec<(&str, &str)> = rows[1..].iter().map(|row| (*row, "ce")).collect();
        pairs.push(("rskd_balanced_softmax", "balanced_softmax"));
        let comparison = compare(&runs, &options(&pairs)).unwrap();
        let (table, paired) = comparison.tables();
        let checked = assert_same_numbers(&page_table(heading, false), &table) + assert_same_numbers(&page_table(heading, true), &paired);
        // Every row and pair on the page: its seeds and 7 metrics.
        assert_eq!(checked, (rows.len() + pairs.len()) * 8, "{dataset}");
        // The CSV has a line per row (and pair) and metric, with every seed's value; the HTML
        // page the same tables.
        let csv = comparison.csv();
        assert_eq!(csv.lines().count(), 1 + (rows.len() + pairs.len()) * METRICS.len());
        let ce_auc = csv.lines().find(|l| l.starts_with("ce,,auc,")).unwrap();
        let values: Vec<f64> = ce_auc.rsplit(',').next().unwrap().split(';').map(|v| v.parse().unwrap()).collect();
        assert_eq!(values.len(), 3);
        let html = comparison.html();
        assert_eq!(html.matches("<table>").count(), 2);
        assert!(html.contains(&table[1][3]) && html.contains("rskd_ce − ce"));
    }
}

#[test]
fn roskd_table_comes_out_of_the_kept_runs() {
    let page = page_table("### HAM10000\n", false);
    let rows = [("labels alone", "noisy_student"), ("single-teacher KD", "single_teacher_kd"), ("mean KD", "mean_kd"), ("RoS-KD", "roskd")];
    let metrics = ["macro_f1", "auc", "acc", "fgsm@2/255", "fgsm@8/255", "pgd@2/255", "pgd@8/255"];
    let mut checked = 0;
    for (noise, folder) in [("40% sym", "sym40"), ("20% sym", "sym20"), ("0%", "sym0"), ("20% asym", "asym20")] {
        let runs: Vec<PathBuf> = (rows.iter())
            .flat_map(|(_, row)| (0..3).map(move |seed| repo().join(format!("results/roskd/roskd_ham_{folder}_s{seed}/{row}"))))
            .collect();
        let comparison =
            compare(&runs, &CompareOptions { metrics: metrics.iter().map(|m| m.to_string()).collect(), ..options(&[]) }).unwrap();
        let setting: Vec<Vec<String>> =
            std::iter::once(page[0].clone()).chain(page[1..].iter().filter(|r| r[0] == noise).cloned()).collect();
        let column = |header: &str| match header {
            "AUC" => "macro AUC".to_string(),
            "acc" => "accuracy".to_string(),
            other => other.replace("PGD-10", "PGD"),
        };
        let row = |label: &str| rows.iter().find(|(l, _)| *l == label).map(|(_, r)| r.to_string());
        checked += assert_same_numbers_as(&setting, &comparison.tables().0, 1, &column, &row);
    }
    // 4 settings × 4 students × 7 metrics (the noise column is no metric).
    assert_eq!(checked, 4 * 4 * 7);
}

#[test]
fn pretrained_roskd_table_comes_out_of_the_kept_runs() {
    let heading = "### HAM10000 from ImageNet weights";
    let page = page_table(heading, false);
    let rows = [("labels alone", "noisy_student"), ("single-teacher KD", "single_teacher_kd"), ("mean KD", "mean_kd"), ("RoS-KD", "roskd")];
    let metrics: Vec<String> =
        ["macro_f1", "auc", "acc", "fgsm@2/255", "fgsm@8/255", "pgd@2/255", "pgd@8/255"].iter().map(|m| m.to_string()).collect();
    let column = |header: &str| match header {
        "AUC" => "macro AUC".to_string(),
        "acc" => "accuracy".to_string(),
        other => other.replace("PGD-10", "PGD"),
    };
    let row = |label: &str| rows.iter().find(|(l, _)| *l == label).map(|(_, r)| r.to_string());
    let pairs = [("roskd", "single_teacher_kd"), ("roskd", "mean_kd"), ("roskd", "noisy_student")];
    let mut checked = 0;
    // The pretrained students beside the from-scratch ones of the same cell (40% symmetric noise).
    for (networks, kept) in [
        ("ResNet-18 from scratch", "results/roskd/roskd_ham_sym40"),
        ("Lite0 from ImageNet", "results/roskd_pretrained/roskd_ham_pt_sym40"),
    ] {
        let runs: Vec<PathBuf> =
            (rows.iter()).flat_map(|(_, row)| (0..3).map(move |seed| repo().join(format!("{kept}_s{seed}/{row}")))).collect();
        let comparison = compare(&runs, &CompareOptions { metrics: metrics.clone(), ..options(&pairs) }).unwrap();
        let (table, paired) = comparison.tables();
        let these: Vec<Vec<String>> =
            std::iter::once(page[0].clone()).chain(page[1..].iter().filter(|r| r[1] == networks).cloned()).collect();
        checked += assert_same_numbers_as(&these, &table, 0, &column, &row);
        if networks == "Lite0 from ImageNet" {
            let differences = page_table(heading, true);
            checked += assert_same_numbers_as(&differences, &paired, 0, &column, &|label| Some(label.to_string()));
        }
    }
    // 2 × 4 students and 3 pairs, 7 metrics each.
    assert_eq!(checked, (2 * 4 + 3) * 7);
}

#[test]
fn pretrained_table_comes_out_of_the_kept_runs() {
    let runs: Vec<PathBuf> = std::fs::read_dir(repo().join("results/pretrained")).unwrap().map(|e| e.unwrap().path()).collect();
    let mut runs = runs;
    runs.sort();
    let pairs =
        [("pretrained", "scratch"), ("pretrained", "resnet18_64"), ("pretrained", "pretrained_x0.1"), ("pretrained_x0.1", "scratch")];
    let comparison = compare(&runs, &options(&pairs)).unwrap();
    let (table, paired) = comparison.tables();
    let heading = "## Pretrained students";
    // 4 rows and 4 pairs: seeds and 7 metrics each.
    assert_eq!(assert_same_numbers(&page_table(heading, false), &table), 4 * 8);
    assert_eq!(assert_same_numbers(&page_table(heading, true), &paired), 4 * 8);
}

#[test]
fn pretrained_ssdkd_table_comes_out_of_the_kept_runs() {
    let mut runs: Vec<PathBuf> = std::fs::read_dir(repo().join("results/ssdkd_pretrained")).unwrap().map(|e| e.unwrap().path()).collect();
    runs.sort();
    let pairs = [("kd", "efficientnet_lite0"), ("dkd", "efficientnet_lite0"), ("ssdkd", "efficientnet_lite0"), ("ssdkd", "kd")];
    let comparison = compare(&runs, &options(&pairs)).unwrap();
    let (table, paired) = comparison.tables();
    let heading = "### ImageNet-pretrained EfficientNet-Lite, 3 seeds";
    // The teacher, the student alone, KD, D-KD and SSD-KD, then the 4 pairs: seeds and 5 metrics each.
    assert_eq!(assert_same_numbers(&page_table(heading, false), &table), 5 * 6);
    assert_eq!(assert_same_numbers(&page_table(heading, true), &paired), 4 * 6);
}

#[test]
fn paired_t_test_matches_scipy() {
    let golden: Value = serde_json::from_str(include_str!("golden/paired_t.json")).unwrap();
    for case in golden["cases"].as_array().unwrap() {
        let (a, b) = (case["a"].as_array().unwrap(), case["b"].as_array().unwrap());
        let diffs: Vec<f64> = a.iter().zip(b).map(|(a, b)| a.as_f64().unwrap() - b.as_f64().unwrap()).collect();
        let p = paired_t_p_value(&diffs).unwrap();
        let expected = case["p_value"].as_f64().unwrap();
        assert!((p - expected).abs() < 1e-9 * expected.max(1e-3), "p {p} vs scipy {expected}");
    }
}

fn error(result: Result<Comparison, medkd_report::ReportError>) -> String {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_input_is_refused_naming_the_file() {
    let ham = repo().join("results/longtail/ham10000_s0/ce");
    let retina = repo().join("results/longtail/retinamnist_s0/ce");
    let message = error(compare(&[ham.clone(), retina.clone()], &options(&[])));
    assert!(message.contains("retinamnist_s0/ce/summary.json") && message.contains("--by"), "{message}");
    // Grouped by what sets them apart, they compare.
    let by_data = CompareOptions { by: Some("data.path".into()), ..options(&[]) };
    assert_eq!(compare(&[ham.clone(), retina], &by_data).unwrap().rows.len(), 2);
    let message = error(compare(&[ham.clone(), ham.clone()], &options(&[])));
    assert!(message.contains("seed 0 of row 'ce' is also"), "{message}");
    let message = error(compare(std::slice::from_ref(&ham), &CompareOptions { by: Some("train.no_such_key".into()), ..options(&[]) }));
    assert!(message.contains("config.toml") && message.contains("no config key `train.no_such_key`"), "{message}");
    let message = error(compare(std::slice::from_ref(&ham), &CompareOptions { metrics: vec!["f2".into()], ..options(&[]) }));
    assert!(message.contains("unknown metric 'f2'"), "{message}");
    let message = error(compare(std::slice::from_ref(&ham), &CompareOptions { baseline: Some("focal".into()), ..options(&[]) }));
    assert!(message.contains("--baseline 'focal' is not a row; rows: ce"), "{message}");
    // --baseline pairs every other row with it, after the explicit pairs.
    let focal = repo().join("results/longtail/ham10000_s0/focal");
    let runs = [ham.clone(), focal, repo().join("results/longtail/ham10000_s0/rskd_ce")];
    let both = CompareOptions { baseline: Some("ce".into()), ..options(&[("rskd_ce", "focal")]) };
    let pairs: Vec<(String, String)> = compare(&runs, &both).unwrap().pairs;
    let expected = [("rskd_ce", "focal"), ("focal", "ce"), ("rskd_ce", "ce")].map(|(a, b)| (a.to_string(), b.to_string()));
    assert_eq!(pairs, expected);
    let message = error(compare(std::slice::from_ref(&ham), &options(&[("ce", "focal")])));
    assert!(message.contains("row 'focal'"), "{message}");
    let empty = tempfile::tempdir().unwrap();
    let message = error(compare(&[empty.path().to_path_buf()], &options(&[])));
    assert!(message.contains(&empty.path().display().to_string()) && message.contains("no summary.json"), "{message}");
    assert_eq!(header("balanced_acc"), "balanced acc");
}

/// The kept localization runs whose folder names start with one of `rows` (`base_s` is row
/// `base`), compared as the page's tables are.
fn localization_tables(rows: &[&str], options: CompareOptions) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
    let folder = repo().join("results/localize");
    let mut runs: Vec<PathBuf> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| rows.iter().any(|row| p.file_name().unwrap().to_str().unwrap().starts_with(&format!("{row}_s"))))
        .collect();
    runs.sort();
    let metrics = ["mean_iou", "acc_at_50", "acc_at_75"].map(String::from).to_vec();
    compare(&runs, &CompareOptions { metrics, ..options }).unwrap().tables()
}

#[test]
fn localization_tables_come_out_of_the_kept_runs() {
    let baseline = |row: &str| CompareOptions { baseline: Some(row.into()), ..options(&[]) };
    // Supervised and semi-supervised: 3 rows and 2 pairs each, seeds and 3 metrics per row.
    for (rows, base, heading) in [
        (["base", "htl", "htl_adaptive"], "base", "### HTL attention, ISIC 2018"),
        (["semi", "semi_labelled_only", "semi_htl"], "semi", "### Semi-supervised: 30% of the boxes"),
    ] {
        let (table, paired) = localization_tables(&rows, baseline(base));
        assert_eq!(assert_same_numbers(&page_table(heading, false), &table), 3 * 4, "{heading}");
        assert_eq!(assert_same_numbers(&page_table(heading, true), &paired), 2 * 4, "{heading}");
    }

    // Weakly supervised: the page's table also holds rows without runs (the box priors).
    let (table, paired) = localization_tables(&["weak", "weak_htl"], baseline("weak"));
    let runs_only = |label: &str| label.starts_with("weak").then(|| label.to_string());
    let heading = "### Weakly supervised: diagnoses only";
    assert_eq!(assert_same_numbers_as(&page_table(heading, false), &table, 0, &|h| h.to_string(), &runs_only), 2 * 4);
    assert_eq!(assert_same_numbers(&page_table(heading, true), &paired), 4);

    // PH2 by cross-validation: folds are compare's seeds; the zero-shot rows come from
    // ph2_transfer.py, not from run folders.
    let pairs = [("ph2_ft", "ph2_scratch"), ("ph2_scratch_htl", "ph2_scratch"), ("ph2_ft_htl", "ph2_ft")];
    let (table, paired) = localization_tables(&["ph2_scratch", "ph2_scratch_htl", "ph2_ft", "ph2_ft_htl"], options(&pairs));
    let heading = "### PH2 by cross-validation";
    let folds_are_seeds = |h: &str| if h == "folds" { "seeds".to_string() } else { h.to_string() };
    let trained = |label: &str| (!label.contains("zero-shot")).then(|| label.to_string());
    assert_eq!(assert_same_numbers_as(&page_table(heading, false), &table, 0, &folds_are_seeds, &trained), 4 * 4);
    assert_eq!(assert_same_numbers_as(&page_table(heading, true), &paired, 0, &|h| h.to_string(), &trained), 3 * 3);
}

/// A page number as printed (Unicode minus, optional sign) and its decimals.
fn printed(cell: &str) -> (f64, i32) {
    let cell = cell.trim().replace('−', "-");
    let decimals = cell.split('.').nth(1).map_or(0, |d| d.len() as i32);
    (cell.parse().unwrap_or_else(|_| panic!("'{cell}' is not a number")), decimals)
}

/// `value` rounds to the page's `cell` at the decimals the page prints (`9.5e-6`: at the
/// mantissa's decimals).
fn assert_printed(cell: &str, value: f64, what: &str) {
    let (mantissa, exponent) = cell.split_once('e').map_or((cell, 0), |(m, e)| (m, e.parse::<i32>().unwrap()));
    let (page, decimals) = printed(mantissa);
    let scale = 10f64.powi(decimals - exponent);
    assert_eq!(
        (value * scale).round(),
        (page * 10f64.powi(decimals)).round(),
        "{what}: the page prints {cell}, the kept runs give {value}"
    );
}

/// `mean ± std` over seeds as the page prints it: the mean and the sample standard deviation.
fn assert_mean_std(cell: &str, values: &[f64], what: &str) {
    let (mean_cell, std_cell) = cell.split_once(" ± ").unwrap_or_else(|| panic!("{what}: '{cell}' is not mean ± std"));
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let std = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (values.len() - 1) as f64).sqrt();
    assert_printed(mean_cell, mean, &format!("{what} mean"));
    assert_printed(std_cell, std, &format!("{what} std"));
}

/// The positive-class scores and labels of a kept DISTL stage's test predictions
/// (`image,label,normal,pneumonia`).
fn distl_predictions(stage: &str) -> (Vec<f32>, Vec<bool>) {
    let path = repo().join("results/distl").join(stage).join("predictions/test.csv");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .skip(1)
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            (fields[3].parse::<f32>().unwrap(), fields[1] == "pneumonia")
        })
        .unzip()
}

/// A DISTL table's row label as the kept stage it names: `roundN`/`supervisedN` (a stage of
/// every seed), or an ablation's stage.
fn distl_stage(label: &str) -> String {
    let words: Vec<&str> = label.split([' ', ':']).collect();
    match (words[0], words.get(1)) {
        ("round" | "supervised", Some(n)) => format!("{}{n}", words[0]),
        ("full", _) => "s0/round1".into(),
        ("without", Some(&"DINO")) => "no_dino/round1".into(),
        ("without", Some(&"the")) => "no_correction/round1".into(),
        ("hard", _) => "hard/round1".into(),
        _ => panic!("no kept stage for the row '{label}'"),
    }
}

/// The DISTL section's tables come out of results/distl: per seed each stage's test AUC and
/// DeLong interval from its kept predictions, and each paired difference with DeLong's p; over
/// seeds mean ± std and the paired t-test; the ablations' paired tests against round 1.
#[test]
fn the_distl_tables_come_out_of_the_kept_stages() {
    let heading = "## DISTL: self-training rounds on PneumoniaMNIST";
    let seeds = ["s0", "s1", "s2"];
    let stages = page_table(heading, false);
    assert_eq!(stages[0][1..], ["seed 0", "seed 1", "seed 2", "mean ± std"]);
    let auc = |seed: &str, stage: &str| {
        let (scores, positive) = distl_predictions(&format!("{seed}/{stage}"));
        medkd_eval::delong_auc(&scores, &positive).unwrap().unwrap()
    };
    for row in &stages[1..] {
        let stage = distl_stage(&row[0]);
        let aucs: Vec<f64> = seeds
            .iter()
            .zip(&row[1..4])
            .map(|(seed, cell)| {
                let ci = auc(seed, &stage);
                let (value, interval) = cell.split_once(" (").unwrap();
                let (lower, upper) = interval.trim_end_matches(')').split_once('-').unwrap();
                let what = format!("{seed}/{stage}");
                assert_printed(value, ci.auc, &format!("{what} AUC"));
                assert_printed(lower, ci.lower, &format!("{what} CI"));
                assert_printed(upper, ci.upper, &format!("{what} CI"));
                ci.auc
            })
            .collect();
        assert_mean_std(&row[4], &aucs, &stage);
    }
    let paired = |a: &str, b: &str| {
        let ((scores_a, positive), (scores_b, _)) = (distl_predictions(a), distl_predictions(b));
        medkd_eval::delong_paired(&scores_a, &scores_b, &positive).unwrap().unwrap()
    };
    let pairs = page_table(heading, true);
    assert_eq!(pairs[0], ["comparison", "seed 0", "seed 1", "seed 2", "mean ± std", "t-test p"]);
    for row in &pairs[1..] {
        let (a, b) = row[0].split_once(" − ").unwrap();
        let (a, b) = (distl_stage(a), distl_stage(b));
        let differences: Vec<f64> = seeds
            .iter()
            .zip(&row[1..4])
            .map(|(seed, cell)| {
                let test = paired(&format!("{seed}/{a}"), &format!("{seed}/{b}"));
                let what = format!("{seed}: {}", row[0]);
                let (difference, p) = cell.split_once(" (p ").unwrap_or((cell, ""));
                assert_printed(difference, test.difference, &what);
                if !p.is_empty() {
                    assert_printed(p.trim_end_matches(')'), test.p_value, &format!("{what} p"));
                }
                test.difference
            })
            .collect();
        assert_mean_std(&row[4], &differences, &row[0]);
        // Student's t with 2 degrees of freedom: two-sided p = 1 − |t| / √(2 + t²).
        let mean = differences.iter().sum::<f64>() / 3.0;
        let std = (differences.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / 2.0).sqrt();
        let t = mean / (std / 3f64.sqrt());
        assert_printed(&row[5], 1.0 - t.abs() / (2.0 + t * t).sqrt(), &format!("{} t-test", row[0]));
    }
    let ablations = page_table("**Ablations, round 1, seed 0**", false);
    for row in &ablations[2..] {
        let stage = distl_stage(&row[0]);
        let test = paired(&stage, "s0/round1");
        let (difference, interval) = row[3].split_once(" (").unwrap();
        let (lower, upper) = interval.trim_end_matches(')').split_once(" to ").unwrap();
        for (cell, value) in [
            (&row[1][..], test.auc_a),
            (difference, test.difference),
            (lower, test.lower),
            (upper, test.upper),
            (&row[4][..], test.p_value),
        ] {
            assert_printed(cell, value, &row[0]);
        }
    }
}

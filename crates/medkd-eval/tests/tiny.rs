//! Hand-checkable examples, plus the table, serde and metric-by-name surfaces.

use medkd_eval::{ClassificationReport, Metric, MultiLabelReport, evaluate_multi_label, evaluate_single_label};

fn names(names: &[&str]) -> Vec<String> {
    names.iter().map(|&n| n.to_owned()).collect()
}

fn binary(probs_of_positive: &[f32], labels: &[usize]) -> ClassificationReport {
    let probs: Vec<f32> = probs_of_positive.iter().flat_map(|&p| [1.0 - p, p]).collect();
    evaluate_single_label(&probs, 2, labels, &names(&["neg", "pos"])).unwrap()
}

fn assert_close(actual: f64, expected: f64) {
    assert!((actual - expected).abs() < 1e-6, "got {actual}, expected {expected}");
}

#[test]
fn perfect_binary_classifier() {
    let report = binary(&[0.1, 0.2, 0.7, 0.9], &[0, 0, 1, 1]);
    assert_eq!(report.auc, Some(1.0));
    assert_eq!((report.accuracy, report.balanced_accuracy, report.macro_f1), (1.0, 1.0, 1.0));
    assert_eq!(report.confusion, vec![vec![2, 0], vec![0, 2]]);
    // Every prediction is right, so each bin's gap is 1 - confidence: ECE = mean(1 - conf).
    assert_close(report.ece, (0.1 + 0.2 + 0.3 + 0.1) / 4.0);
}

#[test]
fn reversed_binary_classifier() {
    let report = binary(&[0.1, 0.2, 0.7, 0.9], &[1, 1, 0, 0]);
    assert_eq!(report.auc, Some(0.0));
    assert_eq!((report.accuracy, report.macro_f1), (0.0, 0.0));
}

#[test]
fn all_tied_scores() {
    let report = binary(&[0.5; 4], &[0, 1, 0, 1]);
    assert_eq!(report.auc, Some(0.5));
    // Tied rows predict the first class, like numpy's argmax.
    assert_eq!(report.confusion, vec![vec![2, 0], vec![2, 0]]);
    assert_eq!(report.accuracy, 0.5);
}

#[test]
fn auc_undefined_for_one_class_targets() {
    let report = binary(&[0.2, 0.8], &[1, 1]);
    assert_eq!(report.auc, None);
    assert_eq!(report.per_class[0].auc, None);
    // Balanced accuracy only averages over classes that occur: here just "pos", recall 1/2.
    assert_eq!(report.balanced_accuracy, 0.5);
}

fn three_class() -> ClassificationReport {
    #[rustfmt::skip]
    let probs = [
        0.7, 0.2, 0.1,
        0.2, 0.5, 0.3,
        0.1, 0.6, 0.3,
        0.2, 0.2, 0.6,
    ];
    evaluate_single_label(&probs, 3, &[0, 1, 2, 2], &names(&["a", "b", "c"])).unwrap()
}

#[test]
fn three_class_by_hand() {
    let report = three_class();
    // Predictions [0, 1, 1, 2].
    assert_eq!(report.confusion, vec![vec![1, 0, 0], vec![0, 1, 0], vec![0, 1, 1]]);
    assert_eq!(report.accuracy, 0.75);
    assert_close(report.balanced_accuracy, (1.0 + 1.0 + 0.5) / 3.0);
    let b = &report.per_class[1];
    assert_eq!((b.precision, b.recall, b.support), (0.5, 1.0, 1));
    assert_close(report.macro_f1, (1.0 + 2.0 / 3.0 + 2.0 / 3.0) / 3.0);
    // One-vs-rest AUCs: a 1, b 2/3, c (1 + 1/2 + 1 + 1) / 4 with its 0.3 tie counting half.
    let aucs: Vec<Option<f64>> = report.per_class.iter().map(|c| c.auc).collect();
    assert_close(aucs[1].unwrap(), 2.0 / 3.0);
    assert_eq!((aucs[0], aucs[2]), (Some(1.0), Some(0.875)));
    assert_close(report.auc.unwrap(), (1.0 + 2.0 / 3.0 + 0.875) / 3.0);
    // Bins: {0.7 right} gap 0.3, {0.5 right} gap 0.5, {0.6 wrong, 0.6 right} gap 0.1.
    assert_close(report.ece, 0.25 * 0.3 + 0.25 * 0.5 + 0.5 * 0.1);
}

fn multi_label() -> MultiLabelReport {
    #[rustfmt::skip]
    let probs = [
        0.9, 0.2,
        0.4, 0.5,
        0.6, 0.1,
    ];
    let targets = [1, 0, 0, 1, 1, 1];
    evaluate_multi_label(&probs, 2, &targets, &names(&["effusion", "edema"])).unwrap()
}

#[test]
fn multi_label_by_hand() {
    let report = multi_label();
    // Predicted [1 0], [0 1], [1 0]: the last row misses "edema". 0.5 is on the threshold.
    assert_close(report.subset_accuracy, 2.0 / 3.0);
    let edema = &report.per_label[1];
    assert_eq!((edema.precision, edema.recall, edema.support), (1.0, 0.5, 2));
    assert_close(report.macro_f1, (1.0 + 2.0 / 3.0) / 2.0);
    // Pooled: 3 true positives, 0 false positives, 1 false negative.
    assert_close(report.micro_f1, 6.0 / 7.0);
    assert_eq!((report.per_label[0].auc, edema.auc), (Some(1.0), Some(0.5)));
    assert_eq!(report.macro_auc, Some(0.75));
}

#[test]
fn metric_by_name() {
    let report = three_class();
    assert_eq!(report.metric_by_name("acc"), Some(0.75));
    assert_eq!(report.metric_by_name("accuracy"), Some(0.75));
    assert_eq!(report.metric_by_name("balanced_acc"), Some(report.balanced_accuracy));
    assert_eq!(report.metric_by_name("macro_f1"), Some(report.macro_f1));
    assert_eq!(report.metric_by_name("auc"), report.auc);
    assert_eq!(report.metric_by_name("ece"), Some(report.ece));
    assert_eq!(report.metric_by_name("nope"), None);

    let multi = multi_label();
    assert_eq!(multi.metric_by_name("acc"), Some(multi.subset_accuracy));
    assert_eq!(multi.metric_by_name("micro_f1"), Some(multi.micro_f1));
    assert_eq!(multi.metric_by_name("auc"), Some(0.75));
    assert_eq!(multi.metric(Metric::Ece), None);
}

#[test]
fn reports_round_trip_through_json() {
    let report = binary(&[0.2, 0.8], &[1, 1]);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["auc"], serde_json::Value::Null);
    assert_eq!(json["per_class"][1]["support"], 2);
    let back: ClassificationReport = serde_json::from_value(json).unwrap();
    assert_eq!(back, report);

    let multi = multi_label();
    let back: MultiLabelReport = serde_json::from_str(&serde_json::to_string(&multi).unwrap()).unwrap();
    assert_eq!(back, multi);
}

#[test]
fn single_label_table() {
    let report = evaluate_single_label(&[0.9, 0.1, 0.4, 0.6, 0.3, 0.7], 2, &[0, 1, 0], &names(&["normal", "pneumonia"])).unwrap();
    let expected = "\
samples                   3
accuracy             0.6667
balanced accuracy    0.7500
macro F1             0.6667
AUC                  0.5000
ECE                  0.4000

class      precision  recall      F1  support     AUC
normal        1.0000  0.5000  0.6667        2  0.5000
pneumonia     0.5000  1.0000  0.6667        1  0.5000

confusion matrix (rows = true class, columns = predicted class)
true \\ pred  normal  pneumonia
normal            1          1
pneumonia         0          1
";
    assert_eq!(report.table(), expected, "\n{}", report.table());
}

#[test]
fn multi_label_table() {
    let expected = "\
samples                 3
subset accuracy    0.6667
macro F1           0.8333
micro F1           0.8571
macro AUC          0.7500

label     precision  recall      F1  support     AUC
effusion     1.0000  1.0000  1.0000        2  1.0000
edema        1.0000  0.5000  0.6667        2  0.5000
";
    assert_eq!(multi_label().table(), expected, "\n{}", multi_label().table());
}

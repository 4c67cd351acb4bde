//! Plain-text tables for printing reports.

use std::fmt::{self, Write};

use crate::ClassMetrics;

/// A metric with four decimals, or `n/a` where undefined.
fn metric(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.4}"))
}

fn width(text: &str) -> usize {
    text.chars().count()
}

/// The overall block: the sample count, then one `label value` line per metric.
pub(crate) fn write_summary(f: &mut impl Write, n: usize, rows: &[(&str, Option<f64>)]) -> fmt::Result {
    const SAMPLES: &str = "samples";
    let label_width = rows.iter().map(|(label, _)| width(label)).chain([width(SAMPLES)]).max().unwrap_or(0);
    writeln!(f, "{SAMPLES:<label_width$}  {n:>8}")?;
    for (label, value) in rows {
        writeln!(f, "{label:<label_width$}  {:>8}", metric(*value))?;
    }
    Ok(())
}

/// One row per class (or label) with precision, recall, F1, support and AUC.
pub(crate) fn write_classes(f: &mut impl Write, kind: &str, classes: &[ClassMetrics]) -> fmt::Result {
    let name_width = classes.iter().map(|c| width(&c.name)).chain([width(kind)]).max().unwrap_or(0);
    writeln!(f, "{kind:<name_width$}  {:>9}  {:>6}  {:>6}  {:>7}  {:>6}", "precision", "recall", "F1", "support", "AUC")?;
    for c in classes {
        writeln!(
            f,
            "{:<name_width$}  {:>9.4}  {:>6.4}  {:>6.4}  {:>7}  {:>6}",
            c.name,
            c.precision,
            c.recall,
            c.f1,
            c.support,
            metric(c.auc)
        )?;
    }
    Ok(())
}

/// The confusion matrix with class names as row and column headers.
pub(crate) fn write_confusion(f: &mut impl Write, names: &[&str], confusion: &[Vec<u64>]) -> fmt::Result {
    const CORNER: &str = "true \\ pred";
    writeln!(f, "confusion matrix (rows = true class, columns = predicted class)")?;
    let row_header_width = names.iter().map(|name| width(name)).chain([width(CORNER)]).max().unwrap_or(0);
    let column_widths: Vec<usize> = names
        .iter()
        .enumerate()
        .map(|(c, name)| {
            let widest_count = confusion.iter().map(|row| row[c].to_string().len()).max().unwrap_or(1);
            width(name).max(widest_count)
        })
        .collect();
    write!(f, "{CORNER:<row_header_width$}")?;
    for (name, w) in names.iter().zip(&column_widths) {
        write!(f, "  {name:>w$}")?;
    }
    writeln!(f)?;
    for (name, row) in names.iter().zip(confusion) {
        write!(f, "{name:<row_header_width$}")?;
        for (count, w) in row.iter().zip(&column_widths) {
            write!(f, "  {count:>w$}")?;
        }
        writeln!(f)?;
    }
    Ok(())
}

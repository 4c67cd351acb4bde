//! Predicted classes, confusion matrices and the precision/recall/F1 derived from them.

/// Index of the largest value, the first one on ties (like `numpy.argmax`). `row` is non-empty.
pub(crate) fn argmax(row: &[f32]) -> usize {
    row.iter().enumerate().fold(0, |best, (i, &p)| if p > row[best] { i } else { best })
}

/// `k` x `k` counts, rows = true class and columns = predicted class (like sklearn).
/// Labels and predictions must be `< k`.
pub(crate) fn confusion_matrix(labels: &[usize], predicted: &[usize], k: usize) -> Vec<Vec<u64>> {
    let mut matrix = vec![vec![0u64; k]; k];
    for (&truth, &pred) in labels.iter().zip(predicted) {
        matrix[truth][pred] += 1;
    }
    matrix
}

/// One-vs-rest counts of each class of a square confusion matrix.
pub(crate) fn class_counts(confusion: &[Vec<u64>]) -> Vec<BinaryCounts> {
    (0..confusion.len())
        .map(|c| {
            let tp = confusion[c][c];
            BinaryCounts { tp, fp: confusion.iter().map(|row| row[c]).sum::<u64>() - tp, fn_: confusion[c].iter().sum::<u64>() - tp }
        })
        .collect()
}

/// True positives, false positives and false negatives of one class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct BinaryCounts {
    pub tp: u64,
    pub fp: u64,
    pub fn_: u64,
}

impl BinaryCounts {
    pub fn record(&mut self, predicted: bool, actual: bool) {
        match (predicted, actual) {
            (true, true) => self.tp += 1,
            (true, false) => self.fp += 1,
            (false, true) => self.fn_ += 1,
            (false, false) => {}
        }
    }

    pub fn add(self, other: Self) -> Self {
        Self { tp: self.tp + other.tp, fp: self.fp + other.fp, fn_: self.fn_ + other.fn_ }
    }

    pub fn support(self) -> u64 {
        self.tp + self.fn_
    }

    pub fn precision(self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }

    pub fn recall(self) -> f64 {
        ratio(self.tp, self.support())
    }

    pub fn f1(self) -> f64 {
        ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_)
    }
}

/// sklearn's `zero_division=0`: an undefined ratio counts as 0.
fn ratio(numerator: u64, denominator: u64) -> f64 {
    if denominator == 0 { 0.0 } else { numerator as f64 / denominator as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(tp: u64, fp: u64, fn_: u64) -> BinaryCounts {
        BinaryCounts { tp, fp, fn_ }
    }

    #[test]
    fn argmax_takes_first_maximum() {
        assert_eq!(argmax(&[0.2, 0.5, 0.3]), 1);
        assert_eq!(argmax(&[0.4, 0.2, 0.4]), 0);
        assert_eq!(argmax(&[0.1, 0.45, 0.45]), 1);
    }

    #[test]
    fn counts_from_confusion() {
        let confusion = confusion_matrix(&[0, 0, 1, 1, 2], &[0, 1, 1, 1, 0], 3);
        assert_eq!(confusion, vec![vec![1, 1, 0], vec![0, 2, 0], vec![1, 0, 0]]);
        let per_class = class_counts(&confusion);
        assert_eq!(per_class, vec![counts(1, 1, 1), counts(2, 1, 0), counts(0, 0, 1)]);
        let b = per_class[1];
        assert_eq!((b.precision(), b.recall(), b.f1()), (2.0 / 3.0, 1.0, 0.8));
    }

    #[test]
    fn zero_division_gives_zero() {
        let never_seen = BinaryCounts::default();
        assert_eq!((never_seen.precision(), never_seen.recall(), never_seen.f1()), (0.0, 0.0, 0.0));
    }

    #[test]
    fn record_and_add() {
        let mut recorded = BinaryCounts::default();
        for (predicted, actual) in [(true, true), (true, false), (false, true), (false, false)] {
            recorded.record(predicted, actual);
        }
        assert_eq!(recorded, counts(1, 1, 1));
        assert_eq!(recorded.add(recorded), counts(2, 2, 2));
    }
}

//! Seeded, stratified train/val/test splits for sets without an official one, and the split.csv
//! that records them.

use std::path::Path;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::config::SplitConfig;
use crate::{DataError, ImageDataset, Target, class_counts};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SplitName {
    Train,
    Val,
    Test,
}

/// One line of split.csv.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitRow {
    /// The sample's id (file name relative to the image root).
    pub image: String,
    /// Class name; for multi-label samples the positive names joined by "|" (empty if none, and
    /// for boxes without a class).
    pub label: String,
    pub split: SplitName,
}

/// Indices of the train, val and test samples, each sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitIndices {
    pub train: Vec<usize>,
    pub val: Vec<usize>,
    pub test: Vec<usize>,
}

/// Splits every stratum by the configured fractions (rounded per stratum, so each class's share
/// in each split is within half a sample of the target). The stratum of a single-label sample is
/// its class (a box's class too); of a multi-label sample its rarest positive label (so rare
/// findings reach every split); a sample with no positive label (no finding, a box without a
/// class, an unlabelled sample) goes to one separate stratum, so a box-only set is one group.
/// With `folds`, each stratum's shuffled samples are dealt in turn into the folds (continuing
/// from stratum to stratum, so the folds differ in size by at most one) and fold `fold` is the
/// test split.
pub fn stratified_split(ds: &dyn ImageDataset, cfg: &SplitConfig) -> Result<SplitIndices, DataError> {
    cfg.validate()?;
    let counts = class_counts(ds);
    let num_classes = counts.len();
    let mut strata = vec![Vec::new(); num_classes + 1];
    for i in 0..ds.len() {
        let stratum = match ds.target(i) {
            Target::Class(c) => c,
            other => other.positives().into_iter().min_by_key(|&c| (counts[c], c)).unwrap_or(num_classes),
        };
        strata[stratum].push(i);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut split = SplitIndices { train: Vec::new(), val: Vec::new(), test: Vec::new() };
    let mut dealt = 0;
    for mut members in strata {
        members.shuffle(&mut rng);
        let n = members.len();
        let (test, rest): (Vec<usize>, Vec<usize>) = match (cfg.folds, cfg.fold) {
            (Some(k), Some(fold)) => {
                let (test, rest): (Vec<_>, Vec<_>) = members.iter().enumerate().partition(|(j, _)| (dealt + j) % k == fold);
                dealt += n;
                (test.into_iter().map(|(_, &i)| i).collect(), rest.into_iter().map(|(_, &i)| i).collect())
            }
            _ => {
                let n_test = (n as f64 * cfg.test).round() as usize;
                (members[..n_test].to_vec(), members[n_test..].to_vec())
            }
        };
        let n_val = ((n as f64 * cfg.val).round() as usize).min(rest.len());
        split.test.extend(test);
        split.val.extend_from_slice(&rest[..n_val]);
        split.train.extend_from_slice(&rest[n_val..]);
    }
    for part in [&mut split.train, &mut split.val, &mut split.test] {
        part.sort_unstable();
    }
    Ok(split)
}

/// One [`SplitRow`] per sample of `ds`, in dataset order.
pub fn split_rows(ds: &dyn ImageDataset, split: &SplitIndices) -> Vec<SplitRow> {
    let mut assignment = vec![SplitName::Train; ds.len()];
    for &i in &split.val {
        assignment[i] = SplitName::Val;
    }
    for &i in &split.test {
        assignment[i] = SplitName::Test;
    }
    let names = &ds.info().class_names;
    assignment
        .into_iter()
        .enumerate()
        .map(|(i, split)| SplitRow {
            image: ds.id(i),
            label: ds.target(i).positives().iter().map(|&c| names[c].as_str()).collect::<Vec<_>>().join("|"),
            split,
        })
        .collect()
}

/// Writes rows as CSV with a header from their field names: split.csv (`image,label,split`
/// from [`SplitRow`]), skipped_images.csv (`id,row,cause` from [`crate::BadImage`]).
pub fn write_csv<T: Serialize>(rows: &[T], path: &Path) -> Result<(), DataError> {
    let csv_error = |source| DataError::CsvFile { path: path.to_path_buf(), source };
    let mut writer = csv::Writer::from_path(path).map_err(csv_error)?;
    for row in rows {
        writer.serialize(row).map_err(csv_error)?;
    }
    writer.flush().map_err(|e| DataError::io(path, e))
}

/// Reads a split.csv written by [`write_csv`].
pub fn read_split_csv(path: &Path) -> Result<Vec<SplitRow>, DataError> {
    let mut reader = csv::Reader::from_path(path).map_err(|source| DataError::CsvFile { path: path.to_path_buf(), source })?;
    reader
        .deserialize()
        .enumerate()
        .map(|(i, row)| row.map_err(|source| DataError::Csv { path: path.to_path_buf(), row: i + 1, source }))
        .collect()
}

/// A training split cut for self-training rounds (DISTL): a labelled part and `K` unlabelled
/// folds that arrive one per round. Indices into the training split, each part sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelledFolds {
    pub labelled: Vec<usize>,
    pub folds: Vec<Vec<usize>>,
}

/// Shuffles `0..n` with `seed` and keeps the first `round(fraction · n)` as the labelled part,
/// exactly the samples `data.train_subset = { ratio = fraction, seed = seed }` keeps, so a
/// supervised run on that subset learns from the same labels; the rest is dealt, in shuffled
/// order, into `folds` parts whose sizes differ by at most one.
pub fn labelled_folds(n: usize, fraction: f64, folds: usize, seed: u64) -> Result<LabelledFolds, DataError> {
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(DataError::config(format!("the labelled fraction must be in (0, 1), got {fraction}")));
    }
    let labelled_len = ((fraction * n as f64).round() as usize).max(1);
    let rest = n.saturating_sub(labelled_len);
    if folds == 0 || rest < folds {
        return Err(DataError::config(format!(
            "{folds} unlabelled folds do not fit the training split: {n} samples, {labelled_len} of them labelled, leave {rest}"
        )));
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let mut labelled = order[..labelled_len].to_vec();
    labelled.sort_unstable();
    let mut parts = Vec::with_capacity(folds);
    let mut start = labelled_len;
    for k in 0..folds {
        let len = rest / folds + usize::from(k < rest % folds);
        let mut part = order[start..start + len].to_vec();
        part.sort_unstable();
        parts.push(part);
        start += len;
    }
    Ok(LabelledFolds { labelled, folds: parts })
}

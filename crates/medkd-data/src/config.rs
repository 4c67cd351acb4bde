//! The `[data]` section of a training config. Unknown keys are errors (`deny_unknown_fields`), and
//! [`DataConfig::validate`] rejects keys that do not apply to the chosen format, so a typo never
//! silently changes an experiment.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::image_check::BadImages;
use crate::noise::LabelNoiseConfig;
use crate::transform::TransformSpec;
use crate::{DataError, Task};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataFormat {
    /// A MedMNIST / MedMNIST+ `.npz` with the official train/val/test split.
    Medmnist,
    /// One sub-folder per class.
    Folder,
    /// A CSV file naming images and their labels.
    Csv,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    pub format: DataFormat,
    /// The npz file, folder root or CSV file; a relative path resolves against the `base_dir`
    /// given to [`crate::open_splits`].
    pub path: PathBuf,
    /// CSV: folder of the image files, relative to the CSV's folder unless absolute (default: the
    /// CSV's folder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_dir: Option<PathBuf>,
    /// CSV: column holding the image file name or stem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_column: Option<String>,
    /// CSV: extension appended to names in `image_column` that have none (e.g. "jpg").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_ext: Option<String>,
    /// CSV: column holding one class name per row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_column: Option<String>,
    /// CSV: one-hot columns, one per class, exactly one 1 per row (ISIC 2019 GroundTruth.csv).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_columns: Option<Vec<String>>,
    /// CSV: column holding several class names joined by `multilabel_separator` (NIH ChestX-ray14).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multilabel_column: Option<String>,
    /// CSV multi-label: separator between names (default "|").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multilabel_separator: Option<String>,
    /// CSV multi-label: the value meaning "no positive label" (default "No Finding").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_finding: Option<String>,
    /// CSV: the columns of one bounding box per image, in the order x0, y0, x1, y1 (x1/y1
    /// exclusive). Makes the task localization; the box carries the class of `label_column` or
    /// `label_columns` when one is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub box_columns: Option<[String; 4]>,
    /// CSV, with `box_columns`: "pixels" (default; divided by each image's width/height) or
    /// "normalized" (already in [0, 1]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub box_units: Option<BoxUnits>,
    /// Fixed class order (folder, `label_column`, `multilabel_column`); default: sorted unique
    /// names. A name outside this list is an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<String>>,
    /// Override of the task inferred from the data (e.g. "ordinal").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<Task>,
    /// Output channels (1 or 3); default: the images' native channels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<usize>,
    /// DICOM files: the VOI window `[center, width]` in modality units (after rescale), instead
    /// of each file's own Window Center/Width (folder and CSV sets; `medkd predict` too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dicom_window: Option<[f64; 2]>,
    /// Seeded stratified split for sets without an official one (folder, csv).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<SplitConfig>,
    /// Train on a seeded random fraction of the (noisy) training split, e.g. RoS-KD's teachers on
    /// overlapping subsets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_subset: Option<TrainSubsetConfig>,
    /// Keep only these classes, in this order, in every split (e.g. one teacher per class subset):
    /// single-label samples of other classes are dropped (or see `other_class`), multi-label
    /// images keep only these labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only_classes: Option<Vec<String>>,
    /// With `only_classes` on single-label data: the left-out classes become one last class
    /// named "other" instead of being dropped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub other_class: bool,
    /// Images that do not decode, found by decoding every file before training (folder and CSV
    /// sets): `error` (default) lists them all and stops; `skip` trains without them and lists
    /// them in the run folder.
    #[serde(default, skip_serializing_if = "is_default_bad_images")]
    pub bad_images: BadImages,
    /// Synthetic label noise on the training split (validation and test stay clean).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_noise: Option<LabelNoiseConfig>,
    #[serde(default)]
    pub train_transforms: Vec<TransformSpec>,
    #[serde(default)]
    pub eval_transforms: Vec<TransformSpec>,
    #[serde(default)]
    pub normalize: NormalizeConfig,
}

fn is_default_bad_images(rule: &BadImages) -> bool {
    *rule == BadImages::default()
}

/// How `box_columns` values are given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BoxUnits {
    /// Pixels of the stored image; normalized by its width and height read from the file header.
    #[default]
    Pixels,
    /// Fractions of the width and height, in [0, 1].
    Normalized,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSubsetConfig {
    /// Fraction of the training split kept, in (0, 1].
    pub ratio: f64,
    #[serde(default)]
    pub seed: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitConfig {
    /// Fraction of each class that goes to validation.
    #[serde(default = "default_fraction")]
    pub val: f64,
    /// Fraction of each class that goes to test (unused with `folds`).
    #[serde(default = "default_fraction")]
    pub test: f64,
    #[serde(default)]
    pub seed: u64,
    /// K-fold cross-validation: each class dealt into `folds` folds (seeded); the test split is
    /// fold `fold` (0-based), validation `val` of each class from the other folds.
    #[serde(default)]
    pub folds: Option<usize>,
    #[serde(default)]
    pub fold: Option<usize>,
}

fn default_fraction() -> f64 {
    0.15
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig { val: default_fraction(), test: default_fraction(), seed: 0, folds: None, fold: None }
    }
}

impl SplitConfig {
    pub fn validate(&self) -> Result<(), DataError> {
        for (name, f) in [("val", self.val), ("test", self.test)] {
            if !(0.0..1.0).contains(&f) {
                return Err(DataError::config(format!("split.{name} = {f}: fractions must be in [0, 1)")));
            }
        }
        match (self.folds, self.fold) {
            (None, None) => {}
            (Some(k), Some(fold)) if k >= 2 && fold < k => {
                if self.val >= (k - 1) as f64 / k as f64 {
                    return Err(DataError::config(format!("split.val = {}: must leave training images outside the test fold", self.val)));
                }
                return Ok(());
            }
            (Some(k), Some(fold)) => {
                return Err(DataError::config(format!("split.folds = {k}, split.fold = {fold}: need folds >= 2 and fold in [0, folds)")));
            }
            _ => return Err(DataError::config("split.folds and split.fold: give both (k-fold cross-validation) or neither")),
        }
        if self.val + self.test >= 1.0 {
            return Err(DataError::config(format!(
                "split.val + split.test = {} must be below 1 so that train is not empty",
                self.val + self.test
            )));
        }
        Ok(())
    }
}

/// How images are normalized after the transforms: `(x - mean[c]) / std[c]` per channel.
/// The field-less kinds are empty struct variants so that stray keys (e.g. `mean` with
/// `kind = "imagenet"`) are rejected; serde ignores extra keys on unit variants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum NormalizeConfig {
    /// ImageNet statistics (for 1 output channel: the mean of the three channels' values).
    Imagenet {},
    /// Mean and std measured on the train split (deterministic subsample, cached per process).
    Dataset {},
    /// Values stay in [0, 1].
    None {},
    /// Explicit per-channel values.
    Custom { mean: Vec<f32>, std: Vec<f32> },
}

impl Default for NormalizeConfig {
    fn default() -> Self {
        NormalizeConfig::None {}
    }
}

impl DataConfig {
    /// Checks everything that can be checked without reading the data.
    pub fn validate(&self) -> Result<(), DataError> {
        if let Some(TrainSubsetConfig { ratio, .. }) = &self.train_subset
            && !(*ratio > 0.0 && *ratio <= 1.0)
        {
            return Err(DataError::config(format!("`data.train_subset.ratio` must be in (0, 1], got {ratio}")));
        }
        match &self.only_classes {
            None if self.other_class => return Err(DataError::config("`data.other_class` applies only with `data.only_classes`")),
            Some(list) if list.is_empty() => return Err(DataError::config("`data.only_classes`: is empty; list at least one class")),
            Some(list) => {
                if let Some(twice) = list.iter().enumerate().find(|(i, c)| list[..*i].contains(c)).map(|(_, c)| c) {
                    return Err(DataError::config(format!("`data.only_classes`: \"{twice}\" is listed twice")));
                }
            }
            None => {}
        }
        let csv_keys = [
            ("image_dir", self.image_dir.is_some()),
            ("image_column", self.image_column.is_some()),
            ("image_ext", self.image_ext.is_some()),
            ("label_column", self.label_column.is_some()),
            ("label_columns", self.label_columns.is_some()),
            ("multilabel_column", self.multilabel_column.is_some()),
            ("multilabel_separator", self.multilabel_separator.is_some()),
            ("no_finding", self.no_finding.is_some()),
            ("box_columns", self.box_columns.is_some()),
            ("box_units", self.box_units.is_some()),
        ];
        if let Some((key, _)) = csv_keys.iter().find(|(_, set)| *set)
            && self.format != DataFormat::Csv
        {
            return Err(DataError::config(format!("`{key}` applies only to format = \"csv\"")));
        }
        if let Some([center, width]) = self.dicom_window
            && !(center.is_finite() && width.is_finite() && width > 0.0)
        {
            return Err(DataError::config(format!("`dicom_window` = [{center}, {width}]: expected [center, width] with a width > 0")));
        }
        match self.format {
            DataFormat::Medmnist => {
                if self.dicom_window.is_some() {
                    return Err(DataError::config("`dicom_window` applies to DICOM files of format = \"folder\" or \"csv\""));
                }
                if self.split.is_some() {
                    return Err(DataError::config("[data.split] is not allowed for format = \"medmnist\": MedMNIST has an official split"));
                }
                if self.classes.is_some() {
                    return Err(DataError::config(
                        "`classes` is not allowed for format = \"medmnist\": class names come from the MedMNIST table",
                    ));
                }
            }
            DataFormat::Folder => {}
            DataFormat::Csv => self.validate_csv_layout()?,
        }
        if let Some(c) = self.channels
            && c != 1
            && c != 3
        {
            return Err(DataError::config(format!("channels = {c}: must be 1 or 3")));
        }
        if let Some(split) = &self.split {
            split.validate()?;
        }
        for spec in self.train_transforms.iter().chain(&self.eval_transforms) {
            spec.validate()?;
        }
        Ok(())
    }

    fn validate_csv_layout(&self) -> Result<(), DataError> {
        if self.image_column.is_none() {
            return Err(DataError::config("format = \"csv\" needs `image_column` (the column naming each image file)"));
        }
        let layouts = [self.label_column.is_some(), self.label_columns.is_some(), self.multilabel_column.is_some()];
        let label_layouts = layouts.iter().filter(|x| **x).count();
        // A box-only CSV (no label column) is a localization set.
        if label_layouts > 1 || (label_layouts == 0 && self.box_columns.is_none()) {
            return Err(DataError::config(
                "format = \"csv\" needs exactly one of `label_column`, `label_columns`, `multilabel_column` (or only `box_columns` for boxes without classes)",
            ));
        }
        if self.box_columns.is_some() && self.multilabel_column.is_some() {
            return Err(DataError::config(
                "`box_columns` cannot be combined with `multilabel_column`: a box carries one class (`label_column` or `label_columns`)",
            ));
        }
        if self.box_units.is_some() && self.box_columns.is_none() {
            return Err(DataError::config("`box_units` applies only with `box_columns`"));
        }
        if label_layouts == 0 && self.classes.is_some() {
            return Err(DataError::config(
                "`classes` needs a label column (`label_column`); `box_columns` alone gives boxes without classes",
            ));
        }
        if self.multilabel_column.is_none() && (self.multilabel_separator.is_some() || self.no_finding.is_some()) {
            return Err(DataError::config("`multilabel_separator` and `no_finding` apply only with `multilabel_column`"));
        }
        if self.label_columns.is_some() && self.classes.is_some() {
            return Err(DataError::config("`classes` cannot be combined with `label_columns`: the columns are the classes"));
        }
        Ok(())
    }

    /// Output channels: the configured value, else the dataset's native channels.
    pub fn output_channels(&self, native: usize) -> usize {
        self.channels.unwrap_or(native)
    }
}

/// `path` as given if absolute, else relative to `base`.
pub(crate) fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() { path.to_path_buf() } else { base.join(path) }
}

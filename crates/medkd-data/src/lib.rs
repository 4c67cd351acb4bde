//! Datasets, splits, transforms, a parallel batch loader and MedMNIST download for medkd.
//!
//! Formats: MedMNIST / MedMNIST+ `.npz` (official splits), image folders (one sub-folder per
//! class) and CSV files (class-name, one-hot or multi-label columns). Images stream from disk and
//! are decoded per sample. Targets are class labels, one bounding box per image (localization) or
//! none (an [`Unlabelled`] view). See [`open_splits`], [`build_pipelines`] and [`Loader`].

mod bbox;
mod class_subset;
mod config;
mod csv_dataset;
mod dataset;
mod dicom;
mod download;
mod error;
mod file_dataset;
mod folder;
mod image_check;
mod loader;
mod medmnist;
mod noise;
mod open;
mod split;
mod transform;

pub use class_subset::{ClassSubset, OTHER_CLASS};
pub use config::{BoxUnits, DataConfig, DataFormat, NormalizeConfig, SplitConfig, TrainSubsetConfig};
pub use dataset::{Concat, DatasetInfo, ImageDataset, Subset, Target, Task, Unlabelled, class_counts};
pub use dicom::{DicomWindow, open_dicom};
pub use download::{PYPI_SIMPLE, WheelFile, download_medmnist, download_wheel_member};
pub use error::DataError;
pub use file_dataset::{has_image_extension, open_image, open_image_with};
pub use image_check::{BadImage, BadImages, cache_dir};
pub use loader::{Batch, EpochIter, Interleave, Loader, LoaderOptions, Sampling, View, sampling_weights};
pub use medmnist::{MEDMNIST_DATASETS, MEDMNIST_SIZES, MedMnistInfo, MedMnistSplit, medmnist_info, open_medmnist, parse_medmnist_stem};
pub use noise::{FlippedLabel, LabelNoiseConfig, NoisyLabels, write_flipped_csv};
pub use open::{DataSplits, open_splits};
pub use split::{
    LabelledFolds, SplitIndices, SplitName, SplitRow, labelled_folds, read_split_csv, split_rows, stratified_split, write_csv,
};
pub use transform::{Normalization, Pipeline, Pipelines, Size, TransformSpec, build_pipelines};

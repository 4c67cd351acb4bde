//! Opening the train/val/test splits a `[data]` config describes.

use std::path::Path;
use std::sync::Arc;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::class_subset::ClassSubset;
use crate::config::{DataConfig, DataFormat, resolve};
use crate::csv_dataset::open_csv;
use crate::folder::open_folder;
use crate::medmnist::open_medmnist;
use crate::noise::{FlippedLabel, NoisyLabels};
use crate::split::{SplitRow, split_rows, stratified_split};
use crate::{BadImage, DataError, ImageDataset, Subset};

pub struct DataSplits {
    pub train: Arc<dyn ImageDataset>,
    pub val: Arc<dyn ImageDataset>,
    pub test: Arc<dyn ImageDataset>,
    /// The assignment of every sample, to save as split.csv, when the split was made here (folder
    /// and CSV sets); `None` for an official split.
    pub split_table: Option<Vec<SplitRow>>,
    /// The training labels `data.label_noise` corrupted, to save as label_noise.csv.
    pub flipped_labels: Option<Vec<FlippedLabel>>,
    /// Images left out with `data.bad_images = "skip"` because they do not decode.
    pub skipped_images: Vec<BadImage>,
}

impl std::fmt::Debug for DataSplits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataSplits")
            .field("info", self.train.info())
            .field("train", &self.train.len())
            .field("val", &self.val.len())
            .field("test", &self.test.len())
            .field("split_table", &self.split_table.as_ref().map(Vec::len))
            .finish()
    }
}

/// Validates `cfg` and opens its data; a relative `cfg.path` resolves against `base_dir` (`medkd`
/// resolves it against the working directory).
pub fn open_splits(cfg: &DataConfig, base_dir: &Path) -> Result<DataSplits, DataError> {
    cfg.validate()?;
    let path = resolve(base_dir, &cfg.path);
    let full = match cfg.format {
        DataFormat::Medmnist => {
            let [train, val, test] = open_medmnist(&path, cfg.task)?;
            return finish_training_split(cfg, Arc::new(train), Arc::new(val), Arc::new(test), None);
        }
        DataFormat::Folder => open_folder(&path, cfg.classes.as_deref(), cfg.task)?,
        DataFormat::Csv => open_csv(cfg, &path)?,
    }
    .with_dicom_window(cfg.dicom_window);
    let (files, skipped_images) = full.checked(cfg.bad_images)?;
    let full: Arc<dyn ImageDataset> = Arc::new(files);
    let split = stratified_split(full.as_ref(), &cfg.split.clone().unwrap_or_default())?;
    let split_table = split_rows(full.as_ref(), &split);
    let splits = finish_training_split(
        cfg,
        Arc::new(Subset::new(full.clone(), split.train)),
        Arc::new(Subset::new(full.clone(), split.val)),
        Arc::new(Subset::new(full, split.test)),
        Some(split_table),
    )?;
    Ok(DataSplits { skipped_images, ..splits })
}

/// Applies `data.label_noise`, then `data.train_subset`, to the training split, then
/// `data.only_classes` to every split.
fn finish_training_split(
    cfg: &DataConfig,
    train: Arc<dyn ImageDataset>,
    val: Arc<dyn ImageDataset>,
    test: Arc<dyn ImageDataset>,
    split_table: Option<Vec<SplitRow>>,
) -> Result<DataSplits, DataError> {
    let (train, flipped_labels): (Arc<dyn ImageDataset>, _) = match &cfg.label_noise {
        Some(noise) => {
            let (noisy, flipped) = NoisyLabels::new(train, noise)?;
            (Arc::new(noisy), Some(flipped))
        }
        None => (train, None),
    };
    let train: Arc<dyn ImageDataset> = match &cfg.train_subset {
        Some(subset) => {
            let mut indices: Vec<usize> = (0..train.len()).collect();
            indices.shuffle(&mut ChaCha8Rng::seed_from_u64(subset.seed));
            indices.truncate(((subset.ratio * train.len() as f64).round() as usize).max(1));
            // Sorted, so the subset keeps the split's order and the loader's shuffle alone decides.
            indices.sort_unstable();
            Arc::new(Subset::new(train, indices))
        }
        None => train,
    };
    let [train, val, test] = match &cfg.only_classes {
        Some(classes) => [train, val, test]
            .map(|split| -> Result<Arc<dyn ImageDataset>, DataError> { Ok(Arc::new(ClassSubset::new(split, classes, cfg.other_class)?)) }),
        None => [Ok(train), Ok(val), Ok(test)],
    };
    Ok(DataSplits { train: train?, val: val?, test: test?, split_table, flipped_labels, skipped_images: Vec::new() })
}

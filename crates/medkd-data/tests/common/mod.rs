//! Shared helpers: the real data folder and small fixtures made from real HAM10000 images.
#![allow(dead_code)] // each test binary uses a different subset of these helpers

use std::fs;
use std::path::{Path, PathBuf};

use image::{DynamicImage, GrayImage, Luma};
use medkd_data::{DataConfig, DataFormat, DatasetInfo, ImageDataset, NormalizeConfig, Target, Task};

pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data")
}

pub fn medmnist(name: &str) -> PathBuf {
    data_dir().join("medmnist").join(format!("{name}.npz"))
}

pub fn ham_dir() -> PathBuf {
    data_dir().join("ham10000")
}

/// The first `per_class` (image_id, dx) rows of HAM10000's labels.csv for each class in `classes`.
pub fn ham_rows(classes: &[&str], per_class: usize) -> Vec<(String, String)> {
    let mut reader = csv::Reader::from_path(ham_dir().join("labels.csv")).unwrap();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.unwrap();
        let (id, dx) = (record[0].to_string(), record[1].to_string());
        let taken = rows.iter().filter(|(_, d): &&(String, String)| *d == dx).count();
        if classes.contains(&dx.as_str()) && taken < per_class {
            rows.push((id, dx));
        }
    }
    assert_eq!(rows.len(), classes.len() * per_class, "not enough HAM10000 images");
    rows
}

/// Copies a real HAM10000 image to `dest`.
pub fn copy_ham_image(id: &str, dest: &Path) {
    fs::create_dir_all(dest.parent().unwrap()).unwrap();
    fs::copy(ham_dir().join("images").join(format!("{id}.jpg")), dest).unwrap();
}

/// A config for `format` at `path` with everything else defaulted.
pub fn config(format: DataFormat, path: &Path) -> DataConfig {
    DataConfig {
        format,
        path: path.to_path_buf(),
        image_dir: None,
        image_column: None,
        image_ext: None,
        label_column: None,
        label_columns: None,
        multilabel_column: None,
        multilabel_separator: None,
        no_finding: None,
        box_columns: None,
        box_units: None,
        classes: None,
        task: None,
        channels: None,
        dicom_window: None,
        split: None,
        label_noise: None,
        train_subset: None,
        only_classes: None,
        bad_images: Default::default(),
        other_class: false,
        train_transforms: Vec::new(),
        eval_transforms: Vec::new(),
        normalize: NormalizeConfig::None {},
    }
}

/// A grayscale image whose pixel (x, y) is `f(x, y)`.
pub fn gray(w: u32, h: u32, f: impl Fn(u32, u32) -> u8) -> DynamicImage {
    DynamicImage::ImageLuma8(GrayImage::from_fn(w, h, |x, y| Luma([f(x, y)])))
}

/// An in-memory dataset of synthetic grayscale images (pixel value = sample index) that counts
/// decodes and can fail on one index.
pub struct Synthetic {
    pub info: DatasetInfo,
    pub n: usize,
    pub side: u32,
    pub decoded: std::sync::atomic::AtomicUsize,
    pub fail_at: Option<usize>,
}

impl Synthetic {
    pub fn new(n: usize, side: u32) -> Self {
        Synthetic {
            info: DatasetInfo {
                name: "synthetic".into(),
                task: Task::MultiClass,
                class_names: vec!["a".into(), "b".into(), "c".into()],
                channels: 1,
            },
            n,
            side,
            decoded: Default::default(),
            fail_at: None,
        }
    }
}

impl ImageDataset for Synthetic {
    fn info(&self) -> &DatasetInfo {
        &self.info
    }
    fn len(&self) -> usize {
        self.n
    }
    fn image(&self, index: usize) -> Result<DynamicImage, medkd_data::DataError> {
        self.decoded.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.fail_at == Some(index) {
            // A real decode failure: bytes that are not an image.
            return image::load_from_memory(b"not an image")
                .map_err(|source| medkd_data::DataError::Image { path: format!("synthetic/{index}.png").into(), source });
        }
        Ok(gray(self.side, self.side, |x, y| ((index as u32 * 7 + x * 3 + y) % 256) as u8))
    }
    fn target(&self, index: usize) -> Target {
        Target::Class(index % 3)
    }
    fn id(&self, index: usize) -> String {
        index.to_string()
    }
}

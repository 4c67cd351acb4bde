//! MedMNIST v2 / MedMNIST+ `.npz` files: the table of the 12 2D datasets (from medmnist 3.0.2's
//! `INFO`), and a dataset per official split.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use image::{DynamicImage, GrayImage, RgbImage};
use ndarray::ArrayD;
use ndarray_npy::{NpzReader, ReadNpzError};

use crate::dataset::resolve_task;
use crate::{DataError, DatasetInfo, ImageDataset, Target, Task};

/// Image sizes MedMNIST publishes: 28 (v2) and the MedMNIST+ sizes.
pub const MEDMNIST_SIZES: [usize; 4] = [28, 64, 128, 224];

/// Every file of MedMNIST 3.0 lives in this Zenodo record.
const ZENODO_RECORD: &str = "https://zenodo.org/records/10519652/files";

/// One 2D MedMNIST dataset as described by medmnist's `INFO`.
#[derive(Debug)]
pub struct MedMnistInfo {
    pub name: &'static str,
    pub task: Task,
    pub class_names: &'static [&'static str],
    pub channels: usize,
    /// MD5 of the npz for each of [`MEDMNIST_SIZES`], in order.
    md5: [&'static str; 4],
}

const ORGAN_CLASSES: &[&str] = &[
    "bladder",
    "femur-left",
    "femur-right",
    "heart",
    "kidney-left",
    "kidney-right",
    "liver",
    "lung-left",
    "lung-right",
    "pancreas",
    "spleen",
];

pub const MEDMNIST_DATASETS: &[MedMnistInfo] = &[
    MedMnistInfo {
        name: "pathmnist",
        task: Task::MultiClass,
        class_names: &[
            "adipose",
            "background",
            "debris",
            "lymphocytes",
            "mucus",
            "smooth muscle",
            "normal colon mucosa",
            "cancer-associated stroma",
            "colorectal adenocarcinoma epithelium",
        ],
        channels: 3,
        md5: [
            "a8b06965200029087d5bd730944a56c1",
            "55aa9c1e0525abe5a6b9d8343a507616",
            "ac42d08fb904d92c244187169d1fd1d9",
            "2c51a510bcdc9cf8ddb2af93af1eadec",
        ],
    },
    MedMnistInfo {
        name: "chestmnist",
        task: Task::MultiLabel,
        class_names: &[
            "atelectasis",
            "cardiomegaly",
            "effusion",
            "infiltration",
            "mass",
            "nodule",
            "pneumonia",
            "pneumothorax",
            "consolidation",
            "edema",
            "emphysema",
            "fibrosis",
            "pleural",
            "hernia",
        ],
        channels: 1,
        md5: [
            "02c8a6516a18b556561a56cbdd36c4a8",
            "9de6cd0b934ebb5b7426cfba5efbae16",
            "db107e5590b27930b62dbaf558aebee3",
            "45bd33e6f06c3e8cdb481c74a89152aa",
        ],
    },
    MedMnistInfo {
        name: "dermamnist",
        task: Task::MultiClass,
        class_names: &[
            "actinic keratoses and intraepithelial carcinoma",
            "basal cell carcinoma",
            "benign keratosis-like lesions",
            "dermatofibroma",
            "melanoma",
            "melanocytic nevi",
            "vascular lesions",
        ],
        channels: 3,
        md5: [
            "0744692d530f8e62ec473284d019b0c7",
            "b70a2f5635c6199aeaa28c31d7202e1f",
            "2defd784463fa5243564e855ed717de1",
            "8974907d8e169bef5f5b96bc506ae45d",
        ],
    },
    MedMnistInfo {
        name: "octmnist",
        task: Task::MultiClass,
        class_names: &["choroidal neovascularization", "diabetic macular edema", "drusen", "normal"],
        channels: 1,
        md5: [
            "c68d92d5b585d8d81f7112f81e2d0842",
            "e229e9440236b774d9f0dfef9d07bdaf",
            "0a97e76651ace45c5d943ee3f65b63ae",
            "abc493b6d529d5de7569faaef2773ba3",
        ],
    },
    MedMnistInfo {
        name: "pneumoniamnist",
        task: Task::Binary,
        class_names: &["normal", "pneumonia"],
        channels: 1,
        md5: [
            "28209eda62fecd6e6a2d98b1501bb15f",
            "8f4eceb4ccffa70c672198ea285246c6",
            "05b46931834c231683c68f40c47b2971",
            "d6a3c71de1b945ea11211b03746c1fe1",
        ],
    },
    MedMnistInfo {
        name: "retinamnist",
        task: Task::Ordinal,
        class_names: &["0", "1", "2", "3", "4"],
        channels: 3,
        md5: [
            "bd4c0672f1bba3e3a89f0e4e876791e4",
            "afda852cc34dcda56f86ad2b2457dbcc",
            "e48e916a24454daf90583d4e6efb1a18",
            "eae7e3b6f3fcbda4ae613ebdcbe35348",
        ],
    },
    MedMnistInfo {
        name: "breastmnist",
        task: Task::Binary,
        class_names: &["malignant", "normal, benign"],
        channels: 1,
        md5: [
            "750601b1f35ba3300ea97c75c52ff8f6",
            "742edef2a1fd1524b2efff4bd7ba9364",
            "363e4b3f8d712e9b5de15470a2aaadf1",
            "b56378a6eefa9fed602bb16d192d4c8b",
        ],
    },
    MedMnistInfo {
        name: "bloodmnist",
        task: Task::MultiClass,
        class_names: &[
            "basophil",
            "eosinophil",
            "erythroblast",
            "immature granulocytes(myelocytes, metamyelocytes and promyelocytes)",
            "lymphocyte",
            "monocyte",
            "neutrophil",
            "platelet",
        ],
        channels: 3,
        md5: [
            "7053d0359d879ad8a5505303e11de1dc",
            "2b94928a2ae4916078ca51e05b6b800b",
            "adace1e0ed228fccda1f39692059dd4c",
            "b718ff6835fcbdb22ba9eacccd7b2601",
        ],
    },
    MedMnistInfo {
        name: "tissuemnist",
        task: Task::MultiClass,
        class_names: &[
            "Collecting Duct, Connecting Tubule",
            "Distal Convoluted Tubule",
            "Glomerular endothelial cells",
            "Interstitial endothelial cells",
            "Leukocytes",
            "Podocytes",
            "Proximal Tubule Segments",
            "Thick Ascending Limb",
        ],
        channels: 1,
        md5: [
            "ebe78ee8b05294063de985d821c1c34b",
            "123ece2eba09d0aa5d698fda57103344",
            "61b955355d7425a89687b06cca3ce0c2",
            "b077128c4a949f0a4eb01517f9037b9c",
        ],
    },
    MedMnistInfo {
        name: "organamnist",
        task: Task::MultiClass,
        class_names: ORGAN_CLASSES,
        channels: 1,
        md5: [
            "68e3f8846a6bd62f0c9bf841c0d9eacc",
            "2dcccc29b88e6da5a01161ef20cda288",
            "eeae80d0a227a8d099027e1b3cfd3b60",
            "50747347e05c87dd3aaf92c49f9f3170",
        ],
    },
    MedMnistInfo {
        name: "organcmnist",
        task: Task::MultiClass,
        class_names: ORGAN_CLASSES,
        channels: 1,
        md5: [
            "b9ceb9546e10131b32923c5bbeaea2b1",
            "3ce34a8724ea6f548e6db4744d03b6a9",
            "773c1f009daa3fe5d9a2a201b2a7ed94",
            "050f5e875dc056f6768abf94ec9995d1",
        ],
    },
    MedMnistInfo {
        name: "organsmnist",
        task: Task::MultiClass,
        class_names: ORGAN_CLASSES,
        channels: 1,
        md5: [
            "9ab87b696fb54e2a387ebe992d6ed5f1",
            "53a6d115339d874c25e309a994ff46d3",
            "ded0c5fa01a95dc4978b956f613e9b8e",
            "b354719e553fbbb2513d5533f52a4cb1",
        ],
    },
];

/// The table entry for `name` (lowercase, e.g. "breastmnist").
pub fn medmnist_info(name: &str) -> Result<&'static MedMnistInfo, DataError> {
    MEDMNIST_DATASETS.iter().find(|d| d.name == name).ok_or_else(|| {
        let known: Vec<_> = MEDMNIST_DATASETS.iter().map(|d| d.name).collect();
        DataError::UnknownDataset(format!("unknown MedMNIST dataset `{name}`; known 2D datasets: {}", known.join(", ")))
    })
}

fn size_index(size: usize) -> Result<usize, DataError> {
    MEDMNIST_SIZES
        .iter()
        .position(|&s| s == size)
        .ok_or_else(|| DataError::UnknownDataset(format!("MedMNIST has no image size {size}; sizes: {MEDMNIST_SIZES:?}")))
}

impl MedMnistInfo {
    /// The official file name: `name.npz` at 28, `name_{size}.npz` otherwise.
    pub fn file_name(&self, size: usize) -> Result<String, DataError> {
        size_index(size)?;
        Ok(if size == 28 { format!("{}.npz", self.name) } else { format!("{}_{size}.npz", self.name) })
    }

    /// The official Zenodo download URL.
    pub fn url(&self, size: usize) -> Result<String, DataError> {
        Ok(format!("{ZENODO_RECORD}/{}?download=1", self.file_name(size)?))
    }

    pub fn md5(&self, size: usize) -> Result<&'static str, DataError> {
        Ok(self.md5[size_index(size)?])
    }
}

/// Parses a file stem such as `breastmnist` (28) or `breastmnist_64`.
pub fn parse_medmnist_stem(stem: &str) -> Result<(&'static MedMnistInfo, usize), DataError> {
    let (name, size) = match stem.rsplit_once('_') {
        Some((name, digits)) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            let size = digits.parse().map_err(|_| DataError::UnknownDataset(format!("bad image size in MedMNIST file name `{stem}`")))?;
            (name, size)
        }
        _ => (stem, 28),
    };
    let info = medmnist_info(&name.to_ascii_lowercase())?;
    size_index(size)?;
    Ok((info, size))
}

/// One official split of a MedMNIST npz, held in memory (uint8 arrays) and decoded per sample.
pub struct MedMnistSplit {
    info: DatasetInfo,
    /// N x H x W x C, row-major.
    images: Vec<u8>,
    height: usize,
    width: usize,
    /// Labels per sample: 1 (class index) or the number of classes (multi-hot).
    label_width: usize,
    labels: Vec<u8>,
}

/// The train, val and test splits of a MedMNIST npz, identified by its file stem.
pub fn open_medmnist(path: &Path, task_override: Option<Task>) -> Result<[MedMnistSplit; 3], DataError> {
    // Opened first, so that a wrong path is reported as missing rather than as an unknown name.
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    let (table, size) = parse_medmnist_stem(stem)?;
    let task = resolve_task(table.task, task_override, table.class_names.len())?;
    let info = DatasetInfo {
        name: table.name.to_string(),
        task,
        class_names: table.class_names.iter().map(|s| s.to_string()).collect(),
        channels: table.channels,
    };
    let not_npz =
        |e: ReadNpzError| DataError::Dataset { path: path.to_path_buf(), message: format!("not a readable npz (zip) archive: {e}") };
    let mut npz = NpzReader::new(BufReader::new(file)).map_err(not_npz)?;
    let found = npz.names().map_err(not_npz)?;
    let mut read = |split: &str| -> Result<MedMnistSplit, DataError> {
        let images = read_u8(&mut npz, path, &format!("{split}_images"), &found)?;
        let labels = read_u8(&mut npz, path, &format!("{split}_labels"), &found)?;
        MedMnistSplit::new(info.clone(), path, split, size, images, labels)
    };
    Ok([read("train")?, read("val")?, read("test")?])
}

fn read_u8(npz: &mut NpzReader<BufReader<File>>, path: &Path, key: &str, found: &[String]) -> Result<ArrayD<u8>, DataError> {
    if !found.iter().any(|k| k == key) {
        return Err(DataError::NpzMissingKey { path: path.to_path_buf(), key: key.to_string(), found: found.to_vec() });
    }
    npz.by_name(key).map_err(|e| npz_error(path, key, e))
}

fn npz_error(path: &Path, key: &str, e: ReadNpzError) -> DataError {
    DataError::Npz { path: path.to_path_buf(), key: key.to_string(), message: format!("expected a uint8 array in a valid npz: {e}") }
}

/// The array's elements in row-major order, without a copy when already laid out that way.
fn into_row_major(a: ArrayD<u8>) -> Vec<u8> {
    let a = if a.is_standard_layout() { a } else { a.as_standard_layout().into_owned() };
    a.into_raw_vec_and_offset().0
}

impl MedMnistSplit {
    fn new(info: DatasetInfo, path: &Path, split: &str, size: usize, images: ArrayD<u8>, labels: ArrayD<u8>) -> Result<Self, DataError> {
        let bad = |key: &str, message: String| DataError::Npz { path: PathBuf::from(path), key: format!("{split}_{key}"), message };
        let (n, height, width, channels) = match *images.shape() {
            [n, h, w] => (n, h, w, 1),
            [n, h, w, c] if c == 1 || c == 3 => (n, h, w, c),
            ref s => {
                return Err(bad("images", format!("expected shape (N,H,W) or (N,H,W,3), found {s:?}")));
            }
        };
        if height != size || width != size {
            return Err(bad("images", format!("the file name says {size}x{size} images, found {height}x{width}")));
        }
        if channels != info.channels {
            return Err(bad("images", format!("{} has {} channels, found {channels}", info.name, info.channels)));
        }
        let label_width = if info.task == Task::MultiLabel { info.num_classes() } else { 1 };
        if labels.shape() != [n, label_width] {
            return Err(bad("labels", format!("expected shape ({n}, {label_width}), found {:?}", labels.shape())));
        }
        let labels = into_row_major(labels);
        let limit = if label_width == 1 { info.num_classes() } else { 2 };
        if let Some((index, &value)) = labels.iter().enumerate().find(|(_, v)| usize::from(**v) >= limit) {
            return Err(DataError::LabelOutOfRange {
                path: path.to_path_buf(),
                split: split.to_string(),
                index: index / label_width,
                value: value.into(),
                num_classes: limit,
            });
        }
        Ok(MedMnistSplit { info, images: into_row_major(images), height, width, label_width, labels })
    }
}

impl ImageDataset for MedMnistSplit {
    fn info(&self) -> &DatasetInfo {
        &self.info
    }

    fn len(&self) -> usize {
        self.labels.len() / self.label_width
    }

    fn image(&self, index: usize) -> Result<DynamicImage, DataError> {
        let (w, h) = (self.width as u32, self.height as u32);
        let pixels = self.height * self.width * self.info.channels;
        let raw = self.images[index * pixels..(index + 1) * pixels].to_vec();
        // The buffer length always matches (checked at open), so `from_raw` cannot fail.
        Ok(if self.info.channels == 1 {
            DynamicImage::ImageLuma8(GrayImage::from_raw(w, h, raw).expect("length checked"))
        } else {
            DynamicImage::ImageRgb8(RgbImage::from_raw(w, h, raw).expect("length checked"))
        })
    }

    fn target(&self, index: usize) -> Target {
        let row = &self.labels[index * self.label_width..(index + 1) * self.label_width];
        if self.info.task == Task::MultiLabel { Target::MultiHot(row.to_vec()) } else { Target::Class(usize::from(row[0])) }
    }

    fn id(&self, index: usize) -> String {
        index.to_string()
    }
}

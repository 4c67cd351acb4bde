//! MedMNIST: the real npz files, the dataset table, and npz errors.

mod common;

use std::fs::File;

use common::{config, medmnist};
use medkd_data::{
    DataError, DataFormat, MEDMNIST_DATASETS, SplitConfig, Target, Task, class_counts, medmnist_info, open_splits, parse_medmnist_stem,
};
use ndarray::{Array2, Array3};
use ndarray_npy::NpzWriter;

fn open(name: &str) -> medkd_data::DataSplits {
    open_splits(&config(DataFormat::Medmnist, &medmnist(name)), std::path::Path::new("/")).unwrap()
}

#[test]
fn real_files_open_with_official_split_sizes_and_labels() {
    // (name, [train, val, test], classes, channels, task, train class counts from PROVENANCE.txt)
    type Case = (&'static str, [usize; 3], usize, usize, Task, &'static [usize]);
    let cases: [Case; 3] = [
        ("pneumoniamnist", [4708, 524, 624], 2, 1, Task::Binary, &[1214, 3494]),
        ("breastmnist", [546, 78, 156], 2, 1, Task::Binary, &[147, 399]),
        ("retinamnist", [1080, 120, 400], 5, 3, Task::Ordinal, &[486, 128, 206, 194, 66]),
    ];
    for (name, sizes, classes, channels, task, train_counts) in cases {
        let s = open(name);
        assert_eq!([s.train.len(), s.val.len(), s.test.len()], sizes, "{name}");
        assert!(s.split_table.is_none(), "official split is not recorded");
        let info = s.train.info();
        assert_eq!((info.name.as_str(), info.num_classes(), info.channels, info.task), (name, classes, channels, task));
        assert_eq!(class_counts(s.train.as_ref()), train_counts, "{name}");
        for ds in [&s.train, &s.val, &s.test] {
            for i in 0..ds.len() {
                let Target::Class(c) = ds.target(i) else { panic!("single-label expected") };
                assert!(c < classes);
            }
        }
        let img = s.test.image(s.test.len() - 1).unwrap();
        assert_eq!((img.width(), img.height()), (28, 28));
        assert_eq!(img.color().has_color(), channels == 3);
        assert_eq!(s.val.id(5), "5");
    }
}

#[test]
fn decoded_pixels_are_the_stored_bytes() {
    // Sample 0 of breastmnist's train split decoded twice gives the same non-constant image.
    let s = open("breastmnist");
    let a = s.train.image(0).unwrap().to_luma8();
    let b = s.train.image(1).unwrap().to_luma8();
    assert_ne!(a, b);
    assert_eq!(a, s.train.image(0).unwrap().to_luma8());
    assert!(a.pixels().any(|p| p[0] != a.get_pixel(0, 0)[0]));
}

#[test]
fn table_has_the_twelve_2d_datasets_with_official_urls() {
    let names: Vec<_> = MEDMNIST_DATASETS.iter().map(|d| d.name).collect();
    assert_eq!(
        names,
        [
            "pathmnist",
            "chestmnist",
            "dermamnist",
            "octmnist",
            "pneumoniamnist",
            "retinamnist",
            "breastmnist",
            "bloodmnist",
            "tissuemnist",
            "organamnist",
            "organcmnist",
            "organsmnist"
        ]
    );
    let chest = medmnist_info("chestmnist").unwrap();
    assert_eq!((chest.task, chest.class_names.len()), (Task::MultiLabel, 14));
    let breast = medmnist_info("breastmnist").unwrap();
    assert_eq!(breast.url(64).unwrap(), "https://zenodo.org/records/10519652/files/breastmnist_64.npz?download=1");
    assert_eq!(breast.url(28).unwrap(), "https://zenodo.org/records/10519652/files/breastmnist.npz?download=1");
    assert_eq!(breast.md5(224).unwrap(), "b56378a6eefa9fed602bb16d192d4c8b");
    assert_eq!(medmnist_info("organsmnist").unwrap().md5(128).unwrap(), "ded0c5fa01a95dc4978b956f613e9b8e");
    for d in MEDMNIST_DATASETS {
        for size in medkd_data::MEDMNIST_SIZES {
            let md5 = d.md5(size).unwrap();
            assert!(md5.len() == 32 && md5.bytes().all(|b| b.is_ascii_hexdigit()), "{} {size}", d.name);
        }
    }
    assert!(breast.md5(32).is_err());
}

#[test]
fn file_stem_gives_dataset_and_size() {
    let (info, size) = parse_medmnist_stem("breastmnist_64").unwrap();
    assert_eq!((info.name, size), ("breastmnist", 64));
    assert_eq!(parse_medmnist_stem("retinamnist").unwrap().1, 28);
    let err = parse_medmnist_stem("kneemnist_64").unwrap_err().to_string();
    assert!(err.contains("kneemnist") && err.contains("breastmnist"), "{err}");
    assert!(parse_medmnist_stem("breastmnist_65").unwrap_err().to_string().contains("65"));
}

#[test]
fn task_override_and_split_for_medmnist() {
    let mut cfg = config(DataFormat::Medmnist, &medmnist("retinamnist"));
    cfg.task = Some(Task::MultiClass);
    assert_eq!(open_splits(&cfg, "/".as_ref()).unwrap().train.info().task, Task::MultiClass);
    cfg.task = Some(Task::Binary);
    assert!(open_splits(&cfg, "/".as_ref()).unwrap_err().to_string().contains("2 classes"));
    cfg.task = None;
    cfg.split = Some(SplitConfig::default());
    let err = open_splits(&cfg, "/".as_ref()).unwrap_err().to_string();
    assert!(err.contains("[data.split]") && err.contains("official split"), "{err}");
}

/// Writes a breastmnist-named npz with `train` labels and optionally without `val_labels`.
fn write_npz(path: &std::path::Path, train_labels: &[u8], with_val_labels: bool) {
    let mut npz = NpzWriter::new(File::create(path).unwrap());
    let n = train_labels.len();
    npz.add_array("train_images", &Array3::<u8>::zeros((n, 28, 28))).unwrap();
    npz.add_array("train_labels", &Array2::from_shape_vec((n, 1), train_labels.to_vec()).unwrap()).unwrap();
    for split in ["val", "test"] {
        npz.add_array(format!("{split}_images"), &Array3::<u8>::zeros((2, 28, 28))).unwrap();
        if split != "val" || with_val_labels {
            npz.add_array(format!("{split}_labels"), &Array2::<u8>::zeros((2, 1))).unwrap();
        }
    }
    npz.finish().unwrap();
}

#[test]
fn npz_errors_name_file_key_and_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("breastmnist.npz");

    write_npz(&path, &[0, 1, 1], false);
    let err = open_splits(&config(DataFormat::Medmnist, &path), dir.path()).unwrap_err();
    assert!(matches!(err, DataError::NpzMissingKey { .. }));
    let msg = err.to_string();
    assert!(msg.contains("breastmnist.npz") && msg.contains("`val_labels`") && msg.contains("train_images"), "{msg}");

    write_npz(&path, &[0, 1, 7, 1], true);
    let msg = open_splits(&config(DataFormat::Medmnist, &path), dir.path()).unwrap_err().to_string();
    assert!(msg.contains("index 2") && msg.contains("value 7") && msg.contains("2 classes"), "{msg}");

    let unknown = dir.path().join("kneemnist.npz");
    std::fs::copy(&path, &unknown).unwrap();
    let msg = open_splits(&config(DataFormat::Medmnist, &unknown), dir.path()).unwrap_err().to_string();
    assert!(msg.contains("unknown MedMNIST dataset `kneemnist`"), "{msg}");

    let wrong_size = dir.path().join("breastmnist_64.npz");
    std::fs::copy(&path, &wrong_size).unwrap();
    let msg = open_splits(&config(DataFormat::Medmnist, &wrong_size), dir.path()).unwrap_err().to_string();
    assert!(msg.contains("64x64") && msg.contains("28x28"), "{msg}");

    std::fs::write(&path, b"not a zip").unwrap();
    let msg = open_splits(&config(DataFormat::Medmnist, &path), dir.path()).unwrap_err().to_string();
    assert!(msg.contains("breastmnist.npz"), "{msg}");
}

//! Synthetic label noise on real MedMNIST splits: exact counts per class, seeded, training split
//! only, and errors that name the key.

mod common;

use common::{config, medmnist};
use medkd_data::{DataFormat, DataSplits, ImageDataset, LabelNoiseConfig, Target, TrainSubsetConfig, labelled_folds, open_splits};

fn open(name: &str, noise: Option<LabelNoiseConfig>) -> Result<DataSplits, String> {
    let mut cfg = config(DataFormat::Medmnist, &medmnist(name));
    cfg.label_noise = noise;
    open_splits(&cfg, std::path::Path::new("/")).map_err(|e| e.to_string())
}

fn labels(ds: &dyn ImageDataset) -> Vec<usize> {
    (0..ds.len())
        .map(|i| match ds.target(i) {
            Target::Class(c) => c,
            other => unreachable!("{other:?}"),
        })
        .collect()
}

#[test]
fn symmetric_noise_flips_an_exact_fraction_of_each_class_to_other_classes() {
    let clean = open("retinamnist", None).unwrap();
    let noisy = open("retinamnist", Some(LabelNoiseConfig::Symmetric { rate: 0.4, seed: 3 })).unwrap();
    let (before, after) = (labels(clean.train.as_ref()), labels(noisy.train.as_ref()));
    let flipped = noisy.flipped_labels.clone().unwrap();
    // Exactly the listed samples changed, each to another class, and the list is right.
    let changed: Vec<usize> = (0..before.len()).filter(|&i| before[i] != after[i]).collect();
    assert_eq!(changed, flipped.iter().map(|f| f.index).collect::<Vec<_>>());
    for f in &flipped {
        assert_eq!((f.clean, f.noisy), (before[f.index], after[f.index]));
        assert_eq!(f.id, clean.train.id(f.index));
    }
    // round(0.4 x N_c) per class.
    for class in 0..5 {
        let n = before.iter().filter(|&&c| c == class).count();
        let moved = flipped.iter().filter(|f| f.clean == class).count();
        assert_eq!(moved, (0.4 * n as f64).round() as usize, "class {class}");
    }
    // Every other class receives some: the draw is spread, not a fixed target.
    assert!((0..5).all(|c| flipped.iter().any(|f| f.noisy == c)));
    // Validation and test stay clean; the same seed gives the same flips, another seed others.
    assert_eq!(labels(noisy.val.as_ref()), labels(clean.val.as_ref()));
    assert_eq!(labels(noisy.test.as_ref()), labels(clean.test.as_ref()));
    let again = open("retinamnist", Some(LabelNoiseConfig::Symmetric { rate: 0.4, seed: 3 })).unwrap();
    assert_eq!(again.flipped_labels, noisy.flipped_labels);
    let other = open("retinamnist", Some(LabelNoiseConfig::Symmetric { rate: 0.4, seed: 4 })).unwrap();
    assert_ne!(other.flipped_labels, noisy.flipped_labels);
}

#[test]
fn asymmetric_and_per_class_noise_follow_their_maps() {
    let clean = labels(open("breastmnist", None).unwrap().train.as_ref());
    let pairs = vec![["malignant".to_string(), "normal, benign".to_string()]];
    let noisy = open("breastmnist", Some(LabelNoiseConfig::Asymmetric { rate: 0.2, pairs, seed: 0 })).unwrap();
    let flipped = noisy.flipped_labels.unwrap();
    let malignant = clean.iter().filter(|&&c| c == 0).count();
    assert_eq!(flipped.len(), (0.2 * malignant as f64).round() as usize);
    assert!(flipped.iter().all(|f| f.clean == 0 && f.noisy == 1), "only malignant -> benign");

    let per_class = open("breastmnist", Some(LabelNoiseConfig::PerClass { rates: vec![0.0, 0.5], seed: 0 })).unwrap();
    let flipped = per_class.flipped_labels.unwrap();
    let benign = clean.len() - malignant;
    assert_eq!(flipped.len(), (0.5 * benign as f64).round() as usize);
    assert!(flipped.iter().all(|f| f.clean == 1 && f.noisy == 0));
}

#[test]
fn bad_noise_settings_name_the_key() {
    let error = |noise| open("breastmnist", Some(noise)).err().unwrap();
    assert!(error(LabelNoiseConfig::Symmetric { rate: 1.5, seed: 0 }).contains("label_noise.rate"));
    assert!(error(LabelNoiseConfig::PerClass { rates: vec![0.1], seed: 0 }).contains("1 rates for 2 classes"));
    let unknown = vec![["malignant".to_string(), "cyst".to_string()]];
    assert!(error(LabelNoiseConfig::Asymmetric { rate: 0.2, pairs: unknown, seed: 0 }).contains("unknown class `cyst`"));
    let to_itself = vec![["malignant".to_string(), "malignant".to_string()]];
    assert!(error(LabelNoiseConfig::Asymmetric { rate: 0.2, pairs: to_itself, seed: 0 }).contains("maps to itself"));
}

#[test]
fn train_subsets_are_seeded_fractions_of_the_noisy_training_split() {
    let open_subset = |seed: u64, ratio: f64| {
        let mut cfg = config(DataFormat::Medmnist, &medmnist("breastmnist"));
        cfg.label_noise = Some(LabelNoiseConfig::Symmetric { rate: 0.2, seed: 0 });
        cfg.train_subset = Some(TrainSubsetConfig { ratio, seed });
        open_splits(&cfg, std::path::Path::new("/")).map_err(|e| e.to_string())
    };
    let full = open("breastmnist", Some(LabelNoiseConfig::Symmetric { rate: 0.2, seed: 0 })).unwrap();
    let ids = |splits: &DataSplits| (0..splits.train.len()).map(|i| splits.train.id(i)).collect::<Vec<_>>();
    let (a, b) = (open_subset(1, 0.7).unwrap(), open_subset(2, 0.7).unwrap());
    assert_eq!(a.train.len(), (0.7f64 * 546.0).round() as usize);
    assert_eq!(ids(&a), ids(&open_subset(1, 0.7).unwrap()), "seeded");
    assert_ne!(ids(&a), ids(&b), "another seed, another subset");
    // Subsets overlap and carry the noisy labels of the full training split.
    let common = ids(&a).iter().filter(|id| ids(&b).contains(id)).count();
    assert!(common > 546 * 4 / 10, "{common}");
    let full_labels: std::collections::HashMap<String, Target> =
        (0..full.train.len()).map(|i| (full.train.id(i), full.train.target(i))).collect();
    assert!((0..a.train.len()).all(|i| full_labels[&a.train.id(i)] == a.train.target(i)));
    assert_eq!(a.val.len(), full.val.len());
    assert!(open_subset(0, 0.0).unwrap_err().contains("train_subset.ratio"));
}

/// DISTL's labelled part is the sample set `train_subset` keeps with the same fraction and seed
/// (so round 0 and a supervised run on that subset see the same labels); the folds split the
/// rest evenly; bad fractions and folds that do not fit are refused.
#[test]
fn labelled_folds_share_train_subsets_labelled_part_and_split_the_rest() {
    let full = open("breastmnist", None).unwrap();
    let n = full.train.len();
    let mut cfg = config(DataFormat::Medmnist, &medmnist("breastmnist"));
    cfg.train_subset = Some(TrainSubsetConfig { ratio: 0.1, seed: 4 });
    let subset = open_splits(&cfg, std::path::Path::new("/")).unwrap().train;
    let parts = labelled_folds(n, 0.1, 3, 4).unwrap();
    let subset_ids: Vec<String> = (0..subset.len()).map(|i| subset.id(i)).collect();
    let labelled_ids: Vec<String> = parts.labelled.iter().map(|&i| full.train.id(i)).collect();
    assert_eq!(labelled_ids, subset_ids);
    let sizes: Vec<usize> = parts.folds.iter().map(Vec::len).collect();
    assert_eq!(sizes.iter().sum::<usize>() + parts.labelled.len(), n);
    assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "{sizes:?}");
    let mut all: Vec<usize> = parts.folds.iter().flatten().chain(&parts.labelled).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..n).collect::<Vec<_>>(), "a partition of the training split");
    assert_eq!(parts, labelled_folds(n, 0.1, 3, 4).unwrap(), "seeded");
    assert_ne!(parts.folds, labelled_folds(n, 0.1, 3, 5).unwrap().folds);
    assert!(labelled_folds(n, 1.0, 3, 0).unwrap_err().to_string().contains("(0, 1)"));
    assert!(labelled_folds(n, 0.0, 3, 0).unwrap_err().to_string().contains("(0, 1)"));
    let too_many = labelled_folds(10, 0.5, 6, 0).unwrap_err().to_string();
    assert!(too_many.contains("6 unlabelled folds do not fit") && too_many.contains("leave 5"), "{too_many}");
}

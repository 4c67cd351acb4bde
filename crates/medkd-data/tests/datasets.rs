//! CSV and image-folder datasets, seeded stratified splits and split.csv.

mod common;

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use common::{config, copy_ham_image, ham_dir, ham_rows};
use medkd_data::{
    DataConfig, DataError, DataFormat, SplitConfig, SplitName, SplitRow, Target, Task, class_counts, open_splits, read_split_csv, write_csv,
};

const HAM_CLASSES: [&str; 7] = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"];

fn ham_config(seed: u64) -> DataConfig {
    let mut cfg = config(DataFormat::Csv, &ham_dir().join("labels.csv"));
    cfg.image_dir = Some("images".into());
    cfg.image_column = Some("image_id".into());
    cfg.image_ext = Some("jpg".into());
    cfg.label_column = Some("dx".into());
    cfg.classes = Some(HAM_CLASSES.iter().map(|s| s.to_string()).collect());
    cfg.split = Some(SplitConfig { val: 0.15, test: 0.15, seed, ..Default::default() });
    cfg
}

#[test]
fn ham10000_csv_split_is_stratified_seeded_and_round_trips() {
    let splits = open_splits(&ham_config(0), Path::new("/")).unwrap();
    let info = splits.train.info();
    assert_eq!(info.class_names, HAM_CLASSES);
    assert_eq!((info.task, info.channels), (Task::MultiClass, 3));
    assert_eq!(splits.train.len() + splits.val.len() + splits.test.len(), 5984);

    let table = splits.split_table.clone().unwrap();
    assert_eq!(table.len(), 5984);
    assert_eq!(table[0], SplitRow { image: "ISIC_0024306.jpg".into(), label: "nv".into(), split: table[0].split });
    // Per class, each split holds its target share within one sample.
    let mut per_class: HashMap<(&str, SplitName), usize> = HashMap::new();
    for row in &table {
        *per_class.entry((row.label.as_str(), row.split)).or_default() += 1;
    }
    let totals = class_counts(splits.train.as_ref())
        .iter()
        .zip(class_counts(splits.val.as_ref()))
        .zip(class_counts(splits.test.as_ref()))
        .map(|((a, b), c)| a + b + c)
        .collect::<Vec<_>>();
    assert_eq!(totals.iter().sum::<usize>(), 5984);
    assert_eq!(totals[5], 4323, "nv count from the README");
    for (c, name) in HAM_CLASSES.iter().enumerate() {
        let n = totals[c] as f64;
        for (split, frac) in [(SplitName::Val, 0.15), (SplitName::Test, 0.15), (SplitName::Train, 0.70)] {
            let got = per_class.get(&(*name, split)).copied().unwrap_or(0) as f64;
            assert!((got - frac * n).abs() <= 1.0, "{name} {split:?}: {got} vs {}", frac * n);
        }
    }
    // Subset views agree with the table.
    let val_ids: Vec<String> = (0..splits.val.len()).map(|i| splits.val.id(i)).collect();
    let table_val: Vec<String> = table.iter().filter(|r| r.split == SplitName::Val).map(|r| r.image.clone()).collect();
    assert_eq!(val_ids, table_val);
    let img = splits.val.image(0).unwrap();
    assert_eq!((img.width(), img.height()), (224, 224));

    let again = open_splits(&ham_config(0), Path::new("/")).unwrap().split_table.unwrap();
    assert_eq!(again, table, "same seed, same split");
    let other = open_splits(&ham_config(1), Path::new("/")).unwrap().split_table.unwrap();
    assert_ne!(other, table, "another seed, another split");

    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("split.csv");
    write_csv(&table, &csv).unwrap();
    let text = fs::read_to_string(&csv).unwrap();
    assert!(text.starts_with("image,label,split\nISIC_0024306.jpg,nv,"), "{}", &text[..60]);
    assert_eq!(read_split_csv(&csv).unwrap(), table);
}

/// `root/<dx>/<id>.jpg` for 4 real images of each class.
fn make_folder(root: &Path, classes: &[&str]) -> Vec<(String, String)> {
    let rows = ham_rows(classes, 4);
    for (id, dx) in &rows {
        copy_ham_image(id, &root.join(dx).join(format!("{id}.jpg")));
    }
    fs::write(root.join("mel").join("notes.txt"), "not an image").unwrap();
    rows
}

#[test]
fn image_folder_classes_are_sorted_sub_folders() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("derm");
    let rows = make_folder(&root, &["nv", "mel", "bcc"]);
    let mut cfg = config(DataFormat::Folder, Path::new("derm"));
    cfg.split = Some(SplitConfig { val: 0.25, test: 0.25, seed: 3, ..Default::default() });
    let s = open_splits(&cfg, dir.path()).unwrap();
    assert_eq!(s.train.info().class_names, ["bcc", "mel", "nv"]);
    assert_eq!(s.train.info().name, "derm");
    assert_eq!([s.train.len(), s.val.len(), s.test.len()], [6, 3, 3]);
    for ds in [&s.train, &s.val, &s.test] {
        for i in 0..ds.len() {
            let id = ds.id(i);
            let (class, file) = id.split_once('/').unwrap();
            assert!(rows.iter().any(|(r, dx)| file == format!("{r}.jpg") && dx == class));
            assert_eq!(ds.target(i), Target::Class(["bcc", "mel", "nv"].iter().position(|c| *c == class).unwrap()));
        }
    }
    assert_eq!(class_counts(s.val.as_ref()), [1, 1, 1]);

    cfg.classes = Some(vec!["nv".into(), "mel".into(), "bcc".into()]);
    let s = open_splits(&cfg, dir.path()).unwrap();
    assert_eq!(s.train.info().class_names, ["nv", "mel", "bcc"]);
    cfg.classes = Some(vec!["nv".into(), "mel".into()]);
    let msg = open_splits(&cfg, dir.path()).unwrap_err().to_string();
    assert!(msg.contains("sub-folder `bcc` is not in `classes`"), "{msg}");
}

/// Copies 3 real images per class into `dir/images` and writes `dir/<name>` with `header` and one
/// line per image from `line(id_without_ext, dx)`.
fn make_csv(dir: &Path, name: &str, header: &str, line: impl Fn(&str, &str) -> String) -> Vec<(String, String)> {
    let rows = ham_rows(&["mel", "nv", "bcc"], 3);
    let mut text = format!("{header}\n");
    for (id, dx) in &rows {
        copy_ham_image(id, &dir.join("images").join(format!("{id}.jpg")));
        text += &line(id, dx);
        text += "\n";
    }
    fs::write(dir.join(name), text).unwrap();
    rows
}

fn csv_config(path: &Path, image_column: &str) -> DataConfig {
    let mut cfg = config(DataFormat::Csv, path);
    cfg.image_dir = Some("images".into());
    cfg.image_column = Some(image_column.into());
    cfg.image_ext = Some("jpg".into());
    cfg.split = Some(SplitConfig { val: 0.0, test: 0.0, seed: 0, ..Default::default() });
    cfg
}

#[test]
fn isic_one_hot_columns() {
    let dir = tempfile::tempdir().unwrap();
    let order = ["MEL", "NV", "BCC"];
    let rows = make_csv(dir.path(), "GroundTruth.csv", "image,MEL,NV,BCC,UNK", |id, dx| {
        let hot: Vec<&str> = ["mel", "nv", "bcc"].iter().map(|c| if *c == dx { "1.0" } else { "0.0" }).collect();
        format!("{id},{},0.0", hot.join(","))
    });
    let mut cfg = csv_config(&dir.path().join("GroundTruth.csv"), "image");
    cfg.label_columns = Some(order.iter().map(|s| s.to_string()).collect());
    let s = open_splits(&cfg, dir.path()).unwrap();
    assert_eq!(s.train.info().class_names, order);
    assert_eq!(s.train.info().task, Task::MultiClass);
    assert_eq!(s.train.len(), 9);
    for (i, (id, dx)) in rows.iter().enumerate() {
        assert_eq!(s.train.id(i), format!("{id}.jpg"));
        let expected = ["mel", "nv", "bcc"].iter().position(|c| c == dx).unwrap();
        assert_eq!(s.train.target(i), Target::Class(expected));
    }

    // Two 1s in data row 2; a non-numeric value in data row 1.
    let text = fs::read_to_string(dir.path().join("GroundTruth.csv")).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    lines[2] = lines[2].replacen("0.0", "1.0", 1);
    fs::write(dir.path().join("GroundTruth.csv"), lines.join("\n")).unwrap();
    let msg = open_splits(&cfg, dir.path()).unwrap_err().to_string();
    assert!(msg.contains("data row 2") && msg.contains("exactly one 1") && msg.contains("found 2"), "{msg}");
    lines[1] = lines[1].replacen("0.0", "yes", 1);
    fs::write(dir.path().join("GroundTruth.csv"), lines.join("\n")).unwrap();
    let msg = open_splits(&cfg, dir.path()).unwrap_err().to_string();
    assert!(msg.contains("data row 1") && msg.contains("`yes`"), "{msg}");
}

#[test]
fn nih_style_multi_label_column() {
    let dir = tempfile::tempdir().unwrap();
    // mel -> "Mass|Effusion", nv -> "No Finding", bcc -> "Nodule"
    let finding = |dx: &str| match dx {
        "mel" => "Mass|Effusion",
        "nv" => "No Finding",
        _ => "Nodule",
    };
    let rows =
        make_csv(dir.path(), "Data_Entry.csv", "Image Index,Finding Labels,Patient Age", |id, dx| format!("{id}.jpg,{},50", finding(dx)));
    let mut cfg = csv_config(&dir.path().join("Data_Entry.csv"), "Image Index");
    cfg.image_ext = None;
    cfg.multilabel_column = Some("Finding Labels".into());
    cfg.split = Some(SplitConfig { val: 0.34, test: 0.0, seed: 0, ..Default::default() });
    let s = open_splits(&cfg, dir.path()).unwrap();
    let info = s.train.info();
    assert_eq!(info.class_names, ["Effusion", "Mass", "Nodule"]);
    assert_eq!(info.task, Task::MultiLabel);
    assert_eq!(s.train.len() + s.val.len(), 9);
    // The rarest positive label stratifies: one of each 3-sample group goes to val.
    assert_eq!(s.val.len(), 3);
    let table = s.split_table.unwrap();
    for row in &table {
        let dx = &rows.iter().find(|(id, _)| format!("{id}.jpg") == row.image).unwrap().1;
        let expected = match dx.as_str() {
            "mel" => "Effusion|Mass",
            "nv" => "",
            _ => "Nodule",
        };
        assert_eq!(row.label, expected);
    }
    for i in 0..s.train.len() {
        let Target::MultiHot(hot) = s.train.target(i) else { panic!("multi-hot expected") };
        assert_eq!(hot.len(), 3);
    }
}

#[test]
fn csv_errors_name_row_column_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let rows = make_csv(dir.path(), "labels.csv", "image_id,dx", |id, dx| format!("{id},{dx}"));
    let first_bcc = rows.iter().position(|(_, dx)| dx == "bcc").unwrap() + 1;
    let path = dir.path().join("labels.csv");
    let mut cfg = csv_config(&path, "image_id");
    cfg.label_column = Some("dx".into());
    assert_eq!(open_splits(&cfg, dir.path()).unwrap().train.info().class_names, ["bcc", "mel", "nv"]);

    cfg.classes = Some(vec!["mel".into(), "nv".into()]);
    let msg = open_splits(&cfg, dir.path()).unwrap_err().to_string();
    assert!(
        msg.contains("labels.csv")
            && msg.contains(&format!("data row {first_bcc},"))
            && msg.contains("`dx`")
            && msg.contains("unknown class `bcc`"),
        "{msg}"
    );
    cfg.classes = None;

    cfg.label_column = Some("diagnosis".into());
    let err = open_splits(&cfg, dir.path()).unwrap_err();
    assert!(matches!(err, DataError::MissingColumn { .. }));
    assert!(err.to_string().contains("no column `diagnosis`; columns found: [image_id, dx]"), "{err}");
    cfg.label_column = Some("dx".into());

    let text = fs::read_to_string(&path).unwrap();
    fs::write(&path, format!("{text}ISIC_missing,nv\n")).unwrap();
    let msg = open_splits(&cfg, dir.path()).unwrap_err().to_string();
    assert!(msg.contains("ISIC_missing.jpg") && msg.contains("data row 10") && msg.contains("does not exist"), "{msg}");

    fs::write(&path, format!("{text}ISIC_short\n")).unwrap();
    let msg = open_splits(&cfg, dir.path()).unwrap_err().to_string();
    assert!(msg.contains("data row 10"), "{msg}");

    let first = text.lines().nth(1).unwrap();
    fs::write(&path, format!("{text}{first}\n")).unwrap();
    let msg = open_splits(&cfg, dir.path()).unwrap_err().to_string();
    assert!(msg.contains("already listed in data row 1"), "{msg}");

    // A corrupt image is found when the data is opened (every image is decoded once), with its
    // row and file; with `bad_images = "skip"` the set opens without it.
    fs::write(&path, &text).unwrap();
    let (bad_id, _) = text.lines().nth(2).unwrap().split_once(',').unwrap();
    fs::write(dir.path().join("images").join(format!("{bad_id}.jpg")), b"\xff\xd8garbage").unwrap();
    let msg = open_splits(&cfg, dir.path()).unwrap_err().to_string();
    assert!(msg.contains(&format!("data row 2: {bad_id}.jpg")) && msg.contains("1 of 9 images"), "{msg}");
    cfg.bad_images = medkd_data::BadImages::Skip;
    let s = open_splits(&cfg, dir.path()).unwrap();
    assert_eq!(s.skipped_images.iter().map(|b| (b.id.as_str(), b.row)).collect::<Vec<_>>(), [(format!("{bad_id}.jpg").as_str(), Some(2))]);
    assert_eq!(s.train.len() + s.val.len() + s.test.len(), 8);
    cfg.bad_images = medkd_data::BadImages::Error;

    cfg.label_columns = Some(vec!["dx".into()]);
    let msg = open_splits(&cfg, dir.path()).unwrap_err().to_string();
    assert!(msg.contains("exactly one of"), "{msg}");
}

#[test]
fn split_fractions_are_validated() {
    let mut cfg = ham_config(0);
    for (val, test, needle) in [(1.0, 0.1, "split.val = 1"), (0.2, -0.1, "split.test = -0.1"), (0.6, 0.4, "below 1")] {
        cfg.split = Some(SplitConfig { val, test, seed: 0, ..Default::default() });
        let msg = open_splits(&cfg, Path::new("/")).unwrap_err().to_string();
        assert!(msg.contains(needle), "{msg}");
    }
}

/// K-fold cross-validation splits: the five test folds partition the set, each class spread over
/// them within one sample, the folds within one sample of each other; validation comes from the
/// other folds. Bad fold keys are refused by name.
#[test]
fn k_fold_test_splits_partition_the_set_by_class() {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut fold_sizes = Vec::new();
    for fold in 0..5 {
        let mut cfg = ham_config(3);
        cfg.split = Some(SplitConfig { val: 0.1, seed: 3, folds: Some(5), fold: Some(fold), ..Default::default() });
        let table = open_splits(&cfg, Path::new("/")).unwrap().split_table.unwrap();
        let test: Vec<&SplitRow> = table.iter().filter(|r| r.split == SplitName::Test).collect();
        fold_sizes.push(test.len());
        for row in &test {
            *seen.entry(row.image.clone()).or_default() += 1;
        }
        for name in HAM_CLASSES {
            let total = table.iter().filter(|r| r.label == name).count() as f64;
            let in_fold = test.iter().filter(|r| r.label == name).count() as f64;
            let in_val = table.iter().filter(|r| r.label == name && r.split == SplitName::Val).count() as f64;
            assert!((in_fold - total / 5.0).abs() <= 1.0, "fold {fold} {name}: {in_fold} of {total}");
            assert!((in_val - 0.1 * total).abs() <= 1.0, "fold {fold} {name} val: {in_val}");
        }
    }
    assert_eq!(seen.len(), 5984, "every image is in a test fold");
    assert!(seen.values().all(|&n| n == 1), "in exactly one");
    assert!(fold_sizes.iter().max().unwrap() - fold_sizes.iter().min().unwrap() <= 1, "{fold_sizes:?}");

    for (folds, fold, expected) in
        [(Some(5), None, "give both"), (Some(5), Some(5), "fold in [0, folds)"), (Some(1), Some(0), "folds >= 2")]
    {
        let mut cfg = ham_config(3);
        cfg.split = Some(SplitConfig { folds, fold, ..Default::default() });
        let error = open_splits(&cfg, Path::new("/")).err().expect("refused").to_string();
        assert!(error.contains(expected), "{error}");
    }
}

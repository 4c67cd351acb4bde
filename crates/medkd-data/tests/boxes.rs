//! Bounding-box targets from CSV columns on the real ISIC 2018 and PH2 boxes: normalization by each
//! image's size, batching, splits, boxes moved by augmentation, and the errors for bad boxes.

mod common;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{config, data_dir};
use medkd_data::{
    BoxUnits, DataConfig, DataError, DataFormat, LabelNoiseConfig, Loader, LoaderOptions, Normalization, Pipeline, Size, SplitConfig,
    Target, Task, TransformSpec, class_counts, open_splits,
};
use rand::SeedableRng;

const BOX_COLUMNS: [&str; 4] = ["bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1"];

/// Per image file name: the box expected from labels.csv's bbox and width/height columns.
fn expected_boxes(csv: &Path) -> HashMap<String, [f32; 4]> {
    let mut reader = csv::Reader::from_path(csv).unwrap();
    let headers = reader.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (image, width, height) = (col("image"), col("width"), col("height"));
    let coords = BOX_COLUMNS.map(col);
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            let num = |i: usize| r[i].parse::<f64>().unwrap();
            let (w, h) = (num(width), num(height));
            let bbox = [num(coords[0]) / w, num(coords[1]) / h, num(coords[2]) / w, num(coords[3]) / h].map(|v| v as f32);
            (format!("{}.jpg", &r[image]), bbox)
        })
        .collect()
}

fn box_config(csv: &Path, image_dir: &Path) -> DataConfig {
    let mut cfg = config(DataFormat::Csv, csv);
    cfg.image_dir = Some(image_dir.to_path_buf());
    cfg.image_column = Some("image".into());
    cfg.image_ext = Some("jpg".into());
    cfg.box_columns = Some(BOX_COLUMNS.map(String::from));
    cfg
}

fn isic() -> PathBuf {
    data_dir().join("isic2018_seg")
}

#[test]
fn isic2018_boxes_are_normalized_split_as_one_group_and_batched_in_order() {
    let csv = isic().join("labels.csv");
    let mut cfg = box_config(&csv, Path::new("images"));
    cfg.split = Some(SplitConfig { val: 0.15, test: 0.15, seed: 4, ..Default::default() });
    let s = open_splits(&cfg, Path::new("/")).unwrap();
    let info = s.train.info();
    assert_eq!((info.task, info.num_classes(), info.channels), (Task::Localization, 0, 3));
    // No classes: one stratum, so each split gets its exact rounded share.
    assert_eq!([s.train.len(), s.val.len(), s.test.len()], [1406, 302, 302]);
    assert!(s.split_table.as_ref().unwrap().iter().all(|row| row.label.is_empty()));

    let expected = expected_boxes(&csv);
    assert_eq!(expected.len(), 2010);
    for ds in [&s.train, &s.val, &s.test] {
        for i in 0..ds.len() {
            assert_eq!(ds.target(i), Target::Box { bbox: expected[&ds.id(i)], class: None }, "{}", ds.id(i));
        }
    }
    // A box that is not the whole image, so a wrong divisor or coordinate order would show.
    assert_eq!(expected["ISIC_0000001.jpg"], [77.0 / 256.0, 76.0 / 256.0, 174.0 / 256.0, 161.0 / 256.0]);

    let resize = [TransformSpec::Resize { size: Size::HeightWidth([24, 24]) }];
    let pipeline = Arc::new(Pipeline::new(&resize, 3, Normalization::identity(3)).unwrap());
    let opts = LoaderOptions { batch_size: 50, shuffle: true, seed: 1, workers: 2, ..LoaderOptions::default() };
    let loader = Loader::new(s.val.clone(), pipeline, opts).unwrap();
    let mut seen = 0;
    for batch in loader.epoch(0) {
        let batch = batch.unwrap();
        let boxes = batch.boxes().expect("every target is a box");
        let want: Vec<[f32; 4]> = batch.indices.iter().map(|&i| expected[&s.val.id(i)]).collect();
        assert_eq!(boxes, want);
        assert!(batch.is_labelled());
        assert_eq!(batch.shape[1..], [3, 24, 24]);
        seen += batch.indices.len();
    }
    assert_eq!(seen, 302);
}

#[test]
fn ph2_boxes_carry_the_diagnosis_and_follow_each_image_size() {
    let csv = data_dir().join("ph2/labels.csv");
    let mut cfg = box_config(&csv, Path::new("images"));
    cfg.label_column = Some("diagnosis".into());
    cfg.split = Some(SplitConfig { val: 0.25, test: 0.0, seed: 0, ..Default::default() });
    let s = open_splits(&cfg, Path::new("/")).unwrap();
    let names = ["atypical_nevus", "common_nevus", "melanoma"];
    assert_eq!(s.train.info().class_names, names);
    assert_eq!(s.train.info().task, Task::Localization);
    // Stratified by the boxes' classes (80, 80, 40 images).
    assert_eq!(class_counts(s.val.as_ref()), [20, 20, 10]);

    // PH2 images differ in size (761..769 x 553..577), so each box has its own divisor.
    let expected = expected_boxes(&csv);
    let mut reader = csv::Reader::from_path(&csv).unwrap();
    let diagnosis: HashMap<String, String> =
        reader.records().map(|r| r.unwrap()).map(|r| (format!("{}.jpg", &r[0]), r[1].to_string())).collect();
    for ds in [&s.train, &s.val] {
        for i in 0..ds.len() {
            let id = ds.id(i);
            let class = names.iter().position(|n| *n == diagnosis[&id]);
            assert_eq!(ds.target(i), Target::Box { bbox: expected[&id], class }, "{id}");
        }
    }

    let pipeline = Arc::new(Pipeline::new(&[TransformSpec::Resize { size: Size::Edge(16) }], 3, Normalization::identity(3)).unwrap());
    let loader = Loader::new(s.val.clone(), pipeline, LoaderOptions { batch_size: 8, workers: 1, ..LoaderOptions::default() }).unwrap();
    let batch = loader.epoch(0).next().unwrap().unwrap();
    let ids: Vec<String> = batch.indices.iter().map(|&i| s.val.id(i)).collect();
    assert_eq!(batch.boxes().unwrap(), ids.iter().map(|id| expected[id]).collect::<Vec<_>>());
    let classes: Vec<usize> = ids.iter().map(|id| names.iter().position(|n| *n == diagnosis[id]).unwrap()).collect();
    assert_eq!(batch.class_labels(), classes);
}

/// `dir/labels.csv` with the header and first `n` rows of ISIC 2018's labels.csv, `edit` applied
/// to the data lines (0-based) first.
fn isic_csv(dir: &Path, n: usize, edit: impl Fn(usize, &mut Vec<String>)) -> PathBuf {
    let text = fs::read_to_string(isic().join("labels.csv")).unwrap();
    let mut lines = text.lines();
    let mut out = vec![lines.next().unwrap().to_string()];
    for (i, line) in lines.take(n).enumerate() {
        let mut fields: Vec<String> = line.split(',').map(String::from).collect();
        edit(i, &mut fields);
        out.push(fields.join(","));
    }
    let path = dir.join("labels.csv");
    fs::write(&path, out.join("\n") + "\n").unwrap();
    path
}

/// The error of opening `csv` over the real ISIC images.
fn open_error(cfg: &DataConfig) -> String {
    open_splits(cfg, Path::new("/")).unwrap_err().to_string()
}

#[test]
fn bad_boxes_name_the_file_row_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let images = isic().join("images");
    // Columns: image,width,height,bbox_x0,bbox_y0,bbox_x1,bbox_y1,...
    let csv = isic_csv(dir.path(), 5, |_, _| {});
    let mut cfg = box_config(&csv, &images);
    cfg.split = Some(SplitConfig { val: 0.0, test: 0.0, seed: 0, ..Default::default() });
    assert_eq!(open_splits(&cfg, Path::new("/")).unwrap().train.len(), 5);

    isic_csv(dir.path(), 5, |i, f| {
        if i == 1 {
            f[5] = f[3].clone(); // x1 = x0
        }
    });
    let msg = open_error(&cfg);
    assert!(msg.contains("labels.csv") && msg.contains("data row 2,") && msg.contains("`bbox_x1`"), "{msg}");
    assert!(msg.contains("x1 = 77 must be greater than x0 = 77"), "{msg}");

    isic_csv(dir.path(), 5, |i, f| {
        if i == 2 {
            f[6] = "257".into(); // y1 beyond the 256-pixel image
        }
    });
    let msg = open_error(&cfg);
    assert!(msg.contains("data row 3,") && msg.contains("`bbox_y1`") && msg.contains("outside the image, whose height is 256"), "{msg}");

    isic_csv(dir.path(), 5, |i, f| {
        if i == 0 {
            f[3] = "abc".into();
        }
    });
    let msg = open_error(&cfg);
    assert!(msg.contains("data row 1,") && msg.contains("`bbox_x0`") && msg.contains("expected a number, found `abc`"), "{msg}");

    isic_csv(dir.path(), 5, |i, f| {
        if i == 3 {
            f[4] = "-2".into();
        }
    });
    let msg = open_error(&cfg);
    assert!(msg.contains("data row 4,") && msg.contains("`bbox_y0`") && msg.contains("y0 = -2 is outside the image"), "{msg}");

    // Pixel values read as normalized ones are out of [0, 1].
    isic_csv(dir.path(), 5, |_, _| {});
    cfg.box_units = Some(BoxUnits::Normalized);
    let msg = open_error(&cfg);
    assert!(msg.contains("data row 1,") && msg.contains("`bbox_y0`") && msg.contains("outside [0, 1]"), "{msg}");

    cfg.box_units = None;
    cfg.box_columns = Some(["bbox_x0", "bbox_y0", "bbox_x1", "bbox_bottom"].map(String::from));
    let err = open_splits(&cfg, Path::new("/")).unwrap_err();
    assert!(matches!(err, DataError::MissingColumn { ref column, .. } if column == "bbox_bottom"), "{err}");
}

#[test]
fn normalized_box_units_are_taken_as_given() {
    let dir = tempfile::tempdir().unwrap();
    // Pixel boxes divided by 256 in the file: the same targets as the pixel CSV.
    let csv = isic_csv(dir.path(), 6, |_, f| {
        for v in &mut f[3..7] {
            *v = (v.parse::<f64>().unwrap() / 256.0).to_string();
        }
    });
    let mut cfg = box_config(&csv, &isic().join("images"));
    cfg.box_units = Some(BoxUnits::Normalized);
    cfg.split = Some(SplitConfig { val: 0.0, test: 0.0, seed: 0, ..Default::default() });
    let s = open_splits(&cfg, Path::new("/")).unwrap();
    let expected = expected_boxes(&isic().join("labels.csv"));
    assert_eq!(s.train.len(), 6);
    for i in 0..6 {
        assert_eq!(s.train.target(i), Target::Box { bbox: expected[&s.train.id(i)], class: None });
    }
}

/// The tight box of a mask's lesion pixels (values > 0.5), normalized, x1/y1 exclusive.
fn mask_box(plane: &[f32], h: usize, w: usize) -> Option<[f32; 4]> {
    let lesion: Vec<(usize, usize)> = (0..h * w).filter(|&i| plane[i] > 0.5).map(|i| (i % w, i / w)).collect();
    let (xs, ys) = (lesion.iter().map(|p| p.0), lesion.iter().map(|p| p.1));
    let [x0, x1, y0, y1] = [xs.clone().min()?, xs.max()? + 1, ys.clone().min()?, ys.max()? + 1];
    Some([x0 as f32 / w as f32, y0 as f32 / h as f32, x1 as f32 / w as f32, y1 as f32 / h as f32])
}

/// Boxes move with their images: the same random ops applied to an image's lesion mask give a
/// lesion whose tight box is the moved box (to within 2 px of interpolation at the lesion's
/// edge), and a rotated box holds the rotated lesion. Real ISIC 2018 images (256 px) and their
/// expert masks, at full size so that no downscaling blurs away thin parts of a lesion; an
/// independent check, since the mask goes through the pixel code and the box through the box code.
#[test]
fn boxes_move_with_their_images_as_the_lesion_masks_do() {
    let cfg = box_config(&isic().join("labels.csv"), Path::new("images"));
    let s = open_splits(&cfg, Path::new("/")).unwrap();
    let cases: [(&str, Vec<TransformSpec>); 4] = [
        ("flips", vec![TransformSpec::Hflip { p: 0.5 }, TransformSpec::Vflip { p: 0.5 }]),
        (
            "crop",
            vec![
                TransformSpec::RandomResizedCrop { size: Size::Edge(256), scale: [0.3, 1.0], ratio: [0.75, 4.0 / 3.0] },
                TransformSpec::Hflip { p: 0.5 },
            ],
        ),
        ("centre crop", vec![TransformSpec::CenterCrop { size: Size::HeightWidth([200, 180]) }]),
        ("rotation", vec![TransformSpec::Rotation { degrees: 40.0, p: 1.0 }]),
    ];
    let tolerance = 2.0 / 180.0;
    for (name, specs) in cases {
        let image_pipeline = Pipeline::new(&specs, 3, Normalization::identity(3)).unwrap();
        let mask_pipeline = Pipeline::new(&specs, 1, Normalization::identity(1)).unwrap();
        let (mut moved_any, mut compared) = (0, 0);
        for i in 0..40 {
            let id = s.train.id(i);
            let Target::Box { bbox, .. } = s.train.target(i) else { panic!("a box target") };
            let mask_file = isic().join("masks").join(id.replace(".jpg", "_segmentation.png"));
            let mask = image::open(&mask_file).unwrap();
            let seed = 1000 + i as u64;
            let (_, _, moved) = image_pipeline
                .apply_with_box(&s.train.image(i).unwrap(), Some(bbox), &mut rand_chacha::ChaCha8Rng::seed_from_u64(seed))
                .unwrap();
            let moved = moved.unwrap();
            let (plane, [_, h, w]) = mask_pipeline.apply_seeded(&mask, seed).unwrap();
            let Some(truth) = mask_box(&plane, h, w) else { continue };
            compared += 1;
            moved_any += usize::from(moved.iter().zip(bbox).any(|(a, b)| (a - b).abs() > 0.02));
            if name == "rotation" {
                let holds = (0..2).all(|k| moved[k] <= truth[k] + tolerance) && (2..4).all(|k| moved[k] >= truth[k] - tolerance);
                assert!(holds, "{name} {id}: box {moved:?} does not hold the rotated lesion {truth:?}");
            } else {
                let error = moved.iter().zip(truth).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
                assert!(error <= tolerance, "{name} {id}: moved box {moved:?}, the transformed mask's box {truth:?}");
            }
        }
        assert!(compared >= 35 && moved_any >= 10, "{name}: {compared} compared, {moved_any} boxes moved");
    }
    // The loader gives each batch the boxes as view 0 moved them.
    let flip = [TransformSpec::Resize { size: Size::Edge(32) }, TransformSpec::Hflip { p: 1.0 }];
    let pipeline = Arc::new(Pipeline::new(&flip, 3, Normalization::identity(3)).unwrap());
    let loader = Loader::new(s.val.clone(), pipeline, LoaderOptions { batch_size: 16, ..LoaderOptions::default() }).unwrap();
    let batch = loader.epoch(0).next().unwrap().unwrap();
    for (bbox, &i) in batch.boxes().unwrap().iter().zip(&batch.indices) {
        let Target::Box { bbox: stored, .. } = s.val.target(i) else { panic!("a box target") };
        assert_eq!(*bbox, [1.0 - stored[2], stored[1], 1.0 - stored[0], stored[3]]);
    }
}

#[test]
fn box_keys_and_tasks_are_checked() {
    let csv = isic().join("labels.csv");
    let cfg = box_config(&csv, Path::new("images"));

    let mut medmnist = config(DataFormat::Medmnist, &common::medmnist("breastmnist"));
    medmnist.box_columns = cfg.box_columns.clone();
    assert!(medmnist.validate().unwrap_err().to_string().contains("`box_columns` applies only to format = \"csv\""));

    let mut units = cfg.clone();
    units.box_columns = None;
    units.label_column = Some("touches_border".into());
    units.box_units = Some(BoxUnits::Pixels);
    assert!(units.validate().unwrap_err().to_string().contains("`box_units` applies only with `box_columns`"));

    let mut multi = cfg.clone();
    multi.multilabel_column = Some("touches_border".into());
    assert!(multi.validate().unwrap_err().to_string().contains("cannot be combined with `multilabel_column`"));

    let mut classes = cfg.clone();
    classes.classes = Some(vec!["lesion".into()]);
    assert!(classes.validate().unwrap_err().to_string().contains("`classes` needs a label column"));

    let mut task = cfg.clone();
    task.task = Some(Task::MultiClass);
    assert!(open_error(&task).contains("task = multiclass does not fit box targets"));
    task.task = Some(Task::Localization);
    assert_eq!(open_splits(&task, Path::new("/")).unwrap().train.info().task, Task::Localization);
    let mut labels_only = task.clone();
    labels_only.box_columns = None;
    labels_only.label_column = Some("touches_border".into());
    assert!(open_error(&labels_only).contains("task = localization needs box targets"));

    let mut noise = cfg.clone();
    noise.label_column = Some("touches_border".into());
    noise.label_noise = Some(LabelNoiseConfig::Symmetric { rate: 0.1, seed: 0 });
    assert!(open_error(&noise).contains("`data.label_noise` needs class labels"));
}

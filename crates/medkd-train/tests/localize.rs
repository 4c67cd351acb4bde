//! The localize method on real ISIC 2018 images: boxes moved by augmentation, the box terms,
//! selection by mean IoU, box predictions in the run folder, hard-to-learn samples refreshed by
//! pruning, semi-supervised training on pseudo-boxes, and the errors for bad input, all before a
//! run folder exists.

mod common;

use std::path::{Path, PathBuf};

use common::serial;
use medkd_eval::Metric;
use medkd_train::{Prepared, RunConfig, RunDir, Summary, train};

fn isic() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/isic2018_seg")
}

/// A small ISIC run: 5% of the training split at 32 px, flips and crops moving the boxes.
fn config_text(method: &str, losses: &str) -> String {
    config_text_for(&isic().join("labels.csv"), method, losses)
}

fn config_text_for(labels: &Path, method: &str, losses: &str) -> String {
    format!(
        "seed = 3\n[data]\nformat = \"csv\"\npath = \"{}\"\nimage_dir = \"{}\"\nimage_column = \"image\"\nimage_ext = \"jpg\"\n\
         box_columns = [\"bbox_x0\", \"bbox_y0\", \"bbox_x1\", \"bbox_y1\"]\nsplit = {{ seed = 0, val = 0.05, test = 0.05 }}\n\
         train_subset = {{ ratio = 0.05, seed = 0 }}\n\
         eval_transforms = [{{ op = \"resize\", size = [32, 32] }}]\n\
         train_transforms = [{{ op = \"random_resized_crop\", size = 32, scale = [0.6, 1.0] }}, {{ op = \"hflip\" }}, {{ op = \"vflip\" }}]\n\
         [model]\narch = \"resnet18\"\nsmall_input = true\n[train]\nepochs = 2\nbatch_size = 16\nworkers = 1\n\
         select_metric = \"mean_iou\"\noptimizer = {{ kind = \"adam\", lr = 0.001 }}\n{method}\n{losses}",
        labels.display(),
        isic().join("images").display()
    )
}

const BOX_LOSSES: &str = "[[loss]]\nkind = \"box_l1\"\nweight = 5.0\n[[loss]]\nkind = \"giou\"\nweight = 2.0\n";

fn prepare_error(text: &str) -> String {
    match RunConfig::parse(text, &[]) {
        Err(e) => e.to_string(),
        Ok(config) => Prepared::new(&config).err().expect("bad input is refused").to_string(),
    }
}

#[test]
fn localize_trains_boxes_and_refreshes_its_hard_to_learn_set() {
    let _serial = serial();
    let method = "[method]\nkind = \"localize\"\n[method.htl]\nrefresh_epochs = 1\nsparsity = 0.6\nagreement = 0.9\nbeta = 2.0\n";
    let config = RunConfig::parse(&config_text(method, BOX_LOSSES), &[]).unwrap();
    let prepared = Prepared::new(&config).unwrap();
    assert_eq!(prepared.setup.spec.num_classes, 4, "a box head");
    let tmp = tempfile::tempdir().unwrap();
    let outcome = train(&config, &prepared, &RunDir::create(tmp.path()).unwrap(), false, false).unwrap();

    let summary = &outcome.summary;
    assert_eq!(summary.select_metric, Metric::MeanIou);
    for split in [&summary.val, &summary.test] {
        let iou = split.mean_iou.expect("box metrics in summary.json");
        assert!(iou > 0.0 && iou < 1.0, "{iou}");
        assert!(split.acc_at_50.is_some() && split.acc.is_none() && split.auc.is_none());
    }
    assert_eq!(&Summary::read(&tmp.path().join("summary.json")).unwrap(), summary, "summary.json reads back as written");

    // predictions/test.csv: one row per test image, whose IoUs average to the summary's.
    let mut reader = csv::Reader::from_path(tmp.path().join("predictions/test.csv")).unwrap();
    let headers: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(headers, ["image", "x0", "y0", "x1", "y1", "true_x0", "true_y0", "true_x1", "true_y1", "iou"]);
    let ious: Vec<f64> = reader.records().map(|r| r.unwrap()[9].parse().unwrap()).collect();
    assert_eq!(ious.len(), prepared.setup.splits.test.len());
    let mean = ious.iter().sum::<f64>() / ious.len() as f64;
    assert!((mean - summary.test.mean_iou.unwrap()).abs() < 1e-9, "{mean} vs {:?}", summary.test.mean_iou);

    // Both terms logged; one HTL refresh per epoch, its size reported.
    let metrics = std::fs::read_to_string(tmp.path().join("metrics.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
    assert!(first["train_terms"]["box_l1"].as_f64().unwrap() > 0.0 && first["train_terms"]["giou"].as_f64().unwrap() > 0.0, "{first}");
    let htl = &summary.method["htl"];
    let refreshes = htl["refreshes"].as_array().unwrap();
    assert_eq!(refreshes.iter().map(|r| r["epoch"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 2], "{htl}");
    assert_eq!(htl["train_samples"].as_u64().unwrap() as usize, prepared.setup.splits.train.len());
    assert_eq!(htl["htl_at_end"], refreshes[1]["htl"], "{htl}");
    // An agreement of 0.9 flags samples even in a barely trained model, so the weighted terms ran.
    assert!(refreshes.iter().all(|r| r["htl"].as_u64().unwrap() > 0), "{htl}");
}

#[test]
fn a_fixed_hard_to_learn_file_must_list_every_training_image() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("htl.csv");
    let method = format!("[method]\nkind = \"localize\"\n[method.htl]\nfile = \"{}\"\n", file.display());
    let text = config_text(&method, BOX_LOSSES);
    let config = RunConfig::parse(&text, &[]).unwrap();
    let train = medkd_train::RunSetup::new(&config).unwrap().splits.train;
    let ids: Vec<String> = (0..train.len()).map(|i| train.id(i).trim_end_matches(".jpg").to_string()).collect();

    let rows = |ids: &[String], flag: &str| ids.iter().map(|id| format!("{id},{flag}\n")).collect::<String>();
    std::fs::write(&file, format!("image,htl\n{}", rows(&ids[1..], "1"))).unwrap();
    let error = prepare_error(&text);
    assert!(error.contains("htl.csv") && error.contains(&format!("`{}.jpg`", ids[0])), "{error}");

    std::fs::write(&file, format!("image,htl\n{}{},yes\n", rows(&ids[1..], "0"), ids[0])).unwrap();
    let error = prepare_error(&text);
    assert!(error.contains(&format!("row {}", ids.len() + 1)) && error.contains("expected 1 or 0"), "{error}");

    std::fs::write(&file, format!("image,htl\n{}{},1\n", rows(&ids[1..], "0"), ids[0])).unwrap();
    let prepared = Prepared::new(&config).unwrap();
    let htl = prepared.htl.as_ref().unwrap();
    let first = (0..train.len()).position(|i| train.id(i).starts_with(&ids[0])).unwrap();
    assert!(htl[first] && htl.iter().filter(|h| **h).count() == 1);
}

#[test]
fn localization_input_errors_name_the_key() {
    let localize = "[method]\nkind = \"localize\"\n";
    let cases = [
        (config_text("", "[[loss]]\nkind = \"cross_entropy\"\n"), "kind = \"localize\""),
        (config_text(localize, "[[loss]]\nkind = \"cross_entropy\"\n"), "'cross_entropy'"),
        (config_text(&format!("{localize}[method.htl]\nrefresh_epochs = 2\nbeta = -1.0\n"), BOX_LOSSES), "`method.htl.beta`"),
        (config_text(&format!("{localize}[method.htl]\nrefresh_epochs = 2\nsparsity = 1.0\n"), BOX_LOSSES), "`method.htl.sparsity`"),
        (config_text(&format!("{localize}[method.htl]\nbeta = 1.0\n"), BOX_LOSSES), "either `file`"),
        (config_text(&format!("{localize}[method.htl]\nrefresh_epochs = 1\nfile = \"x.csv\"\n"), BOX_LOSSES), "either `file`"),
        (config_text(&format!("{localize}[method.semi]\nlabelled = 1.0\n"), BOX_LOSSES), "`method.semi.labelled`"),
        (config_text(&format!("{localize}[method.semi]\nlabelled = 0.3\nconfidence = 1.5\n"), BOX_LOSSES), "`method.semi.confidence`"),
        (
            config_text(&format!("{localize}[method.semi]\nlabelled = 0.3\nburn_in_epochs = 2\n"), BOX_LOSSES),
            "`method.semi.burn_in_epochs`",
        ),
        // Weak localization needs classes, and class terms; it cannot be semi-supervised too.
        (config_text(&format!("{localize}[method.weak]\n"), "[[loss]]\nkind = \"cross_entropy\"\n"), "`label_column`"),
        (weak_config(&ham().join("labels.csv"), "").replace("kind = \"cross_entropy\"", "kind = \"box_l1\""), "'box_l1'"),
        (weak_config(&ham().join("labels.csv"), "semi = { labelled = 0.5, burn_in_epochs = 1 }\n"), "`method.semi`: give one"),
        (weak_config(&ham().join("labels.csv"), "").replace("cam_threshold = 0.2", "cam_threshold = 1.0"), "`method.weak.cam_threshold`"),
        (
            weak_config(&ham().join("labels.csv"), "htl = { refresh_epochs = 1 }\n").replace("\"cross_entropy\"", "\"focal\""),
            "'focal' weighs every sample alike",
        ),
    ];
    for (text, expected) in cases {
        let error = prepare_error(&text);
        assert!(error.contains(expected), "expected {expected}: {error}");
    }
    // The localize method on class labels.
    let breast = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/medmnist/breastmnist.npz");
    let text = format!(
        "[data]\nformat = \"medmnist\"\npath = \"{}\"\n[model]\narch = \"resnet18\"\nsmall_input = true\n[train]\nepochs = 1\nbatch_size = 8\n\
         optimizer = {{ kind = \"adam\", lr = 0.001 }}\n{localize}{BOX_LOSSES}",
        breast.display()
    );
    let error = prepare_error(&text);
    assert!(error.contains("`method`") && error.contains("box_columns"), "{error}");
}

/// `labelled.csv` of a semi-supervised run: image id → keeps its box.
fn labelled_set(run: &Path) -> std::collections::BTreeMap<String, bool> {
    let mut reader = csv::Reader::from_path(run.join("labelled.csv")).unwrap();
    reader.records().map(|r| r.unwrap()).map(|r| (r[0].to_string(), &r[1] == "1")).collect()
}

/// A semi-supervised run trains on the boxes of its labelled images and the teacher's pseudo-boxes
/// of the others: moving every hidden box elsewhere in the CSV changes nothing, to the bit (the
/// pseudo-boxes reach the loader in place of the hidden boxes).
#[test]
fn semi_supervised_runs_never_see_the_boxes_they_hide() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let semi = |extra: &str| {
        format!(
            "[method]\nkind = \"localize\"\n[method.semi]\nlabelled = 0.4\nburn_in_epochs = 1\nramp_epochs = 0\nconfidence = 0.0\n{extra}"
        )
    };
    let run = |labels: &Path, method: &str, name: &str| {
        let config = RunConfig::parse(&config_text_for(labels, method, BOX_LOSSES), &[]).unwrap();
        let prepared = Prepared::new(&config).unwrap();
        let folder = tmp.path().join(name);
        let summary = train(&config, &prepared, &RunDir::create(&folder).unwrap(), false, false).unwrap().summary;
        (folder, summary, prepared.setup.splits.train.len())
    };
    let (first, summary, train_len) = run(&isic().join("labels.csv"), &semi(""), "first");
    let labelled = labelled_set(&first);
    assert_eq!(labelled.len(), train_len);
    assert_eq!(labelled.values().filter(|l| **l).count(), (0.4 * train_len as f64).round() as usize);
    // One refresh, after the burn-in epoch; confidence 0 keeps a pseudo-box for every hidden image.
    let facts = &summary.method["semi"];
    let unlabelled = facts["unlabelled"].as_u64().unwrap();
    assert_eq!(unlabelled as usize, train_len - (0.4 * train_len as f64).round() as usize);
    assert_eq!(facts["refreshes"], serde_json::json!([{ "epoch": 1, "pseudo_boxes": unlabelled }]), "{facts}");

    // The hidden boxes all become the whole image.
    let original = std::fs::read_to_string(isic().join("labels.csv")).unwrap();
    let mut moved = String::new();
    for (row, line) in original.lines().enumerate() {
        let fields: Vec<&str> = line.split(',').collect();
        if row > 0 && labelled.get(fields[0]) == Some(&false) {
            moved.push_str(&format!(
                "{},{},{},0,0,{},{},{}\n",
                fields[0],
                fields[1],
                fields[2],
                fields[1],
                fields[2],
                fields[7..].join(",")
            ));
        } else {
            moved.push_str(&format!("{line}\n"));
        }
    }
    assert_ne!(moved.trim_end(), original.trim_end());
    let moved_path = tmp.path().join("labels.csv");
    std::fs::write(&moved_path, moved).unwrap();
    let (second, again, _) = run(&moved_path, &semi(""), "second");
    assert_eq!(labelled_set(&second), labelled);
    assert_eq!((again.val.mean_iou, again.test.mean_iou), (summary.val.mean_iou, summary.test.mean_iou));
    let boxes = |run: &Path| std::fs::read_to_string(run.join("predictions/val.csv")).unwrap();
    assert!(boxes(&first) == boxes(&second), "the hidden boxes changed the predicted boxes");

    // weight = 0: the labelled images alone, no teacher consulted, another result.
    let (third, alone, _) = run(&isic().join("labels.csv"), &semi("weight = 0.0\n"), "alone");
    assert_eq!(alone.method["semi"]["refreshes"], serde_json::json!([]));
    // The second epoch, the first with pseudo-boxes, differs.
    let last_epoch = |run: &Path| std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().lines().nth(1).unwrap().to_string();
    let val_iou = |run: &Path| serde_json::from_str::<serde_json::Value>(&last_epoch(run)).unwrap()["val"]["mean_iou"].as_f64();
    assert_ne!(val_iou(&third), val_iou(&first), "pseudo-boxes took part");
}

fn ham() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/ham10000_seg")
}

/// A small weakly supervised HAM10000 run: 3% of the training split at 32 px, classes from `dx`,
/// boxes only scored.
fn weak_config(labels: &Path, method: &str) -> String {
    format!(
        "seed = 5\n[data]\nformat = \"csv\"\npath = \"{}\"\nimage_dir = \"{}\"\nimage_column = \"image_id\"\nlabel_column = \"dx\"\n\
         image_ext = \"jpg\"\nbox_columns = [\"bbox_x0\", \"bbox_y0\", \"bbox_x1\", \"bbox_y1\"]\nsplit = {{ seed = 0, val = 0.02, test = 0.02 }}\n\
         train_subset = {{ ratio = 0.03, seed = 0 }}\neval_transforms = [{{ op = \"resize\", size = [32, 32] }}]\n\
         train_transforms = [{{ op = \"resize\", size = [32, 32] }}, {{ op = \"hflip\" }}]\n\
         [model]\narch = \"resnet18\"\nsmall_input = true\n[train]\nepochs = 2\nbatch_size = 16\nworkers = 1\nselect_metric = \"loss\"\n\
         optimizer = {{ kind = \"adam\", lr = 0.001 }}\n[method]\nkind = \"localize\"\nweak = {{ cam_threshold = 0.2 }}\n{method}\n\
         [[loss]]\nkind = \"cross_entropy\"\n",
        labels.display(),
        ham().join("images").display()
    )
}

/// A weakly supervised run trains a classifier on the classes (its hard-to-learn set refreshed by
/// pruning) and is scored by its activation maps' boxes; the training boxes play no part.
#[test]
fn weak_localization_trains_on_classes_and_scores_activation_map_boxes() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let htl = "htl = { refresh_epochs = 1, sparsity = 0.6, agreement = 0.9, beta = 2.0 }\n";
    let run = |labels: &Path, name: &str| {
        let config = RunConfig::parse(&weak_config(labels, htl), &[]).unwrap();
        let prepared = Prepared::new(&config).unwrap();
        assert_eq!(prepared.setup.spec.num_classes, 7, "a classifier over the seven diagnoses");
        let folder = tmp.path().join(name);
        (train(&config, &prepared, &RunDir::create(&folder).unwrap(), false, false).unwrap().summary, folder)
    };
    let (summary, first) = run(&ham().join("labels.csv"), "first");
    assert_eq!(summary.select_metric, Metric::Loss);
    let iou = summary.test.mean_iou.expect("box metrics");
    assert!(iou > 0.0 && iou < 1.0 && summary.test.loss.is_some_and(f64::is_finite), "{:?}", summary.test);
    let mut reader = csv::Reader::from_path(first.join("predictions/test.csv")).unwrap();
    let ious: Vec<f64> = reader.records().map(|r| r.unwrap()[9].parse().unwrap()).collect();
    assert!((ious.iter().sum::<f64>() / ious.len() as f64 - iou).abs() < 1e-9);
    let refreshes = summary.method["htl"]["refreshes"].as_array().unwrap();
    assert_eq!(refreshes.len(), 2, "{:?}", summary.method);

    // Every training image's box moved to the whole image: the same run, to the bit.
    let mut split = csv::Reader::from_path(first.join("split.csv")).unwrap();
    let train_ids: std::collections::HashSet<String> =
        split.records().map(|r| r.unwrap()).filter(|r| &r[2] == "train").map(|r| r[0].trim_end_matches(".jpg").to_string()).collect();
    let original = std::fs::read_to_string(ham().join("labels.csv")).unwrap();
    let mut moved = String::new();
    for (row, line) in original.lines().enumerate() {
        let mut fields: Vec<String> = line.split(',').map(String::from).collect();
        if row > 0 && train_ids.contains(&fields[0]) {
            let (width, height) = (fields[8].clone(), fields[9].clone());
            fields.splice(10..14, ["0".into(), "0".into(), width, height]);
        }
        moved.push_str(&(fields.join(",") + "\n"));
    }
    assert_ne!(moved.trim_end(), original.trim_end());
    let moved_path = tmp.path().join("labels.csv");
    std::fs::write(&moved_path, moved).unwrap();
    let (again, second) = run(&moved_path, "second");
    assert_eq!(again.test.mean_iou, summary.test.mean_iou);
    let boxes = |run: &Path| std::fs::read_to_string(run.join("predictions/val.csv")).unwrap();
    assert!(boxes(&first) == boxes(&second), "training boxes reached a weakly supervised run");
}

/// A pruned localizer fine-tuned from a run's weights stays as sparse as it was pruned: the
/// kept checkpoint has the zeros, and summary.json records the sparsity at start and end.
#[test]
fn a_pruned_model_fine_tunes_with_its_masks_kept() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let localize = "[method]\nkind = \"localize\"\n";
    let dense_config = RunConfig::parse(&config_text(localize, BOX_LOSSES), &[]).unwrap();
    let dense = tmp.path().join("dense");
    train(&dense_config, &Prepared::new(&dense_config).unwrap(), &RunDir::create(&dense).unwrap(), false, false).unwrap();

    let weights = dense.join("checkpoints/best.safetensors");
    let overrides = [format!("model.pretrained=\"{}\"", weights.display()), "model.prune_sparsity=0.7".to_string()];
    let config = RunConfig::parse(&config_text(localize, BOX_LOSSES), &overrides).unwrap();
    let prepared = Prepared::new(&config).unwrap();
    let folder = tmp.path().join("pruned");
    let summary = train(&config, &prepared, &RunDir::create(&folder).unwrap(), false, false).unwrap().summary;
    let pruned = &summary.method["pruned"];
    let sparsity = |at: &str| pruned[at]["sparsity"].as_f64().unwrap();
    assert!((sparsity("start") - 0.7).abs() < 1e-4 && sparsity("end") >= sparsity("start"), "{pruned}");
    let best = medkd_models::load_weights(
        medkd_models::Model::new(&prepared.setup.spec, &prepared.setup.device).unwrap(),
        &folder.join("checkpoints/best.safetensors"),
    )
    .unwrap();
    assert!(medkd_models::sparsity_of(&best).sparsity() >= sparsity("start"), "the kept weights are as sparse");
    assert_ne!(std::fs::read(&weights).unwrap(), std::fs::read(folder.join("checkpoints/best.safetensors")).unwrap());

    let error = prepare_error(&config_text(localize, BOX_LOSSES).replace("small_input = true", "small_input = true\nprune_sparsity = 1.0"));
    assert!(error.contains("`model.prune_sparsity`"), "{error}");
}

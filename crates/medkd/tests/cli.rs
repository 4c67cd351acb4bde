//! End-to-end tests of the `medkd` binary on the BreastMNIST file shipped in data/.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// A small, fast run: 28 px BreastMNIST, ResNet-18 with the standard stem, checkpoints after
/// every epoch (the kill tests stop it after its first).
const TINY: &str = r#"
seed = 3
[data]
format = "medmnist"
path = "data/breastmnist.npz"
channels = 3
[[data.train_transforms]]
op = "hflip"
p = 0.5
[model]
arch = "resnet18"
[train]
epochs = 3
batch_size = 64
workers = 2
optimizer = { kind = "adam", lr = 0.001 }
schedule = { kind = "cosine" }
checkpoint_every_seconds = 0
[[loss]]
kind = "cross_entropy"
label_smoothing = 0.1
"#;

fn medkd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_medkd")).args(args).current_dir(repo_root()).output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn train(config: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["train", "--quiet", "--config", config.to_str().unwrap(), "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    medkd(&args)
}

/// `git rev-parse --short=12 HEAD`, or `None` outside a git checkout.
fn git_head() -> Option<String> {
    let output = Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn train_writes_the_run_folder_and_predict_matches_the_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path(), TINY);
    let run = tmp.path().join("run");
    let output = train(&config, &run, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    for file in
        ["config.toml", "metrics.jsonl", "summary.json", "checkpoints/best.safetensors", "checkpoints/best.json", "checkpoints/last.json"]
    {
        assert!(run.join(file).is_file(), "missing {file}");
    }
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 3, "one line per epoch");
    let first: Value = serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
    assert!(first["train_terms"]["cross_entropy"].as_f64().unwrap() > 0.0);

    let summary = read_json(&run.join("summary.json"));
    for key in ["dataset", "model", "params", "epochs_run", "wall_seconds", "seed", "val", "test"] {
        assert!(!summary[key].is_null(), "summary.json lacks {key}");
    }
    assert_eq!(summary["params"], 11_177_538, "ResNet-18 with 2 classes");
    // The run describes its input completely, so the weights are usable without medkd: no
    // `normalize` table in TINY means mean 0 and std 1 on each of the 3 channels.
    assert_eq!(summary["task"], "binary");
    assert_eq!(summary["normalization"], json!({ "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0] }));
    assert_eq!(summary["small_input"], false);
    assert_eq!(summary["seed"], 3);
    // The run names the code that made it: this checkout's commit (a CI clone or a clean tree
    // gives the bare hash, a working tree with edits the hash and -dirty).
    assert_eq!(summary["medkd"]["version"], env!("CARGO_PKG_VERSION"));
    if let Some(head) = git_head() {
        let commit = summary["medkd"]["commit"].as_str().expect("a build inside a git checkout records its commit");
        assert!(commit == head || commit == format!("{head}-dirty"), "{commit} vs HEAD {head}");
        assert_eq!(first["medkd_commit"], summary["medkd"]["commit"], "every metrics line names the binary");
    }
    // ...and the kernel path that computed it, as this test process sees the same CPU and build
    // (AVX-512 only where built in: `--no-default-features` forces the AVX2+FMA kernels).
    let machine = &summary["medkd"]["machine"];
    #[cfg(target_arch = "x86_64")]
    assert_eq!(machine["simd"] == "avx512f", medkd_models::AVX512_KERNELS && std::arch::is_x86_feature_detected!("avx512f"), "{machine}");
    let threads = std::env::var("RAYON_NUM_THREADS").ok().and_then(|n| n.parse().ok()).filter(|&n: &usize| n > 0);
    let threads = threads.unwrap_or_else(|| std::thread::available_parallelism().unwrap().get());
    assert_eq!(machine["threads"], threads, "{machine}");
    if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        assert!(machine["cpu_family"].is_string() && machine["cpu_model"].is_string(), "{machine}");
    }
    let test_auc = summary["test"]["auc"].as_f64().unwrap();
    // The end of training keeps the kept weights' own probabilities per split (what the
    // report's curves are drawn from; they score as summary.json) and writes report.html.
    let kept = std::fs::read_to_string(run.join("predictions/test.csv")).unwrap();
    let mut reader = csv::Reader::from_reader(kept.as_bytes());
    assert_eq!(reader.headers().unwrap().iter().collect::<Vec<_>>(), ["image", "label", "malignant", "normal, benign"]);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let class_names = ["malignant".to_string(), "normal, benign".to_string()];
    let labels: Vec<usize> = rows.iter().map(|r| class_names.iter().position(|c| c == &r[1]).unwrap()).collect();
    assert_eq!(labels, test_labels());
    let probs: Vec<f32> = rows.iter().flat_map(|r| [r[2].parse::<f32>().unwrap(), r[3].parse::<f32>().unwrap()]).collect();
    let kept_report = medkd_eval::evaluate_single_label(&probs, 2, &labels, &class_names).unwrap();
    assert!(
        (kept_report.auc.unwrap() - test_auc).abs() < 1e-9 && (kept_report.ece - summary["test"]["ece"].as_f64().unwrap()).abs() < 1e-9
    );
    assert!(run.join("predictions/val.csv").is_file());
    // The gallery: the most confident right and wrong test images and the least sure, each with
    // its Grad-CAM overlay, as the kept probabilities rank them.
    let gallery = read_json(&run.join("gallery/gallery.json"));
    let tiles = gallery.as_array().unwrap();
    assert!(tiles.len() >= 8 && tiles.len() <= 12, "{} tiles", tiles.len());
    let confidence = |id: &str| -> (f32, bool) {
        let row = rows.iter().position(|r| &r[0] == id).unwrap();
        let (p0, p1) = (probs[2 * row], probs[2 * row + 1]);
        (p0.max(p1), usize::from(p1 > p0) == labels[row])
    };
    let right: Vec<f32> = rows.iter().map(|r| confidence(&r[0])).filter(|c| c.1).map(|c| c.0).collect();
    for tile in tiles {
        let (conf, correct) = confidence(tile["image"].as_str().unwrap());
        assert_eq!((tile["confidence"].as_f64().unwrap() as f32), conf);
        match tile["group"].as_str().unwrap() {
            "confident and right" => assert!(correct && right.iter().filter(|&&c| c > conf).count() < 4, "{tile}"),
            "confident and wrong" => assert!(!correct, "{tile}"),
            group => assert_eq!(group, "least sure"),
        }
        let png = image::open(run.join("gallery").join(tile["file"].as_str().unwrap())).unwrap();
        assert_eq!((png.width(), png.height()), (160, 160));
    }
    let report = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert_eq!(report.matches("src=\"data:image/png;base64,").count(), tiles.len(), "every tile inline");
    assert!(std::fs::read_to_string(run.join("report.html")).unwrap().contains("data-plot=\"roc\""));
    // `medkd report` on a run without the file (made before medkd kept it) scores the test split
    // again from the best checkpoint: the same probabilities.
    std::fs::remove_file(run.join("predictions/test.csv")).unwrap();
    std::fs::remove_file(run.join("report.html")).unwrap();
    let output = medkd(&["report", run.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(std::fs::read_to_string(run.join("predictions/test.csv")).unwrap(), kept);
    assert!(run.join("report.html").is_file());
    let output = medkd(&["report", tmp.path().to_str().unwrap()]);
    assert!(!output.status.success() && stderr(&output).contains("no summary.json"), "{}", stderr(&output));
    let losses: Vec<f64> = metrics.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["train_loss"].as_f64().unwrap()).collect();
    assert!(losses[2] < 0.8 * losses[0], "3 epochs lower the training loss: {losses:?}");

    // The resolved config reproduces the run configuration exactly.
    let resolved = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(resolved.contains("breastmnist.npz") && resolved.contains("label_smoothing = 0.1"));

    let preds = tmp.path().join("preds.csv");
    let output = medkd(&["predict", "--run", run.to_str().unwrap(), "--split", "test", "--out", preds.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let mut reader = csv::Reader::from_path(&preds).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header.len(), 3, "image + one column per class: {header:?}");
    assert_eq!(header[0], "image");
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 156, "BreastMNIST test split");
    let probs: Vec<f32> = rows.iter().flat_map(|r| [r[1].parse::<f32>().unwrap(), r[2].parse::<f32>().unwrap()]).collect();
    let labels = test_labels();
    let report = medkd_eval::evaluate_single_label(&probs, 2, &labels, &header[1..]).unwrap();
    assert!((report.auc.unwrap() - test_auc).abs() < 1e-6, "predict.csv scores as summary.json");
    assert!((report.accuracy - summary["test"]["acc"].as_f64().unwrap()).abs() < 1e-9);
    // Temperature scaling: fitted on val at the end of training (it cannot raise the val NLL),
    // applied by predict; `medkd calibrate` refits the same temperature.
    let calibration = &summary["calibration"];
    let temperature = calibration["temperature"].as_f64().unwrap();
    assert!(calibration["val_nll_after"].as_f64().unwrap() <= calibration["val_nll_before"].as_f64().unwrap(), "{calibration}");
    assert_eq!(summary["test"]["ece"], calibration["test_ece_before"]);
    assert!((report.ece - calibration["test_ece_after"].as_f64().unwrap()).abs() < 1e-6, "predict applies the temperature");
    let output = medkd(&["calibrate", "--run", run.to_str().unwrap()]);
    assert!(output.status.success() && String::from_utf8_lossy(&output.stdout).contains("temperature"), "{}", stderr(&output));
    assert_eq!(read_json(&run.join("summary.json"))["calibration"]["temperature"].as_f64().unwrap(), temperature);

    let output = medkd(&["eval", "--run", run.to_str().unwrap(), "--split", "test"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("balanced"), "eval prints the metrics table");
    // A run whose data no longer gives its training input size is refused (here the record says
    // 32x32, as if the 28x28 images had been replaced).
    let summary_text = std::fs::read_to_string(run.join("summary.json")).unwrap();
    let mut changed: Value = serde_json::from_str(&summary_text).unwrap();
    changed["input_size"] = json!([32, 32]);
    std::fs::write(run.join("summary.json"), changed.to_string()).unwrap();
    let output = medkd(&["eval", "--run", run.to_str().unwrap(), "--split", "test"]);
    assert!(
        !output.status.success() && stderr(&output).contains("trained on 32x32") && stderr(&output).contains("28x28"),
        "{}",
        stderr(&output)
    );
    std::fs::write(run.join("summary.json"), summary_text).unwrap();

    // Image files: one row per file, named by its stem, probabilities summing to 1; a file that
    // is not an image is an error naming it. HAM10000's 600x450 images do not fit the 28 px model:
    // refused, unless --resize resizes them to 28x28 first.
    let images = repo_root().join("../shared/data/ham10000/images");
    let files: Vec<PathBuf> = ["ISIC_0024306.jpg", "ISIC_0024307.jpg"].iter().map(|f| images.join(f)).collect();
    let file_preds = tmp.path().join("files.csv");
    let mut args = vec!["predict", "--run", run.to_str().unwrap(), "--out", file_preds.to_str().unwrap()];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    let output = medkd(&args);
    let error = stderr(&output);
    assert!(
        !output.status.success() && error.contains("ISIC_0024306.jpg") && error.contains("28x28") && error.contains("--resize"),
        "{error}"
    );
    assert!(!file_preds.exists(), "nothing is written for a refused input");
    let output = medkd(&[args.as_slice(), &["--resize"]].concat());
    assert!(output.status.success(), "{}", stderr(&output));
    let rows: Vec<csv::StringRecord> = csv::Reader::from_path(&file_preds).unwrap().records().map(Result::unwrap).collect();
    assert_eq!(rows.iter().map(|r| r[0].to_string()).collect::<Vec<_>>(), ["ISIC_0024306", "ISIC_0024307"]);
    for row in &rows {
        let sum: f32 = row.iter().skip(1).map(|p| p.parse::<f32>().unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-5, "{row:?}");
    }
    let not_an_image = tmp.path().join("notes.png");
    std::fs::write(&not_an_image, "not an image").unwrap();
    let output = medkd(&["predict", "--run", run.to_str().unwrap(), "--out", file_preds.to_str().unwrap(), not_an_image.to_str().unwrap()]);
    assert!(!output.status.success() && stderr(&output).contains("notes.png"), "{}", stderr(&output));

    // Attacks: the clean row is the summary's test accuracy, eps 0 changes nothing, and the
    // report lands in attack.json; a bad eps or a folder without a model is a clear error.
    let output = medkd(&["attack", "--run", run.to_str().unwrap(), "--attack", "fgsm", "--eps", "0,8/255"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report = read_json(&run.join("attack.json"));
    assert_eq!(report["clean"]["acc"], summary["test"]["acc"]);
    assert_eq!(report["medkd"], summary["medkd"], "attack.json names the binary too");
    assert_eq!(report["adversarial"][0]["acc"], summary["test"]["acc"]);
    assert!((report["adversarial"][1]["eps"].as_f64().unwrap() - 8.0 / 255.0).abs() < 1e-12);
    assert!(report["adversarial"][1]["acc"].as_f64().unwrap() <= summary["test"]["acc"].as_f64().unwrap());
    let output = medkd(&["attack", "--run", run.to_str().unwrap(), "--attack", "pgd", "--eps", "1/0x"]);
    assert!(!output.status.success() && stderr(&output).contains("'1/0x'"), "{}", stderr(&output));
    // tmp holds a config.toml but no trained model.
    let output = medkd(&["attack", "--run", tmp.path().to_str().unwrap(), "--attack", "fgsm"]);
    assert!(!output.status.success() && stderr(&output).contains("no checkpoints/best.safetensors"), "{}", stderr(&output));

    // A second train into the same folder is refused rather than mixing runs.
    let output = train(&config, &run, &[]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("--resume"), "{}", stderr(&output));
}

fn test_labels() -> Vec<usize> {
    let config: medkd_data::DataConfig = toml_data_config();
    let splits = medkd_data::open_splits(&config, &repo_root()).unwrap();
    (0..splits.test.len())
        .map(|i| match splits.test.target(i) {
            medkd_data::Target::Class(c) => c,
            other => unreachable!("BreastMNIST has class labels, got {other:?}"),
        })
        .collect()
}

fn toml_data_config() -> medkd_data::DataConfig {
    #[derive(serde::Deserialize)]
    struct Doc {
        data: medkd_data::DataConfig,
    }
    let doc: Doc = toml::from_str("[data]\nformat = \"medmnist\"\npath = \"data/breastmnist.npz\"\n").unwrap();
    doc.data
}

#[test]
fn a_run_killed_mid_epoch_resumes_to_the_uninterrupted_result() {
    kill_and_resume(TINY);
}

/// The same for MobileNetV2, whose classifier dropout draws random masks every step: the resumed
/// epochs must draw the masks the uninterrupted run drew.
#[test]
fn a_run_with_dropout_resumes_to_the_uninterrupted_result() {
    kill_and_resume(&TINY.replace("arch = \"resnet18\"", "arch = \"mobilenetv2\""));
}

/// The same with an EMA of the student's weights, whose average is saved in the resume set
/// and evaluated (with recomputed BatchNorm statistics) instead of the raw weights.
#[test]
fn a_run_with_weight_averaging_resumes_to_the_uninterrupted_result() {
    let config = TINY.replace("epochs = 3", "epochs = 3\nweight_averaging = { kind = \"ema\", decay = 0.9 }");
    let (_tmp, reference) = kill_and_resume(&config);
    assert_eq!(read_json(&reference.join("summary.json"))["weight_averaging"], "ema");
    let metrics = std::fs::read_to_string(reference.join("metrics.jsonl")).unwrap();
    for line in metrics.lines() {
        assert_eq!(serde_json::from_str::<Value>(line).unwrap()["evaluated"], "ema", "{line}");
    }
}

/// Trains `config` once uninterrupted and once killed after its first epoch and resumed;
/// asserts both reach the same result and returns the uninterrupted run's folder (inside the
/// returned temporary directory).
fn kill_and_resume(config: &str) -> (tempfile::TempDir, PathBuf) {
    let (tmp, config, reference) = train_reference(config);
    let crashed = tmp.path().join("crashed");
    let mut child = spawn_train(&config, &crashed, std::process::Stdio::null());
    // Kill (SIGKILL: no chance to clean up) once the first epoch is logged.
    wait_for_first_epoch(&crashed, &mut child);
    // While it trains, a second process on the same folder is refused; the lock the killed
    // process leaves behind does not block the resume below.
    let second = medkd(&["train", "--quiet", "--resume", crashed.to_str().unwrap()]);
    let error = stderr(&second);
    assert!(
        !second.status.success() && error.contains("in use by another medkd process") && error.contains(&child.id().to_string()),
        "{error}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let summary_before = crashed.join("summary.json");
    assert!(!summary_before.exists(), "killed before the end");

    resume_to_the_same_run(&crashed, &reference);
    (tmp, reference)
}

/// SIGTERM (as Ctrl-C) stops a run before its next step with a message saying what is saved;
/// every epoch it logged is committed (checkpoints are written beside the next epoch's training,
/// and the run waits for them before it exits); `--resume` then reaches the uninterrupted result.
#[test]
fn a_run_stopped_by_sigterm_says_so_and_resumes_to_the_uninterrupted_result() {
    let (tmp, config, reference) = train_reference(TINY);
    let stopped = tmp.path().join("stopped");
    let mut child = spawn_train(&config, &stopped, std::process::Stdio::piped());
    // As soon as the first epoch is logged, likely while its checkpoints are being written.
    let started = Instant::now();
    while std::fs::read_to_string(stopped.join("metrics.jsonl")).map_or(true, |text| text.is_empty()) {
        assert!(started.elapsed() < Duration::from_secs(300), "first epoch never finished");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before its first epoch was logged");
        std::thread::sleep(Duration::from_millis(5));
    }
    // The shell's built-in kill: a `kill` binary is not on every machine.
    let signal = Command::new("sh").args(["-c", &format!("kill -TERM {}", child.id())]).status().unwrap();
    assert!(signal.success());
    let output = child.wait_with_output().unwrap();
    let error = stderr(&output);
    assert!(!output.status.success() && error.contains("stopped by a signal") && error.contains("--resume"), "{error}");
    assert!(!stopped.join("summary.json").exists());
    let logged = std::fs::read_to_string(stopped.join("metrics.jsonl")).unwrap().lines().count();
    let last: Value = read_json(&stopped.join("checkpoints/last.json"));
    assert_eq!(last["state"]["epochs_done"], logged, "every logged epoch is committed: {error}");
    resume_to_the_same_run(&stopped, &reference);
}

/// With checkpoints an hour apart, finished epochs are held in memory: a kill after three of
/// four loses them (had they been written after each epoch, epoch 1's set would be committed
/// before epoch 3 is logged), and `--resume` trains from the start to the same result; SIGTERM
/// writes the last finished one before the run stops.
#[test]
fn epochs_held_between_checkpoint_writes_are_lost_to_a_kill_and_written_on_sigterm() {
    let config = TINY.replace("epochs = 3", "epochs = 4").replace("checkpoint_every_seconds = 0", "checkpoint_every_seconds = 3600");
    let (tmp, config, reference) = train_reference(&config);
    let logged = |run: &Path| std::fs::read_to_string(run.join("metrics.jsonl")).map_or(0, |text| text.lines().count());
    let wait_for_epochs = |run: &Path, child: &mut std::process::Child, epochs: usize| {
        let started = Instant::now();
        while logged(run) < epochs {
            assert!(started.elapsed() < Duration::from_secs(300), "epoch {epochs} never finished");
            assert!(child.try_wait().unwrap().is_none(), "the run ended before epoch {epochs} was logged");
            std::thread::sleep(Duration::from_millis(5));
        }
    };

    let killed = tmp.path().join("killed");
    let mut child = spawn_train(&config, &killed, std::process::Stdio::null());
    wait_for_epochs(&killed, &mut child, 3);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!killed.join("summary.json").exists(), "killed before the end");
    assert!(!killed.join("checkpoints/last.json").exists(), "no epoch was written");
    resume_to_the_same_run(&killed, &reference);

    let stopped = tmp.path().join("stopped");
    let mut child = spawn_train(&config, &stopped, std::process::Stdio::piped());
    wait_for_epochs(&stopped, &mut child, 1);
    let signal = Command::new("sh").args(["-c", &format!("kill -TERM {}", child.id())]).status().unwrap();
    assert!(signal.success());
    let output = child.wait_with_output().unwrap();
    let error = stderr(&output);
    assert!(!output.status.success() && error.contains("stopped by a signal"), "{error}");
    let last: Value = read_json(&stopped.join("checkpoints/last.json"));
    assert_eq!(last["state"]["epochs_done"], logged(&stopped), "the held epoch is written: {error}");
    resume_to_the_same_run(&stopped, &reference);
}

/// A checkpoint write that fails (epoch 2's optimizer file cannot be put in place: a folder holds
/// its name, as a full disk or a failing device leaves a file unfinished) stops the run with an
/// error that says what is kept; with the folder gone, `--resume` reaches the uninterrupted
/// result. burn writes the resume set under scratch names of its own, so the failure is set at the
/// final name, after epoch 1 (whose commit clears other epochs' names); a full disk on medkd's own
/// writes is `run_dir`'s unit test.
#[test]
fn a_failed_checkpoint_write_keeps_the_previous_epoch_and_resumes() {
    let (tmp, config, reference) = train_reference(TINY);
    let failing = tmp.path().join("failing");
    let mut child = spawn_train(&config, &failing, std::process::Stdio::null());
    wait_for_first_epoch(&failing, &mut child);
    child.kill().unwrap();
    child.wait().unwrap();
    let last = || read_json(&failing.join("checkpoints/last.json"))["state"]["epochs_done"].clone();
    assert_eq!(last(), 1, "killed during epoch 2");
    let blocker = failing.join("checkpoints/epoch-0002.optim");
    std::fs::create_dir_all(&blocker).unwrap();
    std::fs::write(blocker.join("in the way"), b"").unwrap();
    let output = medkd(&["train", "--quiet", "--resume", failing.to_str().unwrap()]);
    let error = stderr(&output);
    assert!(!output.status.success() && error.contains("saving epoch 2 failed") && error.contains("epoch 1 is kept"), "{error}");
    assert!(error.contains("epoch-0002.optim"), "the error names the file: {error}");
    assert_eq!(last(), 1, "the committed set is still epoch 1's");
    std::fs::remove_dir_all(&blocker).unwrap();
    resume_to_the_same_run(&failing, &reference);
}

/// `medkd train --quiet --config CONFIG --out RUN` started in the background, its stderr to `stderr`.
fn spawn_train(config: &Path, run: &Path, stderr: std::process::Stdio) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_medkd"))
        .args(["train", "--quiet", "--config", config.to_str().unwrap(), "--out", run.to_str().unwrap()])
        .current_dir(repo_root())
        .stderr(stderr)
        .spawn()
        .unwrap()
}

/// Waits until the training run `child` writes into `run` has committed its first epoch's resume
/// set (`last.json`; its metrics line comes just before).
fn wait_for_first_epoch(run: &Path, child: &mut std::process::Child) {
    let started = Instant::now();
    while !run.join("checkpoints/last.json").is_file() {
        assert!(started.elapsed() < Duration::from_secs(300), "first epoch never finished");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before its first epoch was logged");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A run stopped before its first epoch was saved (as `--out` leaves it: the resolved
/// config and an empty checkpoints folder) resumes from the start to the uninterrupted result.
#[test]
fn a_run_stopped_before_its_first_epoch_resumes_from_the_start() {
    let (tmp, _config, reference) = train_reference(TINY);
    let stopped = tmp.path().join("stopped");
    std::fs::create_dir_all(stopped.join("checkpoints")).unwrap();
    std::fs::copy(reference.join("config.toml"), stopped.join("config.toml")).unwrap();
    resume_to_the_same_run(&stopped, &reference);
}

/// Trains `config` uninterrupted into `reference` in a new temporary directory; returns the
/// directory, the written config's path and the run folder.
fn train_reference(config: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path(), config);
    let reference = tmp.path().join("reference");
    let output = train(&config, &reference, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    (tmp, config, reference)
}

/// Resumes the run in `stopped` and asserts it ends as the uninterrupted `reference` did.
fn resume_to_the_same_run(stopped: &Path, reference: &Path) {
    let output = medkd(&["train", "--quiet", "--resume", stopped.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let (a, b) = (read_json(&reference.join("summary.json")), read_json(&stopped.join("summary.json")));
    assert_eq!(a["test"], b["test"], "resumed run reaches the same test metrics");
    assert_eq!(a["best_epoch"], b["best_epoch"]);
    assert_eq!(best_tensors(reference), best_tensors(stopped), "identical best weights");
    let lines = |run: &Path| std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().lines().count();
    assert_eq!(lines(stopped), lines(reference), "each epoch logged once");
}

/// Every tensor of a run's best.safetensors, by name (the header's metadata order may vary).
fn best_tensors(run: &Path) -> Vec<(String, Vec<u8>)> {
    tensors_of(&run.join("checkpoints/best.safetensors"))
}

/// A safetensors file's tensors by name, as bytes.
fn tensors_of(path: &Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut named: Vec<(String, Vec<u8>)> = tensors.tensors().into_iter().map(|(name, view)| (name, view.data().to_vec())).collect();
    named.sort();
    named
}

#[test]
fn bad_configs_fail_before_training_with_a_message_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path(), TINY);
    let cases: [(&[&str], &str); 5] = [
        (&["--set", "train.optimizer.lr=-1"], "train.optimizer.lr"),
        (&["--set", "train.epochs=0"], "train.epochs"),
        (&["--set", "train.batchsize=3"], "batchsize"),
        (&["--set", "data.path=data/missing.npz"], "missing.npz"),
        // DenseNet's ImageNet stem and pooling transitions leave nothing of a 28 px image.
        (&["--set", "model.arch=densenet121"], "densenet121 with the ImageNet stem needs inputs of at least 29x29 px, got 28x28"),
    ];
    for (index, (extra, expected)) in cases.iter().enumerate() {
        let output = train(&config, &tmp.path().join(format!("run{index}")), extra);
        assert!(!output.status.success());
        let message = stderr(&output);
        assert!(message.contains(expected), "{extra:?}: {message}");
        assert!(!message.contains("panicked"), "{message}");
    }
}

/// Each cause is printed once: errors that quote their source are not followed by it again.
#[test]
fn an_error_says_its_cause_once() {
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path(), &TINY.replace("data/breastmnist.npz", "no/such/breastmnist.npz"));
    let output = train(&config, &tmp.path().join("run"), &[]);
    let error = stderr(&output);
    assert!(!output.status.success() && error.contains("no/such/breastmnist.npz"), "{error}");
    assert_eq!(error.matches("No such file or directory").count(), 1, "{error}");
}

#[test]
fn a_diverging_run_stops_with_a_non_finite_loss_error() {
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path(), TINY);
    let output = train(&config, &tmp.path().join("run"), &["--set", "train.optimizer={ kind = \"sgd\", lr = 1e30 }"]);
    assert!(!output.status.success());
    let error = stderr(&output);
    // The error names the batch's samples (BreastMNIST ids are row indices): 16, then a count.
    assert!(error.contains("non-finite loss") && error.contains("on the batch of ") && error.contains("48 more"), "{error}");
}

#[test]
fn distill_trains_a_student_from_a_teacher_run_and_checks_teachers_first() {
    let tmp = tempfile::tempdir().unwrap();
    let teacher = tmp.path().join("teacher");
    // The teacher learns from noisy labels, which the run folder lists (RoS-KD's setting).
    let noise = "data.label_noise={ kind = \"symmetric\", rate = 0.1, seed = 1 }";
    let output = train(&write_config(tmp.path(), TINY), &teacher, &["--set", "train.epochs=2", "--set", noise]);
    assert!(output.status.success(), "{}", stderr(&output));
    let flips = std::fs::read_to_string(teacher.join("label_noise.csv")).unwrap();
    assert_eq!(flips.lines().next(), Some("index,image,clean,noisy"));
    assert_eq!(flips.lines().count() - 1, 55, "round(0.1 x 147) + round(0.1 x 399) of BreastMNIST's train split");

    let student_config = format!(
        "{}\n[[loss]]\nkind = \"kd\"\nweight = 0.9\ntemperature = 4.0\n[[loss]]\nkind = \"rkd_distance\"\nweight = 25.0\n[[loss]]\nkind = \"channel_gram\"\nweight = 100.0\n[[teacher]]\nrun = \"{}\"\n",
        TINY.replace("arch = \"resnet18\"", "arch = \"mobilenetv2\""),
        teacher.display()
    );
    let config = tmp.path().join("student.toml");
    std::fs::write(&config, &student_config).unwrap();
    let student = tmp.path().join("student");
    let distill = |out: &Path, extra: &[&str]| {
        let mut args = vec!["distill", "--quiet", "--config", config.to_str().unwrap(), "--out", out.to_str().unwrap()];
        args.extend_from_slice(extra);
        medkd(&args)
    };
    let output = distill(&student, &["--set", "train.epochs=2"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let summary = read_json(&student.join("summary.json"));
    assert_eq!(summary["model"], "mobilenetv2");
    assert!(summary["teachers"][0].as_str().unwrap().contains("resnet18"), "{}", summary["teachers"]);
    assert_eq!(summary["teacher_cache"], false, "random flips change the input every epoch");
    let first: Value =
        serde_json::from_str(std::fs::read_to_string(student.join("metrics.jsonl")).unwrap().lines().next().unwrap()).unwrap();
    for term in ["cross_entropy", "kd", "rkd_distance", "channel_gram"] {
        assert!(first["train_terms"][term].as_f64().unwrap() > 0.0, "{term} logged: {}", first["train_terms"]);
    }

    // Each mistake is reported before a run folder is made.
    let wrong_classes = distill(&tmp.path().join("bad1"), &["--set", "data.path=../shared/data/medmnist/retinamnist.npz"]);
    assert!(stderr(&wrong_classes).contains("teacher[0]") && stderr(&wrong_classes).contains("classes"), "{}", stderr(&wrong_classes));
    let no_teacher = distill(&tmp.path().join("bad2"), &["--set", "teacher=[]"]);
    assert!(stderr(&no_teacher).contains("needs at least one [[teacher]]"), "{}", stderr(&no_teacher));
    let bad_index = distill(&tmp.path().join("bad3"), &["--set", "loss=[{ kind = \"rkd_angle\", teacher = 1 }]"]);
    assert!(stderr(&bad_index).contains("rkd_angle") && stderr(&bad_index).contains("teacher 1"), "{}", stderr(&bad_index));
    let as_train = train(&config, &tmp.path().join("bad4"), &[]);
    assert!(stderr(&as_train).contains("medkd distill"), "{}", stderr(&as_train));
    let not_weights = tmp.path().join("notes.safetensors");
    std::fs::write(&not_weights, "not weights").unwrap();
    let bad_pretrained = distill(&tmp.path().join("bad6"), &["--set", &format!("model.pretrained=\"{}\"", not_weights.display())]);
    let error = stderr(&bad_pretrained);
    assert!(error.contains("model.pretrained") && error.contains("notes.safetensors"), "{error}");
    for bad in ["bad1", "bad2", "bad3", "bad4", "bad6"] {
        assert!(!tmp.path().join(bad).exists(), "{bad}: no run folder for a rejected config");
    }

    // SSD-KD's terms: the teacher's projection head trains first (stage 1), then every term is
    // logged; rotated views turn the teacher cache off.
    let ssd = tmp.path().join("ssd");
    let terms = "loss=[{ kind = \"cross_entropy\", weight = 0.1 }, { kind = \"kd\", weight = 0.9 }, \
                 { kind = \"kd_rotated\", weight = 2.7 }, { kind = \"sskd\", weight = 10.0, head_epochs = 2 }, \
                 { kind = \"channel_gram\", weight = 1000.0 }]";
    let output = distill(&ssd, &["--set", "train.epochs=1", "--set", terms, "--set", "data.train_transforms=[]"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let head_log = read_json(&ssd.join("teacher_head_0.json"));
    assert_eq!(head_log.as_array().unwrap().len(), 2, "{head_log}");
    assert!(ssd.join("checkpoints/teacher_head_0.bpk").is_file());
    assert_eq!(read_json(&ssd.join("summary.json"))["teacher_cache"], false);
    let first: Value = serde_json::from_str(std::fs::read_to_string(ssd.join("metrics.jsonl")).unwrap().lines().next().unwrap()).unwrap();
    for term in ["cross_entropy", "kd", "kd_rotated", "sskd", "channel_gram"] {
        assert!(first["train_terms"][term].as_f64().unwrap() > 0.0, "{term} logged: {}", first["train_terms"]);
    }
    // Rotated views need square training images: an error before any run folder.
    let oblong =
        distill(&tmp.path().join("bad5"), &["--set", terms, "--set", "data.train_transforms=[{ op = \"resize\", size = [28, 24] }]"]);
    assert!(stderr(&oblong).contains("need them square") && stderr(&oblong).contains("28x24"), "{}", stderr(&oblong));
    assert!(!tmp.path().join("bad5").exists());
}

#[test]
fn info_prints_torchvision_parameter_and_mac_counts() {
    // torchvision: mobilenet_v2(num_classes=7) has 2,232,839 parameters; 300.8 MMAC at 224 px
    // with 1000 classes, of which the classifier is 1.28 M.
    let output = medkd(&["info", "mobilenetv2", "--num-classes", "7"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("parameters  2232839") && text.contains("MACs        299503232"), "{text}");
    let output = medkd(&["info", "resnet18", "--input", "3x28"]);
    assert!(!output.status.success() && stderr(&output).contains("CxHxW"), "{}", stderr(&output));
    // timm's VisionTransformer(img_size=28, patch_size=4, embed_dim=192, depth=12, num_heads=3,
    // in_chans=1): 5,544,808 parameters (tools/golden/vit_logits.py counts the RGB ones).
    let output = medkd(&["info", "vit_tiny_patch4", "--input", "1x28x28"]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("parameters  5544808") && text.contains("MACs        277283328"), "{text}");
    let output = medkd(&["info", "vit_tiny_patch16", "--input", "3x100x100"]);
    assert!(!output.status.success() && stderr(&output).contains("multiples of 16, got 100x100"), "{}", stderr(&output));
}

/// A ViT trains through the same engine: its gallery draws the CLS attention, `eval --against`
/// runs DeLong's paired test (a run against itself: difference 0, p 1), and ViT-only or CNN-only
/// settings crossed, or a patch that does not divide the input, are refused before a run folder
/// is made, naming the key.
#[test]
fn a_vit_trains_and_eval_compares_runs_by_delong() {
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path(), TINY);
    let run = tmp.path().join("vit");
    let vit = ["--set", "model.arch=\"vit_tiny_patch4\"", "--set", "train.epochs=1", "--set", "model.drop_path_rate=0.1"];
    let output = train(&config, &run, &vit);
    assert!(output.status.success(), "{}", stderr(&output));
    let summary = read_json(&run.join("summary.json"));
    assert_eq!(summary["params"], 5_358_338, "timm's ViT-Tiny/4 at 28 px with 2 classes");
    let ci = &summary["test"]["report"]["auc_ci"];
    let auc = summary["test"]["auc"].as_f64().unwrap();
    assert!(ci["lower"].as_f64().unwrap() <= auc && auc <= ci["upper"].as_f64().unwrap(), "{ci}");
    let output = medkd(&["compare", run.to_str().unwrap(), "--metrics", "auc,auc_lower,auc_upper"]);
    let table = String::from_utf8_lossy(&output.stdout);
    let cells = [auc, ci["lower"].as_f64().unwrap(), ci["upper"].as_f64().unwrap()].map(|v| format!("{v:.3} (1 seed)")).join(" | ");
    assert!(table.contains(&cells), "compare's AUC and its interval: {table}");
    let gallery = read_json(&run.join("gallery/gallery.json"));
    assert_eq!(gallery[0]["saliency"], "cls_attention");
    assert_eq!(gallery[0]["map"], json!([7, 7]));

    let output = medkd(&["eval", "--run", run.to_str().unwrap(), "--against", run.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", stderr(&output));
    let row = stdout.lines().rev().find(|line| line.starts_with("normal, benign")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(row.contains("+0.0000") && row.ends_with("1.0000"), "{row}");
    // No ONNX graph for a ViT yet: said, not a broken file.
    let out = tmp.path().join("vit.onnx");
    let output = medkd(&["export", run.to_str().unwrap(), "--format", "onnx", "--out", out.to_str().unwrap()]);
    assert!(!output.status.success() && stderr(&output).contains("ViTs cannot be exported to ONNX yet"), "{}", stderr(&output));
    assert!(!out.exists());

    for (set, message) in
        [("model.arch=\"vit_tiny_patch8\"", "multiples of 8, got 28x28"), ("model.small_input=true", "`model.small_input`")]
    {
        let out = tmp.path().join("refused");
        let output = train(&config, &out, &["--set", "model.arch=\"vit_tiny_patch4\"", "--set", set]);
        assert!(!output.status.success() && stderr(&output).contains(message), "{set}: {}", stderr(&output));
        assert!(!out.exists(), "{set}: no run folder");
    }
    let output = train(&config, &tmp.path().join("refused"), &["--set", "model.drop_path_rate=0.1"]);
    assert!(stderr(&output).contains("`model.drop_path_rate`"), "{}", stderr(&output));
}

/// Every image is decoded before training: a corrupt file is named (with its CSV row) before a
/// run folder exists, whatever the batch size; `bad_images = "skip"` trains without them and
/// lists them; a second check of the same files is answered from the cache.
#[test]
fn bad_images_are_found_before_training_and_skipped_only_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let ham = repo_root().join("../shared/data/ham10000");
    let mut rows = vec!["image_id,dx".to_string()];
    for line in std::fs::read_to_string(ham.join("labels.csv")).unwrap().lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        let count = |dx: &str| rows.iter().filter(|r| r.ends_with(&format!(",{dx}"))).count();
        if (fields[1] == "nv" || fields[1] == "mel") && count(fields[1]) < 12 {
            std::fs::copy(ham.join("images").join(format!("{}.jpg", fields[0])), data.join(format!("{}.jpg", fields[0]))).unwrap();
            rows.push(format!("{},{}", fields[0], fields[1]));
        }
    }
    // A JPEG cut to its first 600 bytes, and a text file named like an image.
    let first = rows[1].split(',').next().unwrap().to_string();
    let jpeg = std::fs::read(data.join(format!("{first}.jpg"))).unwrap();
    std::fs::write(data.join("cut.jpg"), &jpeg[..600]).unwrap();
    std::fs::write(data.join("notes.jpg"), "not an image").unwrap();
    rows.insert(5, "cut,mel".into());
    rows.push("notes,nv".into());
    std::fs::write(data.join("labels.csv"), rows.join("\n") + "\n").unwrap();
    let config = write_config(
        tmp.path(),
        &format!(
            "[data]\nformat = \"csv\"\npath = \"{}\"\nimage_column = \"image_id\"\nimage_ext = \"jpg\"\nlabel_column = \"dx\"\n\
             split = {{ val = 0.2, test = 0.2 }}\neval_transforms = [{{ op = \"resize\", size = [32, 32] }}]\n\
             train_transforms = [{{ op = \"resize\", size = [32, 32] }}]\n\
             [model]\narch = \"resnet18\"\nsmall_input = true\n[train]\nepochs = 1\nbatch_size = 64\n\
             optimizer = {{ kind = \"adam\", lr = 0.001 }}\n[[loss]]\nkind = \"cross_entropy\"\n",
            data.join("labels.csv").display()
        ),
    );
    let cache = tmp.path().join("cache");
    let run = |out: &str, extra: &[&str]| {
        let out = tmp.path().join(out);
        let mut args = vec!["train", "--quiet", "--config", config.to_str().unwrap(), "--out", out.to_str().unwrap()];
        args.extend_from_slice(extra);
        let output = Command::new(env!("CARGO_BIN_EXE_medkd")).args(&args).env("MEDKD_CACHE_DIR", &cache).output().unwrap();
        (output, out)
    };
    let (output, out) = run("refused", &[]);
    let error = stderr(&output);
    assert!(!output.status.success() && !out.exists(), "{error}");
    assert!(error.contains("2 of 26 images do not decode") && error.contains("data.bad_images"), "{error}");
    assert!(error.contains("data row 5: cut.jpg") && error.contains("data row 26: notes.jpg"), "{error}");
    assert_eq!(error.matches("cut.jpg").count(), 1, "each bad file is named once: {error}");

    let (output, out) = run("skipped", &["--set", "data.bad_images=skip"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(!stderr(&output).contains("checked 24"), "the 24 good files were cached by the first check: {}", stderr(&output));
    let summary = read_json(&out.join("summary.json"));
    let skipped: Vec<&str> = summary["skipped_images"].as_array().unwrap().iter().map(|b| b["id"].as_str().unwrap()).collect();
    assert_eq!(skipped, ["cut.jpg", "notes.jpg"]);
    let listed = std::fs::read_to_string(out.join("skipped_images.csv")).unwrap();
    assert!(listed.starts_with("id,row,cause\ncut.jpg,5,"), "{listed}");
    let split = std::fs::read_to_string(out.join("split.csv")).unwrap();
    assert_eq!(split.lines().count(), 1 + 24, "the split holds the 24 images that decode");
}

/// Relational subsets KD on RetinaMNIST's five grades: subsets by training frequency, each a
/// teacher in its own label space with an "other" class, then the student through `subset_kd`.
#[test]
fn rskd_trains_one_teacher_per_class_subset_then_the_student_and_resumes_by_stage() {
    let tmp = tempfile::tempdir().unwrap();
    let config = format!(
        "{}{}",
        TINY.replace("epochs = 3", "epochs = 1").replace("data/breastmnist.npz", "../shared/data/medmnist/retinamnist.npz"),
        "[[loss]]\nkind = \"subset_kd\"\ntemperature = 2.0\n\
         [shots]\nmany = 300\nfew = 100\n\
         [rskd]\nby_frequency = true\nother_class = true\nteacher_arch = \"mobilenetv2\"\n"
    );
    let config = write_config(tmp.path(), &config);
    let out = tmp.path().join("rskd");
    let rskd = |args: &[&str]| medkd(&[&["rskd", "--quiet"], args].concat());
    let output = rskd(&["--config", config.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));

    // Training counts 486, 128, 206, 194, 66: grade 0 many-shot, 4 few-shot, the rest medium.
    let report = read_json(&out.join("rskd.json"));
    assert_eq!(report["rule"], "by_frequency");
    let expected = [("0-many", vec!["0", "other"]), ("1-medium", vec!["1", "2", "3", "other"]), ("2-few", vec!["4", "other"])];
    for (m, (name, classes)) in expected.iter().enumerate() {
        let summary = read_json(&out.join("teachers").join(name).join("summary.json"));
        assert_eq!(summary["class_names"], json!(classes), "{name}");
        assert_eq!(summary["model"], "mobilenetv2");
        assert_eq!(report["teachers"][m]["name"], *name);
        assert_eq!(report["teachers"][m]["test"], summary["test"]);
        // With "other", every test image stays: 400 in RetinaMNIST's test split.
        assert_eq!(summary["test"]["report"]["n"], 400);
    }
    let student = read_json(&out.join("student/summary.json"));
    assert_eq!(student["class_names"], json!(["0", "1", "2", "3", "4"]));
    assert_eq!(student["teachers"].as_array().unwrap().len(), 3);
    let shots = &student["test"]["shots"];
    assert_eq!((shots["many"]["classes"].clone(), shots["few"]["classes"].clone()), (json!(["0"]), json!(["4"])));
    assert_eq!(student["test"]["few_recall"], shots["few"]["recall"]);
    assert!(String::from_utf8_lossy(&output.stdout).contains("teacher 1-medium"));

    let output = rskd(&["--resume", out.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stderr(&output).matches("finished earlier").count(), 4, "{}", stderr(&output));
    assert_eq!(read_json(&out.join("rskd.json")), report);

    // A student without the subset_kd term is refused before anything is made.
    let plain = write_config(tmp.path(), &std::fs::read_to_string(&config).unwrap().replace("kind = \"subset_kd\"", "kind = \"kd\""));
    let output = rskd(&["--config", plain.to_str().unwrap(), "--out", tmp.path().join("plain").to_str().unwrap()]);
    assert!(stderr(&output).contains("subset_kd") && !tmp.path().join("plain").exists(), "{}", stderr(&output));
}

#[test]
fn roskd_trains_teachers_on_subsets_then_the_student_and_resumes_by_stage() {
    let tmp = tempfile::tempdir().unwrap();
    let config = format!(
        "{}{}",
        TINY.replace("epochs = 3", "epochs = 1\nweight_averaging = { kind = \"ema\", decay = 0.9 }")
            .replace("[model]", "[data.label_noise]\nkind = \"symmetric\"\nrate = 0.2\nseed = 1\n[model]"),
        "[[loss]]\nkind = \"kd\"\ntemperature = 4.0\nteachers = \"random\"\n\
         [roskd]\nsubset_ratio = 0.5\n[[roskd.teacher]]\narch = \"resnet18\"\n[[roskd.teacher]]\narch = \"mobilenetv2\"\n"
    );
    let config = write_config(tmp.path(), &config);
    let out = tmp.path().join("roskd");
    let roskd = |args: &[&str]| medkd(&[&["roskd", "--quiet"], args].concat());
    let output = roskd(&["--config", config.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(stdout.contains("teacher 0-resnet18") && stdout.contains("teacher 1-mobilenetv2") && stdout.contains("student"), "{stdout}");

    let report = read_json(&out.join("roskd.json"));
    for (k, arch) in ["resnet18", "mobilenetv2"].iter().enumerate() {
        let teacher = out.join(format!("teachers/{k}-{arch}"));
        let summary = read_json(&teacher.join("summary.json"));
        assert_eq!(summary["model"], *arch);
        assert_eq!(summary["seed"], 3 + k as u64);
        assert_eq!(summary["weight_averaging"], Value::Null);
        assert_eq!(report["teachers"][k]["test"], summary["test"]);
        assert_eq!(report["teachers"][k]["subset"]["seed"], 3 + k as u64);
        // The same noisy labels for every stage: round(0.2 x 147) + round(0.2 x 399) flips.
        let flips = std::fs::read_to_string(teacher.join("label_noise.csv")).unwrap();
        assert_eq!(flips.lines().count() - 1, 109);
    }
    let student = read_json(&out.join("student/summary.json"));
    assert_eq!(student["teachers"].as_array().unwrap().len(), 2);
    assert_eq!(student["weight_averaging"], "ema");
    assert_eq!(report["student"]["test"], student["test"]);

    // A finished run resumes to the same report without training again; a new --out on an
    // existing run is refused.
    let output = roskd(&["--resume", out.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stderr(&output).matches("finished earlier").count(), 3, "{}", stderr(&output));
    assert_eq!(read_json(&out.join("roskd.json")), report);
    let again = roskd(&["--config", config.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(stderr(&again).contains("already holds a RoS-KD run"), "{}", stderr(&again));
    // Commands on one run point from the staged folder to its student.
    let export = medkd(&["export", out.to_str().unwrap(), "--format", "onnx"]);
    let student = out.join("student");
    assert!(
        stderr(&export).contains(&format!("is a staged run, not one run: its student is the run folder {}", student.display())),
        "{}",
        stderr(&export)
    );
}

/// Writes `pixels` (8-bit grayscale, row-major) as a single-frame Secondary Capture DICOM file,
/// as a hospital's export would hold it.
fn write_dicom(path: &Path, width: u32, height: u32, pixels: &[u8]) {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::{tags, uids};
    use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
    let instance = format!("2.25.{}", path.file_stem().unwrap().to_string_lossy().bytes().map(u64::from).sum::<u64>());
    let mut object = InMemDicomObject::new_empty();
    let mut put = |tag, vr, value: PrimitiveValue| object.put(DataElement::new(tag, vr, value));
    put(tags::SOP_CLASS_UID, VR::UI, uids::SECONDARY_CAPTURE_IMAGE_STORAGE.into());
    put(tags::SOP_INSTANCE_UID, VR::UI, instance.as_str().into());
    put(tags::ROWS, VR::US, PrimitiveValue::from(height as u16));
    put(tags::COLUMNS, VR::US, PrimitiveValue::from(width as u16));
    put(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1u16));
    put(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2".into());
    put(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(8u16));
    put(tags::BITS_STORED, VR::US, PrimitiveValue::from(8u16));
    put(tags::HIGH_BIT, VR::US, PrimitiveValue::from(7u16));
    put(tags::PIXEL_REPRESENTATION, VR::US, PrimitiveValue::from(0u16));
    put(tags::PIXEL_DATA, VR::OB, PrimitiveValue::from(pixels.to_vec()));
    let meta = FileMetaTableBuilder::new()
        .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
        .media_storage_sop_class_uid(uids::SECONDARY_CAPTURE_IMAGE_STORAGE)
        .media_storage_sop_instance_uid(instance);
    object.with_meta(meta).unwrap().write_to_file(path).unwrap();
}

/// Hospitals store images as DICOM: the demo's BreastMNIST images written as a folder of DICOM
/// files train to exactly the metrics of the same images as PNG files.
#[test]
fn a_dicom_folder_trains_as_the_same_images_as_png() {
    let tmp = tempfile::tempdir().unwrap();
    let splits = medkd_data::open_medmnist(&repo_root().join("data/breastmnist.npz"), None).unwrap();
    for (split, data) in ["train", "val", "test"].iter().zip(&splits) {
        for i in 0..medkd_data::ImageDataset::len(data) {
            let image = medkd_data::ImageDataset::image(data, i).unwrap().to_luma8();
            let medkd_data::Target::Class(class) = medkd_data::ImageDataset::target(data, i) else { unreachable!() };
            for kind in ["png", "dcm"] {
                let path = tmp.path().join(kind).join(format!("class{class}")).join(format!("{split}_{i:04}.{kind}"));
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                match kind {
                    "png" => image.save(&path).unwrap(),
                    _ => write_dicom(&path, image.width(), image.height(), image.as_raw()),
                }
            }
        }
    }
    let mut summaries = Vec::new();
    for kind in ["png", "dcm"] {
        let config = TINY
            .replace("format = \"medmnist\"", "format = \"folder\"")
            .replace("path = \"data/breastmnist.npz\"", &format!("path = \"{}\"", tmp.path().join(kind).display()))
            .replace("epochs = 3", "epochs = 2");
        let dir = tmp.path().join(format!("config_{kind}"));
        std::fs::create_dir_all(&dir).unwrap();
        let run = tmp.path().join(format!("run_{kind}"));
        let output = train(&write_config(&dir, &config), &run, &[]);
        assert!(output.status.success(), "{kind}: {}", stderr(&output));
        summaries.push(read_json(&run.join("summary.json")));
    }
    assert!(summaries[0]["test"]["report"]["n"].as_u64().unwrap() > 100);
    for split in ["val", "test"] {
        assert_eq!(summaries[0][split], summaries[1][split], "{split} metrics of the PNG and DICOM runs");
    }
}

/// `medkd export`: the ONNX graph run by tract (an ONNX runtime independent of medkd) gives
/// `medkd predict --split test`'s probabilities on the inputs it exported, model.json describes
/// the run (normalization measured at run time, temperature, classes), and the torchvision
/// export holds the kept weights themselves.
#[test]
fn export_reproduces_predict_outside_medkd() {
    use tract_onnx::prelude::*;
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path(), &format!("{TINY}\n[data.normalize]\nkind = \"dataset\"\n"));
    let run = tmp.path().join("run");
    let output = train(&config, &run, &["--set", "train.epochs=1"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let [onnx_dir, torchvision_dir, predictions] = ["onnx", "torchvision", "predict.csv"].map(|name| tmp.path().join(name));
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    for args in [
        vec![
            "export".into(),
            path(&run),
            "--format".into(),
            "onnx".into(),
            "--inputs".into(),
            "test".into(),
            "--out".into(),
            path(&onnx_dir),
        ],
        vec!["export".into(), path(&run), "--format".into(), "torchvision".into(), "--out".into(), path(&torchvision_dir)],
        vec!["predict".into(), "--run".into(), path(&run), "--split".into(), "test".into(), "--out".into(), path(&predictions)],
    ] {
        let output = medkd(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
    }

    let summary = read_json(&run.join("summary.json"));
    let description = read_json(&onnx_dir.join("model.json"));
    assert_eq!(description["normalization"], summary["normalization"]);
    assert_ne!(summary["normalization"]["mean"][0], 0.0, "measured on the training images");
    assert_eq!(description["temperature"], summary["calibration"]["temperature"]);
    assert_eq!(description["class_names"], json!(["malignant", "normal, benign"]));
    assert_eq!(description["input"]["shape"], json!([3, 28, 28]));
    assert_eq!((description["arch"].as_str(), description["small_input"].as_bool()), (Some("resnet18"), Some(false)));

    // The exported inputs, run through the graph by tract.
    let bytes = std::fs::read(onnx_dir.join("inputs_test.safetensors")).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let ids: Vec<String> = serde_json::from_str(&header.metadata().as_ref().unwrap()["ids"]).unwrap();
    let labels: Vec<usize> = serde_json::from_str(&header.metadata().as_ref().unwrap()["labels"]).unwrap();
    assert_eq!(labels, test_labels());
    let inputs = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let images = inputs.tensor("images").unwrap();
    let values: Vec<f32> = images.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    assert!(values.iter().all(|v| (0.0..=1.0).contains(v)), "pixels in [0, 1]: the graph normalizes");
    let model = tract_onnx::onnx()
        .model_for_path(onnx_dir.join("model.onnx"))
        .unwrap()
        .with_input_fact(0, f32::fact(images.shape()).into())
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let input = Tensor::from_shape(images.shape(), &values).unwrap();
    let outputs = model.run(tvec!(input.into())).unwrap();
    let probabilities: Vec<f32> = outputs[1].to_plain_array_view::<f32>().unwrap().iter().copied().collect();

    let text = std::fs::read_to_string(&predictions).unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.iter().map(|r| r[0].to_owned()).collect::<Vec<_>>(), ids);
    let expected: Vec<f32> = rows.iter().flat_map(|r| [r[1].parse::<f32>().unwrap(), r[2].parse::<f32>().unwrap()]).collect();
    let diff = probabilities.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(diff <= 1e-5, "ONNX probabilities differ from medkd predict's by {diff}");

    // The torchvision export is the kept weights, with model.json in its header.
    assert_eq!(tensors_of(&torchvision_dir.join("model.safetensors")), best_tensors(&run));
    let bytes = std::fs::read(torchvision_dir.join("model.safetensors")).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let embedded: Value = serde_json::from_str(&header.metadata().as_ref().unwrap()["medkd"]).unwrap();
    assert_eq!(embedded, read_json(&torchvision_dir.join("model.json")));
    assert_eq!(embedded["format"], "torchvision");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(torchvision_dir.join("model.safetensors")).unwrap().permissions().mode();
        assert_eq!(mode & 0o044, 0o044, "readable by others, as it is meant to be shared: {mode:o}");
    }

    // Int8 weights: a quarter of the ONNX file, said so in model.json; ONNX only.
    let int8_dir = tmp.path().join("int8");
    let output = medkd(&["export", &path(&run), "--format", "onnx", "--weights", "int8", "--out", &path(&int8_dir)]);
    assert!(output.status.success(), "{}", stderr(&output));
    let size = |p: PathBuf| std::fs::metadata(p).unwrap().len() as f64;
    let ratio = size(int8_dir.join("model.onnx")) / size(onnx_dir.join("model.onnx"));
    assert!((0.25..0.27).contains(&ratio), "{ratio}");
    assert!(read_json(&int8_dir.join("model.json"))["weights"].as_str().unwrap().starts_with("int8 per output channel"));
    let refused = tmp.path().join("refused");
    let output = medkd(&["export", &path(&run), "--format", "torchvision", "--weights", "int8", "--out", &path(&refused)]);
    assert!(!output.status.success() && stderr(&output).contains("int8 weights are written into ONNX graphs only"), "{}", stderr(&output));
    assert!(!refused.exists());

    // A calibration set: 10 training images evenly spaced through the split (546 of them).
    let calibration = tmp.path().join("calibration");
    let output =
        medkd(&["export", &path(&run), "--format", "onnx", "--inputs", "train", "--inputs-max", "10", "--out", &path(&calibration)]);
    assert!(output.status.success(), "{}", stderr(&output));
    let bytes = std::fs::read(calibration.join("inputs_train.safetensors")).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let ids: Vec<String> = serde_json::from_str(&header.metadata().as_ref().unwrap()["ids"]).unwrap();
    let train_ids: Vec<String> = (0..10).map(|i| (i * 546 / 10).to_string()).collect();
    assert_eq!(ids, train_ids);
    assert_eq!(safetensors::SafeTensors::deserialize(&bytes).unwrap().tensor("images").unwrap().shape(), [10, 3, 28, 28]);

    // A run folder that is not one is refused before anything is written.
    let output = medkd(&["export", tmp.path().to_str().unwrap(), "--format", "onnx", "--out", &path(&tmp.path().join("nothing"))]);
    assert!(!output.status.success() && !tmp.path().join("nothing").exists(), "{}", stderr(&output));
}

/// A small localization run: 5% of ISIC 2018's training split at 32 px, boxes moved by flips,
/// the hard-to-learn set refreshed by pruning after every epoch (an agreement of 0.9 flags
/// samples even in a barely trained model, so their weights take part).
const TINY_BOXES: &str = r#"
seed = 3
[data]
format = "csv"
path = "../shared/data/isic2018_seg/labels.csv"
image_dir = "images"
image_column = "image"
image_ext = "jpg"
box_columns = ["bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1"]
split = { seed = 0, val = 0.05, test = 0.05 }
train_subset = { ratio = 0.05, seed = 0 }
train_transforms = [{ op = "resize", size = [32, 32] }, { op = "hflip" }]
eval_transforms = [{ op = "resize", size = [32, 32] }]
[model]
arch = "resnet18"
small_input = true
[train]
epochs = 3
batch_size = 16
workers = 2
select_metric = "mean_iou"
optimizer = { kind = "adam", lr = 0.001 }
[method]
kind = "localize"
htl = { refresh_epochs = 1, sparsity = 0.6, agreement = 0.9, beta = 2.0 }
semi = { labelled = 0.5, burn_in_epochs = 1, confidence = 0.0 }
[[loss]]
kind = "box_l1"
weight = 5.0
[[loss]]
kind = "giou"
weight = 2.0
"#;

/// The hard-to-learn set and the semi-supervised teacher are part of the resume set: a killed
/// localization run resumes to the uninterrupted result.
#[test]
fn a_localization_run_resumes_to_the_uninterrupted_result() {
    let (_tmp, reference) = kill_and_resume(TINY_BOXES);
    let summary = read_json(&reference.join("summary.json"));
    let htl = &summary["htl"];
    assert_eq!(htl["refreshes"].as_array().unwrap().len(), 3, "{htl}");
    let semi = &summary["semi"];
    assert_eq!(semi["refreshes"].as_array().unwrap().len(), 2, "after epochs 1 and 3: {semi}");
}

/// The mean of a predictions CSV's `iou` column.
fn mean_iou_of(csv_path: &Path) -> (Vec<String>, f64) {
    let mut reader = csv::Reader::from_path(csv_path).unwrap();
    let headers: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    let ious: Vec<f64> = reader.records().map(|r| r.unwrap()[9].parse().unwrap()).collect();
    (headers, ious.iter().sum::<f64>() / ious.len() as f64)
}

/// Localization runs through `predict` (a split and image files), `eval` and `prune`, each
/// agreeing with the summary the run wrote; refusals name what is wrong.
#[test]
fn localization_runs_predict_evaluate_and_prune() {
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path(), &TINY_BOXES.replace("epochs = 3", "epochs = 2").replace("htl = {", "# htl = {"));
    let runs: Vec<PathBuf> = ["a", "b"].iter().map(|name| tmp.path().join(name)).collect();
    for (seed, run) in runs.iter().enumerate() {
        let output = train(&config, run, &["--set", &format!("seed={seed}")]);
        assert!(output.status.success(), "{}", stderr(&output));
    }
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let summary = read_json(&runs[0].join("summary.json"));
    let test_iou = summary["test"]["mean_iou"].as_f64().unwrap();

    let predicted = tmp.path().join("test_boxes.csv");
    let output = medkd(&["predict", "--run", &path(&runs[0]), "--split", "test", "--out", &path(&predicted)]);
    assert!(output.status.success(), "{}", stderr(&output));
    let (headers, mean) = mean_iou_of(&predicted);
    assert_eq!(headers, ["image", "x0", "y0", "x1", "y1", "true_x0", "true_y0", "true_x1", "true_y1", "iou"]);
    assert!((mean - test_iou).abs() < 1e-9, "predict {mean} vs summary {test_iou}");
    assert_eq!(std::fs::read(&predicted).unwrap(), std::fs::read(runs[0].join("predictions/test.csv")).unwrap());

    let output = medkd(&["eval", "--run", &path(&runs[0]), "--split", "test"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success() && stdout.contains(&format!("mean IoU    {test_iou:.4}")), "{stdout}{}", stderr(&output));

    let images = ["ISIC_0000001.jpg", "ISIC_0000004.jpg"].map(|f| repo_root().join("../shared/data/isic2018_seg/images").join(f));
    let files = tmp.path().join("file_boxes.csv");
    let output = medkd(&["predict", "--run", &path(&runs[0]), "--out", &path(&files), "--resize", &path(&images[0]), &path(&images[1])]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = std::fs::read_to_string(&files).unwrap();
    let rows: Vec<Vec<f64>> = text.lines().skip(1).map(|l| l.split(',').skip(1).map(|v| v.parse().unwrap()).collect()).collect();
    assert!(text.starts_with("image,x0,y0,x1,y1\nISIC_0000001,") && rows.len() == 2, "{text}");
    assert!(rows.iter().all(|b| b[2] > b[0] && b[3] > b[1]), "{text}");

    // prune on the test split: its dense rows are the runs' own test IoUs.
    let pruned = tmp.path().join("prune");
    let mut args = vec!["prune".to_string()];
    args.extend(runs.iter().map(|r| path(r)));
    args.extend(["--split", "test", "--sparsity", "0.5,0.9", "--out", &path(&pruned)].map(String::from));
    let output = medkd(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(output.status.success(), "{}", stderr(&output));
    let report = read_json(&pruned.join("prune.json"));
    for row in report["curve"].as_array().unwrap() {
        let sparsity = row["sparsity"].as_f64().unwrap();
        assert!((row["reached"].as_f64().unwrap() - sparsity).abs() < 1e-4, "{row}");
        if sparsity == 0.0 {
            let run = PathBuf::from(row["run"].as_str().unwrap());
            let expected = read_json(&run.join("summary.json"))["test"]["mean_iou"].as_f64().unwrap();
            assert!((row["mean_iou"].as_f64().unwrap() - expected).abs() < 1e-9, "{row}");
        }
    }
    let htl = std::fs::read_to_string(pruned.join("htl.csv")).unwrap();
    assert!(htl.starts_with("image,htl,votes,models,agreement,dense_iou,pruned_iou\n"), "{htl}");
    let test_count = summary["test"]["report"]["n"].as_u64().unwrap() as usize;
    assert_eq!(htl.lines().count(), test_count + 1);
    for line in htl.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        let votes: usize = fields[2].parse().unwrap();
        assert_eq!(fields[1] == "1", votes == 2, "HTL is the modal vote of 2 models: {line}");
    }
    assert_eq!(report["htl"].as_u64().unwrap() as usize, htl.lines().filter(|l| l.split(',').nth(1) == Some("1")).count());
    // report.html: the two sparsity plots, drawn from prune.json's numbers.
    let page = std::fs::read_to_string(pruned.join("report.html")).unwrap();
    assert!(page.contains("data-plot=\"prune_iou\"") && page.contains("data-plot=\"prune_agreement\""));
    let start = page.find("id=\"medkd-data\">").unwrap() + "id=\"medkd-data\">".len();
    let embedded: serde_json::Value =
        serde_json::from_str(&page[start..page[start..].find("</script>").unwrap() + start].replace("<\\/", "</")).unwrap();
    assert_eq!(embedded, report, "the page embeds prune.json");

    // A file of test images cannot weigh training images; nothing is created.
    let out = tmp.path().join("with_htl");
    let htl_file = format!("method={{ kind = \"localize\", htl = {{ file = \"{}\" }} }}", path(&pruned.join("htl.csv")));
    let output = train(&config, &out, &["--set", &htl_file]);
    assert!(!output.status.success() && stderr(&output).contains("does not list training image"), "{}", stderr(&output));
    assert!(!out.exists(), "refused before the run folder is made");

    for (args, expected) in [
        (vec!["prune", &path(&runs[0]), "--sparsity", "1.0", "--out", &path(&pruned)], "outside [0, 1)"),
        (vec!["attack", "--run", &path(&runs[0]), "--attack", "fgsm"], "localization run"),
        (vec!["eval", "--run", &path(&runs[0]), "--tta", "flips"], "--tta applies to classifiers"),
    ] {
        let output = medkd(&args);
        assert!(!output.status.success() && stderr(&output).contains(expected), "{args:?}: {}", stderr(&output));
    }
}

/// A weakly supervised run: 3% of HAM10000's training split at 32 px, classes from `dx`.
const TINY_WEAK: &str = r#"
seed = 5
[data]
format = "csv"
path = "../shared/data/ham10000_seg/labels.csv"
image_dir = "images"
image_column = "image_id"
label_column = "dx"
image_ext = "jpg"
box_columns = ["bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1"]
split = { seed = 0, val = 0.02, test = 0.02 }
train_subset = { ratio = 0.03, seed = 0 }
train_transforms = [{ op = "resize", size = [32, 32] }]
eval_transforms = [{ op = "resize", size = [32, 32] }]
[model]
arch = "resnet18"
small_input = true
[train]
epochs = 1
batch_size = 16
workers = 2
select_metric = "loss"
optimizer = { kind = "adam", lr = 0.001 }
[method]
kind = "localize"
weak = { cam_threshold = 0.2 }
[[loss]]
kind = "cross_entropy"
"#;

/// `eval` and `predict` of a weakly supervised run at another CAM threshold agree with each other
/// and differ from the run's own; the option is refused where it cannot apply.
#[test]
fn weak_runs_evaluate_at_another_cam_threshold() {
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path(), TINY_WEAK);
    let run = tmp.path().join("weak");
    let output = train(&config, &run, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let run_arg = path(&run);
    let eval_iou = |extra: &[&str]| {
        let mut args = vec!["eval", "--run", run_arg.as_str(), "--split", "test"];
        args.extend_from_slice(extra);
        let output = medkd(&args);
        assert!(output.status.success(), "{}", stderr(&output));
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let line = stdout.lines().find(|l| l.starts_with("mean IoU")).unwrap().to_string();
        line.split_whitespace().last().unwrap().parse::<f64>().unwrap()
    };
    let own = eval_iou(&[]);
    let summary = read_json(&run.join("summary.json"));
    assert!((own - summary["test"]["mean_iou"].as_f64().unwrap()).abs() < 5e-5, "{own} vs {summary}");
    let at_other = eval_iou(&["--cam-threshold", "0.9"]);
    assert_ne!(own, at_other);
    let boxes = tmp.path().join("boxes.csv");
    let output = medkd(&["predict", "--run", &path(&run), "--split", "test", "--cam-threshold", "0.9", "--out", &path(&boxes)]);
    assert!(output.status.success(), "{}", stderr(&output));
    let (_, mean) = mean_iou_of(&boxes);
    assert!((mean - at_other).abs() < 5e-5, "predict {mean} vs eval {at_other}");

    let image = repo_root().join("../shared/data/ham10000_seg/images/ISIC_0024306.jpg");
    for (args, expected) in [
        (vec!["eval", "--run", &path(&run), "--cam-threshold", "1.5"], "must be in (0, 1)"),
        (vec!["predict", "--run", &path(&run), "--out", &path(&boxes), "--resize", &path(&image)], "for a split"),
    ] {
        let output = medkd(&args);
        assert!(!output.status.success() && stderr(&output).contains(expected), "{args:?}: {}", stderr(&output));
    }
    let boxes_config = write_config(tmp.path(), TINY_BOXES);
    let box_run = tmp.path().join("boxes");
    let output = train(&boxes_config, &box_run, &["--set", "train.epochs=2"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let output = medkd(&["eval", "--run", &path(&box_run), "--cam-threshold", "0.5"]);
    assert!(!output.status.success() && stderr(&output).contains("[method.weak]"), "{}", stderr(&output));
}

/// DISTL on 30% of BreastMNIST: one round and its supervised baseline, each a run folder.
const TINY_DISTL: &str = r#"
seed = 2
[data]
format = "medmnist"
path = "data/breastmnist.npz"
channels = 1
train_subset = { ratio = 0.3, seed = 0 }
train_transforms = [{ op = "random_resized_crop", size = 28, scale = [0.7, 1.0] }]
[model]
arch = "vit_tiny_patch4"
[method]
kind = "distl"
labelled = 0.25
correction_every = 3
[method.dino]
out_dim = 64
hidden = 32
bottleneck = 16
local_crops = { number = 1, size = 12 }
[train]
epochs = 1
batch_size = 16
workers = 2
optimizer = { kind = "adamw", lr = 0.0005, weight_decay = 0.01 }
[[loss]]
kind = "cross_entropy"
[distl]
rounds = 2
round0_epochs = 2
"#;

/// `medkd distl` trains round 0 on the labelled part, round 1 from it with fold 0 unlabelled, and
/// the supervised baseline on the same images with labels; prints each AUC with DeLong's interval
/// and the paired test; resumes as finished. `kind = "dino"` pre-trains and is scored by k-NN.
/// Bad settings are refused before any folder exists.
#[test]
fn distl_runs_its_rounds_and_baseline_and_refuses_bad_settings_first() {
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path(), TINY_DISTL);
    let out = tmp.path().join("distl");
    let distl = |extra: &[&str], out: &Path| {
        let mut args = vec!["distl", "--quiet", "--config", config.to_str().unwrap(), "--out", out.to_str().unwrap()];
        args.extend_from_slice(extra);
        medkd(&args)
    };
    let output = distl(&[], &out);
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = read_json(&out.join("distl.json"));
    let stages: Vec<&str> = report["stages"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(stages, ["round0", "round1", "round2", "supervised1", "supervised2"]);
    let epochs = |stage: &str| read_json(&out.join(stage).join("summary.json"))["epochs_run"].as_u64().unwrap();
    assert_eq!([epochs("round0"), epochs("round1"), epochs("supervised1")], [2, 1, 2], "round 0's epochs for the baseline too");
    let round2 = std::fs::read_to_string(out.join("round2/config.toml")).unwrap();
    assert!(
        round2.contains("previous_round") && round2.contains("round1") && !round2.contains("best.safetensors"),
        "round 2 carries round 1 over: {round2}"
    );
    let round1 = std::fs::read_to_string(out.join("round1/config.toml")).unwrap();
    assert!(round1.contains("round0/checkpoints/best.safetensors"), "round 1 starts from round 0: {round1}");
    assert!(!std::fs::read_to_string(out.join("supervised1/config.toml")).unwrap().contains("best.safetensors"));
    let summary = read_json(&out.join("round1/summary.json"));
    assert_eq!(summary["distl"]["labelled"], 41);
    assert_eq!(summary["distl"]["fold_sizes"], json!([41, 41, 41]));
    let terms = read_json_line(&out.join("round1/metrics.jsonl"));
    for term in ["cross_entropy", "pseudo_label", "dino"] {
        assert!(terms["train_terms"][term].as_f64().is_some(), "{term}: {terms}");
    }
    let baseline_terms = read_json_line(&out.join("supervised1/metrics.jsonl"));
    assert!(baseline_terms["train_terms"]["dino"].is_null(), "the baseline learns from labels alone: {baseline_terms}");
    assert!(stdout.contains("DeLong's paired test") && stdout.contains("round1 (A) against"), "{stdout}");
    let ci = &report["stages"][1]["test"]["report"]["auc_ci"];
    assert!(ci["lower"].as_f64().unwrap() <= ci["upper"].as_f64().unwrap(), "{ci}");
    // A finished DISTL run resumes to the same report without training.
    let resumed = medkd(&["distl", "--quiet", "--resume", out.to_str().unwrap()]);
    assert!(resumed.status.success() && stderr(&resumed).contains("round1: finished earlier"), "{}", stderr(&resumed));

    let dino_dir = tmp.path().join("dino");
    std::fs::create_dir(&dino_dir).unwrap();
    let one_run = write_config(&dino_dir, &TINY_DISTL[..TINY_DISTL.find("[distl]").unwrap()]);
    let dino_method = "method={ kind = \"dino\", knn_k = 5, dino = { out_dim = 64, hidden = 32, bottleneck = 16, local_crops = { number = 1, size = 12 } } }";
    let dino_run = dino_dir.join("run");
    let with_loss = train(&one_run, &dino_dir.join("refused"), &["--set", dino_method]);
    assert!(stderr(&with_loss).contains("no [[loss]] term; remove them"), "{}", stderr(&with_loss));
    let dino = train(&one_run, &dino_run, &["--set", dino_method, "--set", "loss=[]"]);
    assert!(dino.status.success(), "{}", stderr(&dino));
    let line = read_json_line(&dino_run.join("metrics.jsonl"));
    assert!(line["train_terms"]["dino"].as_f64().unwrap() > 0.0 && line["val"]["auc"].as_f64().is_some(), "k-NN scores: {line}");
    let eval = medkd(&["eval", "--run", dino_run.to_str().unwrap()]);
    assert!(!eval.status.success() && stderr(&eval).contains("has no trained classifier"), "{}", stderr(&eval));
    // `eval --knn` scores it as training did: the same k-NN, the training split as the bank.
    let eval = medkd(&["eval", "--run", dino_run.to_str().unwrap(), "--knn", "5", "--split", "val"]);
    let stdout = String::from_utf8_lossy(&eval.stdout);
    let summary = read_json(&dino_run.join("summary.json"));
    let auc = format!("AUC                  {:.4}", summary["val"]["auc"].as_f64().unwrap());
    assert!(eval.status.success() && stdout.contains("scored by 5-NN") && stdout.contains(&auc), "{auc}: {stdout}{}", stderr(&eval));
    let eval = medkd(&["eval", "--run", dino_run.to_str().unwrap(), "--knn", "0"]);
    assert!(!eval.status.success() && stderr(&eval).contains("--knn"), "{}", stderr(&eval));

    let teacher = format!("teacher=[{{ run = \"{}\" }}]", out.join("round0").display());
    let cases: [(&str, &str); 7] = [
        ("method.labelled=1.0", "`method.labelled`: must be in (0, 1)"),
        ("method.folds=200", "200 unlabelled folds do not fit the training split: 164 samples, 41 of them labelled, leave 123"),
        ("method.dino.local_crops.size=32", "local crops (32 px) must not be larger than the global views (28x28)"),
        (
            "method.dino.local_crops.size=10",
            "`method.dino.local_crops.size`: invalid model spec: a ViT with 4x4 patches needs an input whose height and width are multiples of 4, got 10x10",
        ),
        ("model.arch=\"vit_tiny_patch8\"", "multiples of 8, got 28x28"),
        ("distl.rounds=4", "`distl.rounds`: must be in [1, method.folds = 3], got 4"),
        (&teacher, "remove the [[teacher]] entries"),
    ];
    for (index, (set, message)) in cases.iter().enumerate() {
        let refused = tmp.path().join(format!("refused{index}"));
        let output = distl(&["--set", set], &refused);
        assert!(!output.status.success() && stderr(&output).contains(message), "{set}: {}", stderr(&output));
        assert!(!stderr(&output).contains("panicked"));
        assert!(!refused.exists(), "{set}: no folder for a refused config");
    }

    // A kept run (its stages' checkpoints gone) still trains the stages it lacks, the same way,
    // and its paired tests, read from the stages' predictions, are those `eval` computes afresh.
    let [round1, supervised1] = ["round1", "supervised1"].map(|stage| out.join(stage).to_str().unwrap().to_string());
    let eval = medkd(&["eval", "--run", &round1, "--against", &supervised1, "--split", "test"]);
    let eval = String::from_utf8_lossy(&eval.stdout);
    let paired = &eval[eval.find("DeLong's paired test").expect("eval --against prints the paired test")..];
    for stage in ["round0", "round1", "round2"] {
        std::fs::remove_dir_all(out.join(stage).join("checkpoints")).unwrap();
    }
    let predictions = std::fs::read(out.join("supervised2/predictions/test.csv")).unwrap();
    std::fs::remove_dir_all(out.join("supervised2")).unwrap();
    let resumed = medkd(&["distl", "--quiet", "--resume", out.to_str().unwrap()]);
    assert!(resumed.status.success() && stderr(&resumed).contains("supervised2: training"), "{}", stderr(&resumed));
    assert_eq!(std::fs::read(out.join("supervised2/predictions/test.csv")).unwrap(), predictions);
    assert!(String::from_utf8_lossy(&resumed.stdout).contains(paired.trim_end()), "{paired}\n{}", String::from_utf8_lossy(&resumed.stdout));
}

fn read_json_line(path: &Path) -> Value {
    serde_json::from_str(std::fs::read_to_string(path).unwrap().lines().next().unwrap()).unwrap()
}

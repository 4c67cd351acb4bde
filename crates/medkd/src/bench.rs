//! `medkd bench`: times medkd's training and inference steps, its data loader and a loss term on
//! the CPU (burn's `flex` backend), runs the PyTorch reference (`bench/pytorch_reference.py`) on
//! the same workloads in the same command, and reports both side by side with their ratio.
//!
//! Both sides read their workloads from one table each ([`WORKLOADS`] here, `MODEL_WORKLOADS` /
//! `LOADER_WORKLOADS` / `LOSS_WORKLOADS` in the script, same names and shapes), time `warmup`
//! untimed then `iters` timed repetitions, and report the median (and the minimum): on a small
//! shared machine a few repetitions are slowed by other processes, which moves the mean but
//! hardly the median.

use std::collections::{BTreeMap, HashSet};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::Distribution;
use medkd_data::{DataConfig, Loader, LoaderOptions, build_pipelines, open_splits};
use medkd_losses::{
    DinoHead, DinoHeadShape, Features, LossContext, LossSpec, Objective, Targets, TaskFacts, TeacherFacts, dino_loss, updated_center,
};
use medkd_models::{Arch, FeatureLayout, Masks, Model, ModelSpec, prune_global};
use medkd_train::averaging::blend_toward;
use medkd_train::build_info;
use medkd_train::config::DeviceChoice;
use medkd_train::device::make_device;
use medkd_train::methods::SelfDistilled;
use medkd_train::optim::adam::FusedAdam;
use medkd_train::optim::sgd::FusedSgd;
use serde_json::{Value, json};

/// The burn release the workspace pins (Cargo.toml `burn = "=0.22.1"`), recorded in bench.json.
const BURN_VERSION: &str = "0.22.1";
/// The PyTorch script, compiled in: the table it times is always the one this binary was built
/// with, whatever the working directory (see [`run_pytorch`]).
const PYTORCH_SCRIPT: &str = include_str!("../../../bench/pytorch_reference.py");
/// Threads given to PyTorch: the 2-core machines medkd is benchmarked on.
const PYTORCH_THREADS: usize = 2;
const NUM_CLASSES: usize = 10;
const LEARNING_RATE: f64 = 0.01;
/// The share of conv and linear weights the masked train workload prunes (bench/pytorch_reference.py too).
const MASKED_SPARSITY: f64 = 0.5;
const LOADER_BATCH: usize = 32;
const LOADER_WORKERS: usize = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// forward (BatchNorm in training mode), cross-entropy, backward, SGD step, loss read back.
    Train,
    /// The train step of a model pruned by global magnitude at [`MASKED_SPARSITY`], its masks put
    /// back after the step (fine-tuning a pruned model, `model.prune_sparsity`).
    MaskedTrain,
    /// forward (BatchNorm on running statistics) without autodiff, logits read back.
    Infer,
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    /// One step of `arch` on a `batch x 3 x side x side` N(0, 1) input with fixed labels.
    Model { arch: Arch, mode: Mode, batch: usize, side: usize },
    /// One pass of the HAM10000 training pipeline at `side` px over the first `images` images of
    /// labels.csv.
    Loader { side: usize, images: usize },
    /// The RKD angle loss (the term's default chunk) and the student's gradient, on N(0, 1)
    /// student and teacher embeddings of `batch` rows.
    RkdAngle { batch: usize, student_dim: usize, teacher_dim: usize },
    /// The `subset_kd` term (through its `[[loss]]` spec, T = 4, default weights) and the
    /// student's gradient, on N(0, 1) logits of `batch` HAM10000 images (7 classes) and of the
    /// two lesion-type teachers of configs/longtail/ham10000_rskd.toml ({mel, nv} and the rest).
    SubsetKd { batch: usize },
    /// One DINO step as configs/distl runs it: ViT-Tiny/4 with DINO's head (hidden 512,
    /// bottleneck 256, out 4096) on two 28 px global and two 12 px local N(0, 1) views of `batch`
    /// images (3 channels), the EMA teacher on the global ones; DINO's loss, backward, AdamW,
    /// the teacher's EMA and the centre's update.
    Dino { batch: usize },
}

struct Workload {
    name: &'static str,
    kind: Kind,
}

const fn model(name: &'static str, arch: Arch, mode: Mode, batch: usize, side: usize) -> Workload {
    Workload { name, kind: Kind::Model { arch, mode, batch, side } }
}

/// Every workload, in report order. Names and shapes must match the script's table (the
/// `script_knows_every_workload` test checks the names). ResNet-18 names carry no prefix.
const WORKLOADS: &[Workload] = &[
    model("train_64", Arch::ResNet18, Mode::Train, 32, 64),
    // Fine-tuning a pruned model: compare with train_64 for the masks' cost.
    model("train_64_masked", Arch::ResNet18, Mode::MaskedTrain, 32, 64),
    model("train_224", Arch::ResNet18, Mode::Train, 8, 224),
    model("infer_224", Arch::ResNet18, Mode::Infer, 32, 224),
    model("infer_224_b1", Arch::ResNet18, Mode::Infer, 1, 224),
    model("mobilenetv2_train_64", Arch::MobileNetV2, Mode::Train, 32, 64),
    model("mobilenetv2_train_224", Arch::MobileNetV2, Mode::Train, 8, 224),
    model("mobilenetv2_infer_224", Arch::MobileNetV2, Mode::Infer, 32, 224),
    model("mobilenetv2_infer_224_b1", Arch::MobileNetV2, Mode::Infer, 1, 224),
    // The SSD-KD teacher of configs/ham10000 (64 px; its recipe trains at batch 64).
    model("resnet50_train_64", Arch::ResNet50, Mode::Train, 32, 64),
    // The memory workload of issue #5: run alone under `/usr/bin/time -v` for its peak RSS.
    model("resnet50_train_224", Arch::ResNet50, Mode::Train, 32, 224),
    // RoS-KD's second teacher (configs/roskd/ham10000_resnet18_64.toml).
    model("densenet121_train_64", Arch::DenseNet121, Mode::Train, 32, 64),
    // The pretrained student of configs/ham10000/efficientnet_lite0_pretrained.toml (96 px; its
    // recipe trains at batch 64) and at ImageNet's size.
    model("efficientnet_lite0_train_96", Arch::EfficientNetLite0, Mode::Train, 32, 96),
    model("efficientnet_lite0_train_224", Arch::EfficientNetLite0, Mode::Train, 8, 224),
    model("efficientnet_lite0_infer_224", Arch::EfficientNetLite0, Mode::Infer, 32, 224),
    // DISTL's ViT-Tiny (issue #28): patch 4 on MedMNIST's 28 px, patch 8 at 64 px.
    model("vit_tiny_patch4_train_28", Arch::VitTinyPatch4, Mode::Train, 64, 28),
    model("vit_tiny_patch8_train_64", Arch::VitTinyPatch8, Mode::Train, 32, 64),
    model("vit_tiny_patch8_infer_64", Arch::VitTinyPatch8, Mode::Infer, 32, 64),
    Workload { name: "loader_224", kind: Kind::Loader { side: 224, images: 512 } },
    // The whole set (5,984 images in ../shared/data/ham10000): run alone under a memory sampler for
    // the peak RSS of streaming it (issue #5).
    Workload { name: "loader_all_224", kind: Kind::Loader { side: 224, images: 5984 } },
    // SSD-KD's RKD angle term: the pooled embeddings of 32 images' four views, MobileNetV2
    // student and ResNet-50 teacher.
    Workload { name: "rkd_angle_128", kind: Kind::RkdAngle { batch: 128, student_dim: 1280, teacher_dim: 2048 } },
    // RSKD's term at the HAM10000 student's batch: compare with mobilenetv2_train_64 (batch 32).
    Workload { name: "subset_kd_64", kind: Kind::SubsetKd { batch: 64 } },
    // DINO's step in DISTL's rounds and pre-training (issue #28): compare with vit_tiny_patch4_train_28.
    Workload { name: "dino_vit_tiny_patch4_28", kind: Kind::Dino { batch: 64 } },
];

impl Workload {
    fn describe(&self) -> String {
        match self.kind {
            Kind::Model { arch, mode, batch, side } => {
                let mode = match mode {
                    Mode::Train => "train step",
                    Mode::MaskedTrain => "train step, 50% pruned, masks kept",
                    Mode::Infer => "inference",
                };
                format!("{arch} {mode}, batch {batch}, {side} px")
            }
            Kind::Loader { side, images } => {
                format!("HAM10000 decode+augment, {images} images, {side} px, {LOADER_WORKERS} workers")
            }
            Kind::RkdAngle { batch, student_dim, teacher_dim } => {
                format!("RKD angle loss and student gradient, batch {batch}, {student_dim}-d student, {teacher_dim}-d teacher")
            }
            Kind::SubsetKd { batch } => format!("subset_kd loss and student gradient, batch {batch}, 7 classes, teachers of 2 and 5"),
            Kind::Dino { batch } => format!("DINO step, ViT-Tiny/4, batch {batch}: 2 global 28 px + 2 local 12 px views, EMA teacher"),
        }
    }
}

/// The names `medkd bench --workloads` accepts, in report order.
pub fn workload_names() -> Vec<&'static str> {
    WORKLOADS.iter().map(|w| w.name).collect()
}

pub struct BenchOptions {
    /// Workload names; empty means all of them.
    pub workloads: Vec<String>,
    /// Timed repetitions per workload (the median is reported).
    pub iters: usize,
    /// Untimed repetitions before timing.
    pub warmup: usize,
    /// Rounds of every workload, each timing medkd and then PyTorch on it.
    pub rounds: usize,
    /// Python with torch and torchvision; default `.venv/bin/python` if it exists, else `python3`.
    pub python: Option<PathBuf>,
    /// Where to write the JSON report.
    pub out: PathBuf,
    /// Time medkd only.
    pub skip_pytorch: bool,
    /// HAM10000 folder (labels.csv, images/) for `loader_*`; default `../shared/data/ham10000`
    /// relative to the repository root.
    pub ham10000: Option<PathBuf>,
    /// Backend that runs medkd's model workloads (`flex` unless built with another).
    pub device: DeviceChoice,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            workloads: Vec::new(),
            iters: 10,
            warmup: 3,
            rounds: 1,
            python: None,
            out: PathBuf::from("bench.json"),
            device: DeviceChoice::Flex,
            skip_pytorch: false,
            ham10000: None,
        }
    }
}

/// Timings of one workload on one side, in milliseconds per repetition.
#[derive(Clone, Debug)]
struct Timing {
    median_ms: f64,
    min_ms: f64,
    iters: usize,
}

impl Timing {
    fn from_json(value: &Value) -> Option<Timing> {
        Some(Timing {
            median_ms: value.get("median_ms")?.as_f64()?,
            min_ms: value.get("min_ms")?.as_f64()?,
            iters: value.get("iters")?.as_u64()? as usize,
        })
    }
}

/// What the PyTorch script reported, or why there is nothing.
struct Reference {
    torch_version: Option<String>,
    torchvision_version: Option<String>,
    threads: Option<u64>,
    /// "cpu", or the GPU's name when the reference ran on CUDA.
    device: Option<String>,
    results: BTreeMap<String, Timing>,
    /// Why the PyTorch column is (partly) empty.
    problem: Option<String>,
}

/// One workload's result over all rounds: each side's median of its rounds' medians (and the
/// least time seen), and the ratio as the median of the rounds' ratios.
struct Row {
    medkd: Timing,
    pytorch: Option<Timing>,
    ratio: Option<f64>,
    round_ratios: Vec<f64>,
}

fn combine(rounds: &[Timing]) -> Timing {
    let median = summarize(rounds.iter().map(|t| t.median_ms).collect()).median_ms;
    let min_ms = rounds.iter().map(|t| t.min_ms).fold(f64::INFINITY, f64::min);
    Timing { median_ms: median, min_ms, iters: rounds.iter().map(|t| t.iters).sum() }
}

fn rows(medkd: &BTreeMap<&str, Vec<Timing>>, pytorch: &BTreeMap<String, Vec<Timing>>) -> BTreeMap<String, Row> {
    medkd
        .iter()
        .map(|(name, ours)| {
            let theirs = pytorch.get(*name).filter(|t| !t.is_empty());
            // Rounds pair up in order: PyTorch ran right after medkd in each.
            let round_ratios: Vec<f64> =
                theirs.map_or(Vec::new(), |t| ours.iter().zip(t).map(|(o, t)| o.median_ms / t.median_ms).collect());
            let ratio = (!round_ratios.is_empty()).then(|| summarize(round_ratios.clone()).median_ms);
            (name.to_string(), Row { medkd: combine(ours), pytorch: theirs.map(|t| combine(t)), ratio, round_ratios })
        })
        .collect()
}

pub fn run(options: &BenchOptions) -> Result<()> {
    if options.iters == 0 || options.rounds == 0 {
        bail!("--iters and --rounds must be at least 1");
    }
    let selected = select(&options.workloads)?;
    let ham10000 = ham10000_dir(options.ham10000.as_deref())?;

    let mut medkd: BTreeMap<&str, Vec<Timing>> = BTreeMap::new();
    let mut pytorch: BTreeMap<String, Vec<Timing>> = BTreeMap::new();
    let mut skipped = BTreeMap::new();
    // Why PyTorch is not run (any more): skipped, or a failed run (no Python, no torch).
    let mut pytorch_off = options.skip_pytorch.then(|| "skipped (--skip-pytorch)".to_string());
    let mut reference = Reference::missing(String::new());
    let mut gaps = Vec::new();
    for round in 1..=options.rounds {
        for workload in &selected {
            eprintln!("medkd: {} ({}), round {round}/{} ...", workload.name, workload.describe(), options.rounds);
            let timing = match workload.kind {
                Kind::Model { arch, mode, batch, side } => time_model(arch, mode, batch, side, options)?,
                Kind::RkdAngle { batch, student_dim, teacher_dim } => time_rkd_angle(batch, student_dim, teacher_dim, options)?,
                Kind::SubsetKd { batch } => time_subset_kd(batch, options)?,
                Kind::Dino { batch } => time_dino(batch, options)?,
                Kind::Loader { side, images } => match &ham10000 {
                    Some(dir) => time_loader(dir, side, images, options)?,
                    None => {
                        let reason = "HAM10000 not found (pass --ham10000 DIR)".to_string();
                        eprintln!("medkd: {} skipped: {reason}", workload.name);
                        skipped.insert(workload.name, reason);
                        continue;
                    }
                },
            };
            eprintln!("medkd: {}: {:.1} ms (median of {})", workload.name, timing.median_ms, timing.iters);
            medkd.entry(workload.name).or_default().push(timing);
            // PyTorch runs right after medkd on the same workload, never beside it: on 2 cores
            // the two would slow each other down.
            if pytorch_off.is_some() {
                continue;
            }
            // A failed run (no Python, no torch) is not tried again; the medkd column still stands.
            let answer = match run_pytorch(options, &[workload.name], ham10000.as_deref()) {
                Ok(answer) => answer,
                Err(error) => {
                    pytorch_off = Some(format!("{error:#}"));
                    continue;
                }
            };
            gaps.extend(answer.problem);
            for (name, timing) in answer.results {
                pytorch.entry(name).or_default().push(timing);
            }
            reference = Reference { results: BTreeMap::new(), problem: None, ..answer };
        }
    }
    gaps.sort();
    gaps.dedup();
    reference.problem = pytorch_off.or((!gaps.is_empty()).then(|| gaps.join("; ")));
    if let Some(problem) = &reference.problem {
        eprintln!("PyTorch reference: {problem}; showing medkd's column alone");
    }
    let rows = rows(&medkd, &pytorch);

    println!("{}", table(options, &selected, &rows, &reference));
    let report = report_json(options, &selected, &rows, &skipped, &reference);
    std::fs::write(&options.out, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("cannot write {}", options.out.display()))?;
    eprintln!("wrote {}", options.out.display());
    Ok(())
}

fn select(names: &[String]) -> Result<Vec<&'static Workload>> {
    if names.is_empty() {
        return Ok(WORKLOADS.iter().collect());
    }
    let mut selected = Vec::new();
    for name in names.iter().flat_map(|n| n.split(',')).map(str::trim).filter(|n| !n.is_empty()) {
        let Some(workload) = WORKLOADS.iter().find(|w| w.name == name) else {
            bail!("unknown workload '{name}'; known: {}", workload_names().join(", "));
        };
        if !selected.iter().any(|w: &&Workload| w.name == name) {
            selected.push(workload);
        }
    }
    Ok(selected)
}

/// Runs `step` `warmup` times untimed, then `iters` times timed. Warm-ups absorb one-off costs a
/// training run pays once (allocator growth, the optimizer's momentum buffers created on the
/// first step, the page cache for the loader).
fn time_iters(iters: usize, warmup: usize, mut step: impl FnMut() -> Result<()>) -> Result<Timing> {
    for _ in 0..warmup {
        step()?;
    }
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let start = Instant::now();
        step()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    Ok(summarize(times))
}

/// Median and minimum of at least one time; the median as Python's statistics.median (the mean of
/// the two middle values for an even count), so both sides summarize alike.
fn summarize(mut times: Vec<f64>) -> Timing {
    times.sort_by(f64::total_cmp);
    let mid = times.len() / 2;
    let median_ms = if times.len() % 2 == 1 { times[mid] } else { (times[mid - 1] + times[mid]) / 2.0 };
    Timing { median_ms, min_ms: times[0], iters: times.len() }
}

fn time_model(arch: Arch, mode: Mode, batch: usize, side: usize, options: &BenchOptions) -> Result<Timing> {
    // RGB input and the ImageNet stem (small_input = false), as torchvision's models; a ViT's
    // position embeddings for the workload's side.
    let spec = ModelSpec { image_size: Some([side, side]), ..ModelSpec::new(arch, NUM_CLASSES) };
    let labels: Vec<usize> = (0..batch).map(|i| i % NUM_CLASSES).collect();
    match mode {
        Mode::Train | Mode::MaskedTrain => {
            // On an autodiff device BatchNorm uses batch statistics, as torch's model.train().
            let device = make_device(options.device)?.autodiff();
            let images = Tensor::<4>::random([batch, 3, side, side], Distribution::Normal(0.0, 1.0), &device);
            let (initial, masks) = match mode {
                Mode::MaskedTrain => {
                    let (pruned, _) = prune_global(Model::new(&spec, &device)?, MASKED_SPARSITY)?;
                    let masks = Masks::of(&pruned);
                    (pruned, Some(masks))
                }
                _ => (Model::new(&spec, &device)?, None),
            };
            let mut model = Some(initial);
            let mut optimizer = sgd();
            time_iters(options.iters, options.warmup, || {
                let current = model.take().expect("the model is put back after every step");
                let loss = medkd_losses::cross_entropy(current.logits(images.clone()), &labels, None, 0.0);
                let grads = GradientsParams::from_grads(loss.backward(), &current);
                let stepped = optimizer.step(LEARNING_RATE, current, grads);
                model = Some(match &masks {
                    Some(masks) => masks.apply(stepped),
                    None => stepped,
                });
                // Reading the loss back is what the training loop does every step (for logging),
                // and it forces the step's work to finish before the clock stops.
                black_box(loss.into_scalar::<f32>());
                Ok(())
            })
        }
        Mode::Infer => {
            // A plain (non-autodiff) device: no graph is recorded and BatchNorm uses its running
            // statistics, as torch's model.eval() under inference_mode.
            let device = make_device(options.device)?;
            let images = Tensor::<4>::random([batch, 3, side, side], Distribution::Normal(0.0, 1.0), &device);
            let model = Model::new(&spec, &device)?;
            time_iters(options.iters, options.warmup, || {
                black_box(model.logits(images.clone()).into_data());
                Ok(())
            })
        }
    }
}

fn time_rkd_angle(batch: usize, student_dim: usize, teacher_dim: usize, options: &BenchOptions) -> Result<Timing> {
    let device = make_device(options.device)?.autodiff();
    let student = Tensor::<2>::random([batch, student_dim], Distribution::Normal(0.0, 1.0), &device).require_grad();
    let teacher = Tensor::<2>::random([batch, teacher_dim], Distribution::Normal(0.0, 1.0), &device.clone().without_autodiff());
    time_iters(options.iters, options.warmup, || {
        let loss = medkd_losses::rkd_angle(student.clone(), teacher.clone(), medkd_losses::DEFAULT_RKD_ANGLE_CHUNK);
        let grads = loss.clone().backward();
        // Reading both back forces the work to finish before the clock stops.
        black_box(loss.into_scalar::<f32>());
        black_box(student.grad(&grads).expect("the student embedding requires a gradient").into_data());
        Ok(())
    })
}

/// HAM10000's classes, their training counts in the seeded split, and the two lesion-type subsets
/// (as the PyTorch reference's `SUBSET_KD_WORKLOADS`).
const HAM_CLASSES: [&str; 7] = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"];
const HAM_TRAIN_COUNTS: [usize; 7] = [129, 184, 409, 42, 343, 3027, 56];
const HAM_SUBSETS: [&[&str]; 2] = [&["mel", "nv"], &["akiec", "bcc", "bkl", "df", "vasc"]];

fn time_subset_kd(batch: usize, options: &BenchOptions) -> Result<Timing> {
    let device = make_device(options.device)?.autodiff();
    let class_names: Vec<String> = HAM_CLASSES.map(String::from).to_vec();
    let layout = FeatureLayout { maps: Vec::new(), pooled_dim: 1 };
    let teachers: Vec<TeacherFacts> = HAM_SUBSETS
        .iter()
        .map(|subset| TeacherFacts { layout: layout.clone(), class_names: subset.iter().map(|c| c.to_string()).collect() })
        .collect();
    let facts = TaskFacts {
        num_classes: HAM_CLASSES.len(),
        multi_label: false,
        boxes: false,
        class_names: &class_names,
        class_counts: &HAM_TRAIN_COUNTS,
        student: &layout,
        teachers: &teachers,
        seed: 0,
    };
    let spec: LossSpec = serde_json::from_value(json!({ "kind": "subset_kd", "temperature": 4.0 }))?;
    let objective = Objective::new(&[spec], &facts)?;
    let features = |width: usize, device: &Device| {
        let logits = Tensor::<2>::random([batch, width], Distribution::Normal(0.0, 1.0), device);
        Features { maps: Vec::new(), pooled: Tensor::<2>::zeros([batch, 1], device), logits }
    };
    let student = features(HAM_CLASSES.len(), &device);
    let logits = student.logits.clone().require_grad();
    let student = Features { logits: logits.clone(), ..student };
    let frozen = device.clone().without_autodiff();
    let teacher_outputs: Vec<Features> = HAM_SUBSETS.iter().map(|subset| features(subset.len(), &frozen)).collect();
    let targets = Targets::Classes(vec![0; batch]);
    time_iters(options.iters, options.warmup, || {
        let ctx = LossContext { teachers: &teacher_outputs, ..LossContext::student_only(&student, &targets, 0) };
        let (loss, _) = objective.compute(&ctx)?;
        let grads = loss.clone().backward();
        black_box(loss.into_scalar::<f32>());
        black_box(logits.grad(&grads).expect("the student logits require a gradient").into_data());
        Ok(())
    })
}

fn time_dino(batch: usize, options: &BenchOptions) -> Result<Timing> {
    const GLOBAL: usize = 28;
    const LOCAL: usize = 12;
    const OUT_DIM: usize = 4096;
    let device = make_device(options.device)?.autodiff();
    let spec = ModelSpec { image_size: Some([GLOBAL, GLOBAL]), ..ModelSpec::new(Arch::VitTinyPatch4, NUM_CLASSES) };
    let views = |side: usize| Tensor::<4>::random([2 * batch, 3, side, side], Distribution::Normal(0.0, 1.0), &device);
    let (globals, locals) = (views(GLOBAL), views(LOCAL));
    let model = Model::new(&spec, &device)?;
    let shape = DinoHeadShape { in_dim: model.feature_dim(), out_dim: OUT_DIM, hidden: 512, bottleneck: 256 };
    let mut student = Some(SelfDistilled { model, head: Some(DinoHead::new(shape, &device)) });
    let mut teacher = student.as_ref().expect("just made").valid();
    let frozen = device.clone().without_autodiff();
    let mut center = Tensor::<2>::zeros([1, OUT_DIM], &frozen);
    // medkd's AdamW, as training steps with it, at torch.optim.AdamW's defaults.
    let mut optimizer = ModuleOptimizer::from(FusedAdam::adamw([0.9, 0.999], 1e-8, 0.04));
    time_iters(options.iters, options.warmup, || {
        let current = student.take().expect("the student is put back after every step");
        let head = current.head.as_ref().expect("made with a head");
        let chunks = |x: Tensor<2>| x.chunk(2, 0);
        let mut student_views = chunks(head.forward(current.model.forward(globals.clone()).pooled));
        student_views.extend(chunks(head.forward(current.model.forward(locals.clone()).pooled)));
        let teacher_head = teacher.head.as_ref().expect("made with a head");
        let teacher_views = chunks(teacher_head.forward(teacher.model.forward(globals.clone().without_autodiff()).pooled));
        let loss = dino_loss(&student_views, &teacher_views, &center, 0.1, 0.04);
        center = updated_center(center.clone(), &teacher_views, 0.9);
        let grads = GradientsParams::from_grads(loss.backward(), &current);
        let stepped = optimizer.step(1e-4, current, grads);
        let current = stepped.valid();
        teacher = blend_toward(std::mem::replace(&mut teacher, current.clone()), &current, 1.0 - 0.996);
        student = Some(stepped);
        black_box(loss.into_scalar::<f32>());
        Ok(())
    })
}

/// SGD as the PyTorch reference configures it (lr 0.01, momentum 0.9, no dampening), medkd's
/// one-pass SGD as training builds it.
fn sgd() -> ModuleOptimizer {
    ModuleOptimizer::from(FusedSgd::new(0.9, false, 0.0))
}

/// The HAM10000 training pipeline over the first `count` rows of labels.csv, the same
/// files the script reads. One timed repetition is one epoch (a fresh shuffle and fresh random
/// augmentations each time, as in training).
fn time_loader(dir: &Path, side: usize, count: usize, options: &BenchOptions) -> Result<Timing> {
    let labels = dir.join("labels.csv");
    // Built as the equivalent of a config's [data] table so that the benchmark goes through the
    // same deserialization, validation and pipeline construction as `medkd train`. val = test = 0:
    // every image lands in `train`, so any labels.csv row can be picked below.
    let config: DataConfig = serde_json::from_value(json!({
        "format": "csv",
        "path": labels,
        "image_dir": "images",
        "image_column": "image_id",
        "image_ext": "jpg",
        "label_column": "dx",
        "split": { "val": 0.0, "test": 0.0, "seed": 0 },
        "train_transforms": [
            { "op": "random_resized_crop", "size": side },
            { "op": "hflip", "p": 0.5 },
            { "op": "color_jitter", "brightness": 0.2, "contrast": 0.2, "saturation": 0.1, "hue": 0.0 },
        ],
        "normalize": { "kind": "imagenet" },
    }))
    .context("the loader benchmark's data config no longer matches medkd_data::DataConfig")?;
    let splits = open_splits(&config, dir).with_context(|| format!("cannot open {}", labels.display()))?;
    let pipeline = build_pipelines(&config, splits.train.as_ref())?.train;

    let wanted = first_image_ids(&labels, count)?;
    let indices: Vec<usize> = (0..splits.train.len())
        .filter(|&i| {
            let id = splits.train.id(i);
            Path::new(&id).file_stem().and_then(|s| s.to_str()).is_some_and(|stem| wanted.contains(stem))
        })
        .collect();
    if indices.len() != count {
        bail!("found {} of the first {count} labels.csv images in {}", indices.len(), dir.display());
    }
    let subset = Arc::new(medkd_data::Subset::new(splits.train, indices));
    let loader = Loader::new(
        subset,
        pipeline,
        LoaderOptions { batch_size: LOADER_BATCH, shuffle: true, drop_last: false, seed: 0, workers: LOADER_WORKERS, prefetch: 2 },
    )?;

    let mut epoch = 0;
    time_iters(options.iters, options.warmup, || {
        let mut images = 0;
        for batch in loader.epoch(epoch) {
            let batch = batch?;
            images += batch.shape[0];
            black_box(&batch.images);
        }
        epoch += 1;
        if images != count {
            bail!("the loader produced {images} images, {count} expected");
        }
        Ok(())
    })
}

/// The `image_id` of the first `count` rows of HAM10000's labels.csv.
fn first_image_ids(labels: &Path, count: usize) -> Result<HashSet<String>> {
    let mut reader = csv::Reader::from_path(labels).with_context(|| format!("cannot read {}", labels.display()))?;
    let column =
        reader.headers()?.iter().position(|h| h == "image_id").with_context(|| format!("{} has no image_id column", labels.display()))?;
    let mut ids = HashSet::new();
    for record in reader.records().take(count) {
        ids.insert(record?[column].to_string());
    }
    Ok(ids)
}

/// The repository root this binary was built from: the fallback for the default paths when medkd
/// is not run from the repository root.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The first of `relative` resolved against the working directory, then the repository root,
/// that exists.
fn find_default(relative: &str) -> Option<PathBuf> {
    [PathBuf::from(relative), repo_root().join(relative)].into_iter().find(|p| p.exists())
}

/// An explicit `--ham10000` must exist; the default may be absent (the loader row is then skipped).
/// The folder is made absolute: the data config's relative paths resolve against it.
fn ham10000_dir(explicit: Option<&Path>) -> Result<Option<PathBuf>> {
    let dir = match explicit {
        Some(dir) if dir.join("labels.csv").is_file() => dir.to_path_buf(),
        Some(dir) => bail!("{} has no labels.csv: not a HAM10000 folder", dir.display()),
        None => match find_default("../shared/data/ham10000").filter(|d| d.join("labels.csv").is_file()) {
            Some(dir) => dir,
            None => return Ok(None),
        },
    };
    Ok(Some(std::fs::canonicalize(&dir).with_context(|| format!("cannot resolve {}", dir.display()))?))
}

fn python_path(explicit: Option<&Path>) -> PathBuf {
    explicit.map(Path::to_path_buf).or_else(|| find_default(".venv/bin/python")).unwrap_or_else(|| "python3".into())
}

impl Reference {
    fn missing(problem: String) -> Reference {
        Reference {
            torch_version: None,
            torchvision_version: None,
            threads: None,
            device: None,
            results: BTreeMap::new(),
            problem: Some(problem),
        }
    }
}

/// Runs the script on `names` and parses its JSON; `problem` names the workloads it gave no
/// result for.
fn run_pytorch(options: &BenchOptions, names: &[&str], ham10000: Option<&Path>) -> Result<Reference> {
    let python = python_path(options.python.as_deref());
    // The compiled-in copy, written to a real file rather than piped to `python -`: DataLoader
    // workers started with spawn/forkserver re-import the main module by path.
    let script = std::env::temp_dir().join(format!("medkd-pytorch-reference-{}.py", std::process::id()));
    std::fs::write(&script, PYTORCH_SCRIPT).with_context(|| format!("cannot write {}", script.display()))?;

    let threads = PYTORCH_THREADS.to_string();
    let mut command = Command::new(&python);
    command
        .arg(&script)
        .args(["--iters", &options.iters.to_string(), "--warmup", &options.warmup.to_string()])
        .args(["--workloads", &names.join(",")])
        .args(["--threads", &threads])
        // medkd's GPU backends are compared with PyTorch on the GPU, everything else on the CPU.
        .args(["--device", if matches!(options.device, DeviceChoice::Cuda | DeviceChoice::Wgpu) { "cuda" } else { "cpu" }])
        .args(["--loader-batch", &LOADER_BATCH.to_string()])
        .args(["--loader-workers", &LOADER_WORKERS.to_string()])
        // Set before torch loads: its OpenMP and MKL pools are sized at import.
        .env("OMP_NUM_THREADS", &threads)
        .env("MKL_NUM_THREADS", &threads)
        // Progress lines and tracebacks go straight to the user; stdout is the JSON report.
        .stderr(Stdio::inherit())
        .stdout(Stdio::piped());
    if let Some(dir) = ham10000 {
        command.arg("--ham10000").arg(dir);
    }
    eprintln!("PyTorch reference: {} {} ...", python.display(), names.join(","));
    let output = command.output();
    let _ = std::fs::remove_file(&script);
    let output = output.with_context(|| format!("cannot run {} (pass --python PATH)", python.display()))?;

    let stdout = String::from_utf8_lossy(&output.stdout);
    let json: Option<Value> = stdout.lines().rev().find_map(|line| serde_json::from_str(line).ok());
    if let Some(error) = json.as_ref().and_then(|j| j.get("error")).and_then(Value::as_str) {
        bail!("{error}");
    }
    if !output.status.success() {
        bail!("{} exited with {} (its output is above)", python.display(), output.status);
    }
    let Some(json) = json else { bail!("no JSON report on the script's stdout") };

    let results: BTreeMap<String, Timing> = json["results"]
        .as_object()
        .map(|r| r.iter().filter_map(|(name, v)| Some((name.clone(), Timing::from_json(v)?))).collect())
        .unwrap_or_default();
    let absent: Vec<&str> = names.iter().copied().filter(|n| !results.contains_key(*n)).collect();
    Ok(Reference {
        torch_version: json["torch_version"].as_str().map(str::to_string),
        torchvision_version: json["torchvision_version"].as_str().map(str::to_string),
        threads: json["threads"].as_u64(),
        device: json["device"].as_str().map(str::to_string),
        results,
        problem: (!absent.is_empty()).then(|| format!("no result for {}", absent.join(", "))),
    })
}

fn images_per_s(images: usize, timing: &Timing) -> f64 {
    images as f64 / (timing.median_ms / 1e3)
}

fn table(options: &BenchOptions, selected: &[&Workload], rows: &BTreeMap<String, Row>, reference: &Reference) -> String {
    let mut lines = vec![["workload".to_string(), "medkd ms".into(), "PyTorch ms".into(), "ratio (medkd/PyTorch)".into(), "what".into()]];
    for workload in selected {
        let Some(row) = rows.get(workload.name) else { continue };
        let (ours, theirs) = (&row.medkd, row.pytorch.as_ref());
        let mut what = workload.describe();
        if let Kind::Loader { images, .. } = workload.kind {
            what += &format!("; medkd {:.0} img/s", images_per_s(images, ours));
            if let Some(theirs) = theirs {
                what += &format!(", PyTorch {:.0} img/s", images_per_s(images, theirs));
            }
        }
        let ratio = match (row.ratio, row.round_ratios.len()) {
            (None, _) => "-".into(),
            (Some(r), 1) => format!("{r:.2}"),
            (Some(r), _) => format!("{r:.2} ({})", row.round_ratios.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(", ")),
        };
        lines.push([
            workload.name.to_string(),
            format!("{:.1}", ours.median_ms),
            theirs.map_or("-".into(), |t| format!("{:.1}", t.median_ms)),
            ratio,
            what,
        ]);
    }
    let widths: Vec<usize> = (0..5).map(|c| lines.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for (i, row) in lines.iter().enumerate() {
        // Text columns left-aligned, numbers right-aligned.
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| if c == 0 || c == 4 { format!("{cell:<w$}", w = widths[c]) } else { format!("{cell:>w$}", w = widths[c]) })
            .collect();
        out += cells.join(" | ").trim_end();
        out.push('\n');
        if i == 0 {
            out += &widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("-|-");
            out.push('\n');
        }
    }
    let pytorch = match (&reference.torch_version, reference.threads, reference.device.as_deref()) {
        (Some(version), _, Some(gpu)) if gpu != "cpu" => format!("PyTorch {version} on {gpu}"),
        (Some(version), Some(threads), _) => format!("PyTorch {version} ({threads} threads)"),
        (Some(version), None, _) => format!("PyTorch {version}"),
        (None, _, _) => "PyTorch not run".into(),
    };
    let rounds = match options.rounds {
        1 => String::new(),
        n => format!(" in each of {n} rounds (ms: median over rounds; ratio: median of the rounds' ratios, each listed)"),
    };
    out += &format!(
        "median of {} timed runs after {} warm-up(s){rounds}; ratio > 1: medkd slower; burn {BURN_VERSION} {}, {pytorch}",
        options.iters,
        options.warmup,
        backend_name(options.device),
    );
    out
}

fn backend_name(device: DeviceChoice) -> &'static str {
    match device {
        DeviceChoice::Flex => "flex (CPU)",
        DeviceChoice::Libtorch => "tch (LibTorch CPU)",
        DeviceChoice::Cuda => "cuda (GPU 0)",
        DeviceChoice::Wgpu => "wgpu",
    }
}

fn timing_json(timing: Option<&Timing>) -> (Value, Value) {
    (json!(timing.map(|t| t.median_ms)), json!(timing.map(|t| t.min_ms)))
}

fn report_json(
    options: &BenchOptions,
    selected: &[&Workload],
    rows: &BTreeMap<String, Row>,
    skipped: &BTreeMap<&str, String>,
    reference: &Reference,
) -> Value {
    let mut workloads = serde_json::Map::new();
    for workload in selected {
        let row = rows.get(workload.name);
        let ours = row.map(|r| &r.medkd);
        let theirs = row.and_then(|r| r.pytorch.as_ref());
        let (medkd_ms, medkd_min_ms) = timing_json(ours);
        let (pytorch_ms, pytorch_min_ms) = timing_json(theirs);
        let mut entry = json!({
            "description": workload.describe(),
            "medkd_ms": medkd_ms,
            "medkd_min_ms": medkd_min_ms,
            "pytorch_ms": pytorch_ms,
            "pytorch_min_ms": pytorch_min_ms,
            "ratio": row.and_then(|r| r.ratio),
            "round_ratios": row.map(|r| r.round_ratios.clone()),
        });
        match workload.kind {
            Kind::Model { arch, mode, batch, side } => {
                entry["model"] = json!(arch.name());
                entry["mode"] = json!(match mode {
                    Mode::Train => "train",
                    Mode::MaskedTrain => "masked_train",
                    Mode::Infer => "infer",
                });
                entry["input_shape"] = json!([batch, 3, side, side]);
            }
            Kind::RkdAngle { batch, student_dim, teacher_dim } => {
                entry["input_shape"] = json!([[batch, student_dim], [batch, teacher_dim]]);
            }
            Kind::SubsetKd { batch } => {
                entry["input_shape"] = json!([[batch, HAM_CLASSES.len()], [batch, 2], [batch, 5]]);
            }
            Kind::Dino { batch } => {
                entry["model"] = json!(Arch::VitTinyPatch4.name());
                entry["input_shape"] = json!([[2 * batch, 3, 28, 28], [2 * batch, 3, 12, 12]]);
            }
            Kind::Loader { side, images } => {
                entry["images"] = json!(images);
                entry["side"] = json!(side);
                entry["workers"] = json!(LOADER_WORKERS);
                entry["medkd_images_per_s"] = json!(ours.map(|t| images_per_s(images, t)));
                entry["pytorch_images_per_s"] = json!(theirs.map(|t| images_per_s(images, t)));
            }
        }
        if let Some(reason) = skipped.get(workload.name) {
            entry["skipped"] = json!(reason);
        }
        workloads.insert(workload.name.to_string(), entry);
    }
    json!({
        "machine": build_info::machine(),
        "burn_version": BURN_VERSION,
        "medkd_backend": backend_name(options.device),
        "torch_version": reference.torch_version,
        "torchvision_version": reference.torchvision_version,
        "pytorch_threads": reference.threads,
        "pytorch_device": reference.device,
        "pytorch_problem": reference.problem,
        "iters": options.iters,
        "warmup": options.warmup,
        "rounds": options.rounds,
        "timestamp_unix_s": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .ok(),
        "workloads": workloads,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_names_are_unique_and_selectable() {
        let names = workload_names();
        assert_eq!(names.iter().collect::<HashSet<_>>().len(), names.len());
        let picked = select(&["infer_224, loader_224".into(), "infer_224".into()]).unwrap();
        assert_eq!(picked.iter().map(|w| w.name).collect::<Vec<_>>(), ["infer_224", "loader_224"]);
        assert!(select(&["train_512".into()]).is_err());
    }

    #[test]
    fn median_matches_python_statistics() {
        let odd = summarize(vec![3.0, 1.0, 2.0]);
        assert_eq!((odd.median_ms, odd.min_ms, odd.iters), (2.0, 1.0, 3));
        let even = summarize(vec![4.0, 1.0, 3.0, 2.0]);
        assert_eq!((even.median_ms, even.min_ms, even.iters), (2.5, 1.0, 4));
    }

    /// Rounds pair up: the ratio is the median of the rounds' ratios, not the ratio of medians.
    #[test]
    fn rounds_combine_into_paired_ratios() {
        let timing = |ms: f64| Timing { median_ms: ms, min_ms: ms - 1.0, iters: 5 };
        let medkd = BTreeMap::from([("a", vec![timing(100.0), timing(400.0), timing(90.0)]), ("b", vec![timing(50.0)])]);
        let pytorch = BTreeMap::from([("a".to_string(), vec![timing(100.0), timing(200.0), timing(30.0)])]);
        let rows = rows(&medkd, &pytorch);
        let a = &rows["a"];
        assert_eq!(a.round_ratios, [1.0, 2.0, 3.0]);
        assert_eq!(a.ratio, Some(2.0));
        assert_eq!((a.medkd.median_ms, a.medkd.min_ms, a.medkd.iters), (100.0, 89.0, 15));
        assert_eq!(a.pytorch.as_ref().map(|t| t.median_ms), Some(100.0));
        assert!(rows["b"].pytorch.is_none() && rows["b"].ratio.is_none());
    }

    /// Every workload of this table is in the script's table, under the same name.
    #[test]
    fn script_knows_every_workload() {
        for name in workload_names() {
            assert!(PYTORCH_SCRIPT.contains(&format!("\"{name}\": ")), "bench/pytorch_reference.py has no workload {name}");
        }
    }

    #[test]
    fn footer_names_where_pytorch_ran() {
        let reference = |device: &str| Reference {
            torch_version: Some("2.11.0".into()),
            torchvision_version: None,
            threads: Some(2),
            device: Some(device.into()),
            results: BTreeMap::new(),
            problem: None,
        };
        let options = BenchOptions { device: DeviceChoice::Wgpu, ..BenchOptions::default() };
        let on_gpu = table(&options, &[], &BTreeMap::new(), &reference("NVIDIA H100 80GB HBM3"));
        assert!(on_gpu.ends_with("burn 0.22.1 wgpu, PyTorch 2.11.0 on NVIDIA H100 80GB HBM3"), "{on_gpu}");
        let on_cpu = table(&BenchOptions::default(), &[], &BTreeMap::new(), &reference("cpu"));
        assert!(on_cpu.ends_with("flex (CPU), PyTorch 2.11.0 (2 threads)"), "{on_cpu}");
    }

    /// The real benchmark with few repetitions (minutes on 2 cores):
    /// `cargo test -p medkd --bin medkd -- --ignored bench --nocapture`.
    #[test]
    #[ignore = "slow: times every workload"]
    fn bench_runs_end_to_end() {
        let out = std::env::temp_dir().join("medkd-bench-test.json");
        let options = BenchOptions {
            iters: std::env::var("MEDKD_BENCH_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(2),
            warmup: 1,
            out: out.clone(),
            ..BenchOptions::default()
        };
        run(&options).unwrap();
        let report: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        assert_eq!(report["workloads"].as_object().unwrap().len(), WORKLOADS.len());
    }
}

//! The loop itself, through a toy method that uses what the coming methods need: a teacher that is
//! an exponential moving average of the student, updated after every step, and a loss term with
//! state (a running centre of the teacher's logits, as DINO keeps) that must survive `--resume`.

mod common;

use std::path::Path;
use std::sync::Arc;

use burn::prelude::*;
use burn::tensor::activation::softmax;
use common::serial;
use medkd_data::{Batch, ImageDataset, Loader, LoaderOptions, Target, Unlabelled};
use medkd_losses::{TermValue, cross_entropy, kd_kl};
use medkd_models::Model;
use medkd_models::{ModelSpec, load_weights};
use medkd_train::averaging::{AveragingConfig, WeightAverage};
use medkd_train::checkpoint::MethodState;
use medkd_train::engine::fit;
use medkd_train::evaluate::batch_tensor;
use medkd_train::method::{Method, StepAt, StepLoss};
use medkd_train::methods::Classify;
use medkd_train::stages::{init_from_stage, run_stage};
use medkd_train::{RunConfig, RunDir, RunSetup, TrainError};

const CENTRE_MOMENTUM: f32 = 0.9;

/// Cross-entropy plus KD from an EMA teacher whose logits are centred by a running mean.
struct EmaSelfDistill<'a> {
    config: &'a RunConfig,
    setup: &'a RunSetup,
    device: Option<Device>,
    teacher: WeightAverage,
    centre: Vec<f32>,
    /// Stops the run with an error before this step, as a crash would.
    crash_at: Option<StepAt>,
    /// Skips `load_state` on resume, to show the state matters.
    forget_state: bool,
    /// The student's logits on a probe batch after the run's last step.
    final_student: Vec<f32>,
}

impl<'a> EmaSelfDistill<'a> {
    fn new(config: &'a RunConfig, setup: &'a RunSetup) -> Self {
        let classes = setup.spec.num_classes;
        EmaSelfDistill {
            config,
            setup,
            device: None,
            teacher: WeightAverage::new(AveragingConfig::Ema { decay: 0.8 }),
            centre: vec![0.0; classes],
            crash_at: None,
            forget_state: false,
            final_student: Vec::new(),
        }
    }
}

/// The toy methods' model, on the device they keep for their steps.
fn init_model(setup: &RunSetup, device: &Device, keep: &mut Option<Device>) -> Result<Model, TrainError> {
    *keep = Some(device.clone());
    Ok(Model::new(&setup.spec, device)?)
}

fn loader_options(config: &RunConfig) -> LoaderOptions {
    LoaderOptions { batch_size: 16, shuffle: true, drop_last: true, seed: config.seed, workers: 1, prefetch: 2 }
}

impl Method for EmaSelfDistill<'_> {
    type Trainable = Model;

    fn init(&mut self, device: &Device) -> Result<Model, TrainError> {
        init_model(self.setup, device, &mut self.device)
    }

    fn model<'m>(&self, model: &'m Model) -> &'m Model {
        model
    }

    fn train_loader(&self) -> Result<Loader, TrainError> {
        let options = loader_options(self.config);
        Ok(Loader::new(self.setup.splits.train.clone(), self.setup.train_pipeline.clone(), options)?)
    }

    fn step(&mut self, model: &Model, batch: Batch, at: StepAt) -> Result<StepLoss, TrainError> {
        if self.crash_at == Some(at) {
            return Err(TrainError::Input(format!("simulated crash at {at:?}")));
        }
        let images = batch_tensor(&batch.images, batch.shape, self.device.as_ref().unwrap());
        let logits = model.logits(images.clone());
        let ce = cross_entropy(logits.clone(), &batch.class_labels(), None, 0.0);
        let mut terms = vec![TermValue { name: "cross_entropy".into(), value: ce.clone() }];
        let mut total = ce;
        if let Some(teacher) = &self.teacher.model {
            let teacher_logits = teacher.valid().logits(images.without_autodiff());
            let [n, k] = teacher_logits.dims();
            let centre = Tensor::<1>::from_data(TensorData::new(self.centre.clone(), [k]), &teacher_logits.device());
            let centred = teacher_logits.clone() - centre.unsqueeze::<2>().expand([n, k]);
            let kd = kd_kl(logits, centred, 2.0);
            terms.push(TermValue { name: "kd".into(), value: kd.clone() });
            total = total + kd.mul_scalar(0.5);
            // The centre follows the teacher's mean logits: state that --resume must restore.
            let mean: Vec<f32> = softmax(teacher_logits, 1).mean_dim(0).into_data().try_to_vec::<f32>().unwrap();
            for (c, m) in self.centre.iter_mut().zip(mean) {
                *c = CENTRE_MOMENTUM * *c + (1.0 - CENTRE_MOMENTUM) * m;
            }
        }
        Ok(StepLoss { total, terms })
    }

    fn after_step(&mut self, model: Model, at: StepAt) -> Result<Model, TrainError> {
        self.teacher.after_step(&model);
        if at.epoch + 1 == self.config.train.epochs && at.step + 1 == at.steps {
            self.final_student = probe(&model.valid(), &self.setup.device);
        }
        Ok(model)
    }

    fn save_state(&self, state: &mut MethodState) -> Result<(), TrainError> {
        state.put("centre", &self.centre);
        state.put("teacher_updates", &self.teacher.count);
        if let Some(teacher) = &self.teacher.model {
            state.put_module("teacher", teacher)?;
        }
        Ok(())
    }

    fn load_state(&mut self, state: &MethodState) -> Result<(), TrainError> {
        if self.forget_state {
            return Ok(());
        }
        self.centre = state.get("centre")?;
        let count: u64 = state.get("teacher_updates")?;
        let teacher = state.get_module("teacher", Model::new(&self.setup.spec, &self.setup.device)?)?;
        self.teacher = WeightAverage::resumed(AveragingConfig::Ema { decay: 0.8 }, Some(teacher), count);
        Ok(())
    }
}

fn config() -> RunConfig {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/breastmnist.npz");
    let text = format!(
        "seed = 4\n[data]\nformat = \"medmnist\"\npath = \"{}\"\ntrain_subset = {{ ratio = 0.15, seed = 1 }}\n\
         train_transforms = [{{ op = \"hflip\", p = 0.5 }}]\n[model]\narch = \"resnet18\"\nsmall_input = true\n\
         [train]\nepochs = 3\nbatch_size = 16\nworkers = 1\nselect_metric = \"loss\"\n\
         optimizer = {{ kind = \"adam\", lr = 0.001 }}\n[[loss]]\nkind = \"cross_entropy\"\n",
        data.display()
    );
    RunConfig::parse(&text, &[]).unwrap()
}

/// Logits of a fixed batch, in eval mode.
fn probe(model: &Model, device: &Device) -> Vec<f32> {
    let images = Tensor::<4>::ones([2, 1, 28, 28], device);
    model.logits(images).into_data().try_to_vec::<f32>().unwrap()
}

/// The final student, the EMA teacher, its update count and the centre.
fn end_state(method: &EmaSelfDistill) -> (Vec<f32>, Vec<f32>, u64, Vec<f32>) {
    let teacher = probe(method.teacher.model.as_ref().unwrap(), &method.setup.device);
    (method.final_student.clone(), teacher, method.teacher.count, method.centre.clone())
}

/// A run stopped mid-epoch and resumed ends with the same student, EMA teacher and centre as a
/// run that was never stopped; resumed without the method's state, it does not.
#[test]
fn a_method_with_an_ema_teacher_and_a_stateful_term_resumes_exactly() {
    let _serial = serial();
    let config = config();
    let setup = RunSetup::new(&config).unwrap();
    let tmp = tempfile::tempdir().unwrap();

    let whole_dir = tmp.path().join("whole");
    let mut whole = EmaSelfDistill::new(&config, &setup);
    fit(&config, &setup, &mut whole, &RunDir::create(&whole_dir).unwrap(), false, false).unwrap();
    let expected = end_state(&whole);
    assert_eq!(expected.2, 3 * 5, "one teacher update per step: 82 images in batches of 16, 3 epochs");

    for forget_state in [false, true] {
        let dir = tmp.path().join(format!("stopped_{forget_state}"));
        let mut stopped = EmaSelfDistill::new(&config, &setup);
        stopped.crash_at = Some(StepAt { epoch: 2, step: 2, steps: 5 });
        let error = fit(&config, &setup, &mut stopped, &RunDir::create(&dir).unwrap(), false, false).err().unwrap();
        assert!(error.to_string().contains("simulated crash"), "{error}");

        let mut resumed = EmaSelfDistill::new(&config, &setup);
        resumed.forget_state = forget_state;
        fit(&config, &setup, &mut resumed, &RunDir::open(&dir).unwrap(), true, false).unwrap();
        if forget_state {
            assert_ne!(end_state(&resumed), expected, "without its state the method continues differently");
        } else {
            assert_eq!(end_state(&resumed), expected, "student, EMA teacher, update count and centre");
        }
    }
}

/// Consistency between two augmented views of unlabelled images: what a self-supervised step
/// (DINO's multi-crop) receives from the loop.
struct TwoViewConsistency<'a> {
    config: &'a RunConfig,
    setup: &'a RunSetup,
    device: Option<Device>,
    steps_seen: usize,
}

impl Method for TwoViewConsistency<'_> {
    type Trainable = Model;

    fn init(&mut self, device: &Device) -> Result<Model, TrainError> {
        init_model(self.setup, device, &mut self.device)
    }

    fn model<'m>(&self, model: &'m Model) -> &'m Model {
        model
    }

    fn train_loader(&self) -> Result<Loader, TrainError> {
        let unlabelled: Arc<dyn ImageDataset> = Arc::new(Unlabelled::new(self.setup.splits.train.clone()));
        let views = vec![self.setup.train_pipeline.clone(), self.setup.train_pipeline.clone()];
        let options = loader_options(self.config);
        Ok(Loader::with_views(unlabelled, views, options)?)
    }

    fn step(&mut self, model: &Model, batch: Batch, _at: StepAt) -> Result<StepLoss, TrainError> {
        assert!(batch.targets.iter().all(|t| *t == Target::None), "unlabelled samples carry no target");
        assert!(!batch.is_labelled());
        let [view] = batch.extra_views.as_slice() else { panic!("two views per sample, got {}", 1 + batch.extra_views.len()) };
        assert_eq!(view.shape, batch.shape);
        let device = self.device.as_ref().unwrap();
        let first = softmax(model.logits(batch_tensor(&batch.images, batch.shape, device)), 1);
        let second = softmax(model.logits(batch_tensor(&view.images, view.shape, device)), 1);
        let consistency = (first - second).square().mean();
        self.steps_seen += 1;
        Ok(StepLoss { total: consistency.clone(), terms: vec![TermValue { name: "consistency".into(), value: consistency }] })
    }
}

/// An unlabelled pool with two views per image reaches a method's step, and the loop trains,
/// logs the method's term and evaluates as for any other method.
#[test]
fn unlabelled_batches_with_two_views_reach_the_step_without_targets() {
    let _serial = serial();
    let config = RunConfig::parse(&config().to_toml(), &["train.epochs=1".into()]).unwrap();
    let setup = RunSetup::new(&config).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut method = TwoViewConsistency { config: &config, setup: &setup, device: None, steps_seen: 0 };
    let outcome = fit(&config, &setup, &mut method, &RunDir::create(tmp.path()).unwrap(), false, false).unwrap();
    assert_eq!(method.steps_seen, 5, "82 images in batches of 16");
    assert_eq!(outcome.summary.epochs_run, 1);
    let metrics = std::fs::read_to_string(tmp.path().join("metrics.jsonl")).unwrap();
    let line: serde_json::Value = serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
    assert!(line["train_terms"]["consistency"].as_f64().unwrap() >= 0.0, "{line}");
}

/// Rounds: a finished stage is kept as it is when the procedure runs again, and the next round
/// starts from its selected weights; a round cannot start from an unfinished stage.
#[test]
fn a_round_starts_from_the_previous_rounds_best_weights() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let round = |k: usize| tmp.path().join(format!("round_{k}"));
    let first = RunConfig::parse(&config().to_toml(), &["train.epochs=1".into()]).unwrap();

    let error = init_from_stage(&mut first.clone(), &round(0)).unwrap_err().to_string();
    assert!(error.contains("round_0") && error.contains("has not finished"), "{error}");

    let summary = run_stage(&first, &round(0), "round 0", false).unwrap();
    let log = std::fs::read_to_string(round(0).join("metrics.jsonl")).unwrap();
    assert_eq!(run_stage(&first, &round(0), "round 0", false).unwrap(), summary, "a finished stage is kept");
    assert_eq!(std::fs::read_to_string(round(0).join("metrics.jsonl")).unwrap(), log, "and not trained again");

    let mut second = RunConfig::parse(&config().to_toml(), &["train.epochs=1".into(), "seed=9".into()]).unwrap();
    init_from_stage(&mut second, &round(0)).unwrap();
    run_stage(&second, &round(1), "round 1", false).unwrap();
    let saved = RunConfig::load(&round(1).join("config.toml"), &[]).unwrap();
    assert_eq!(
        saved.model.pretrained,
        Some(round(0).join("checkpoints/best.safetensors")),
        "config.toml names the weights it started from"
    );

    // The module round 1's method starts from is round 0's selected model.
    let prepared = medkd_train::Prepared::new(&second).unwrap();
    let device = prepared.setup.device.clone();
    let started = Classify::new(&second, &prepared).init(&device.clone().autodiff()).unwrap().model;
    let selected =
        load_weights(Model::new(&prepared.setup.spec, &device).unwrap(), &round(0).join("checkpoints/best.safetensors")).unwrap();
    assert_eq!(probe(&started.valid(), &device), probe(&selected, &device));
}

/// A damaged `best.safetensors` (bytes flipped, same size) is refused with an error naming the
/// file, where it used to evaluate silently (issue #32's second silent case); checked against an
/// earlier binary's MD5 as well as the current checksum.
#[test]
fn a_damaged_best_checkpoint_is_refused() {
    let _serial = serial();
    let config = RunConfig::parse(&config().to_toml(), &["train.epochs=1".into()]).unwrap();
    let setup = RunSetup::new(&config).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let run = RunDir::create(tmp.path()).unwrap();
    let mut method = TwoViewConsistency { config: &config, setup: &setup, device: None, steps_seen: 0 };
    fit(&config, &setup, &mut method, &run, false, false).unwrap();
    setup.load_best(&run).unwrap();
    // A run of an earlier binary, whose best.json holds the file's MD5, loads as well.
    let path = tmp.path().join("checkpoints/best.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    let record = tmp.path().join("checkpoints/best.json");
    let md5 = medkd_train::checksum::md5_hex(&bytes);
    std::fs::write(&record, format!(r#"{{"epoch": 0, "metric": "auc", "value": 0.5, "md5": "{md5}"}}"#)).unwrap();
    setup.load_best(&run).unwrap();

    let middle = bytes.len() / 2;
    for byte in &mut bytes[middle..middle + 2000] {
        *byte = !*byte;
    }
    std::fs::write(&path, &bytes).unwrap();
    let error = setup.load_best(&run).err().expect("a damaged checkpoint is refused").to_string();
    assert!(error.contains("best.safetensors") && error.contains("best.json's checksum"), "{error}");
}

/// Fine-tuning with the backbone frozen for the whole (one-epoch) run: every backbone tensor of
/// the selected model is the pretrained one, bit for bit, while the classifier learned. With
/// BatchNorm frozen the running statistics stay too; without, they move.
#[test]
fn a_frozen_backbone_keeps_its_pretrained_weights() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let device = Device::flex();
    let pretrained = tmp.path().join("pretrained.safetensors");
    let spec = ModelSpec { in_channels: 1, small_input: true, ..ModelSpec::new(medkd_models::Arch::ResNet18, 2) };
    medkd_models::save_weights(&Model::new(&spec, &device).unwrap(), &pretrained).unwrap();
    let tensors = |path: &Path| -> Vec<(String, Vec<u8>)> {
        let bytes = std::fs::read(path).unwrap();
        let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut all: Vec<(String, Vec<u8>)> = file.tensors().into_iter().map(|(name, view)| (name, view.data().to_vec())).collect();
        all.sort();
        all
    };
    let before = tensors(&pretrained);
    for frozen_batch_norm in [true, false] {
        let finetune = format!("train.finetune={{ freeze_backbone_epochs = 1, frozen_batch_norm = {frozen_batch_norm} }}");
        let overrides = ["train.epochs=1".into(), format!("model.pretrained=\"{}\"", pretrained.display()), finetune];
        let config = RunConfig::parse(&config().to_toml(), &overrides).unwrap();
        let prepared = medkd_train::Prepared::new(&config).unwrap();
        let dir = tmp.path().join(format!("frozen_bn_{frozen_batch_norm}"));
        fit(&config, &prepared.setup, &mut Classify::new(&config, &prepared), &RunDir::create(&dir).unwrap(), false, false).unwrap();
        for ((name, old), (_, new)) in before.iter().zip(tensors(&dir.join("checkpoints/best.safetensors"))) {
            let statistic = name.ends_with("running_mean") || name.ends_with("running_var");
            if name.starts_with("fc.") {
                assert_ne!(old, &new, "{name}: the classifier learns");
            } else if statistic && !frozen_batch_norm {
                if name == "bn1.running_mean" {
                    assert_ne!(old, &new, "{name}: BatchNorm statistics follow the data");
                }
            } else {
                assert_eq!(old, &new, "{name}: frozen (frozen_batch_norm = {frozen_batch_norm})");
            }
        }
    }
}

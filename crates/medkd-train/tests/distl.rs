//! DISTL and DINO on the loop: a self-training round stopped mid-epoch resumes to the same
//! result as one never stopped (its EMA teacher and DINO centre travel in the resume set), and
//! the round's batches are the labelled part's correction passes between batches of its fold.

use std::path::Path;

use burn::prelude::*;
use medkd_data::{Batch, Loader};
use medkd_models::{Model, load_weights};
use medkd_train::checkpoint::{MethodState, load_last_modules};
use medkd_train::engine::fit;
use medkd_train::method::{Method, StepAt, StepLoss};
use medkd_train::methods::{MethodConfig, SelfDistillation, SelfDistilled};
use medkd_train::{Prepared, RunConfig, RunDir, TrainError};

/// One DISTL round on 30% of BreastMNIST's training images: a quarter of them labelled, the rest
/// in three folds, fold 0 used; ViT-Tiny at 28 px with a small DINO head and one local crop.
fn config() -> RunConfig {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/breastmnist.npz");
    let text = format!(
        "seed = 3\n[data]\nformat = \"medmnist\"\npath = \"{}\"\ntrain_subset = {{ ratio = 0.3, seed = 1 }}\n\
         train_transforms = [{{ op = \"random_resized_crop\", size = 28, scale = [0.7, 1.0] }}]\n\
         [model]\narch = \"vit_tiny_patch4\"\ndrop_path_rate = 0.1\n\
         [method]\nkind = \"distl\"\nlabelled = 0.25\nuse_folds = 1\ncorrection_every = 3\n\
         [method.dino]\nout_dim = 64\nhidden = 32\nbottleneck = 16\nlocal_crops = {{ number = 1, size = 12 }}\n\
         [train]\nepochs = 2\nbatch_size = 8\nworkers = 1\nselect_metric = \"loss\"\n\
         optimizer = {{ kind = \"adamw\", lr = 0.0005, weight_decay = 0.01 }}\n[[loss]]\nkind = \"cross_entropy\"\n",
        data.display()
    );
    RunConfig::parse(&text, &[]).unwrap()
}

/// The method, stopped with an error before step `crash_at` as a crash would stop it; records
/// whether each batch was labelled.
struct Crashing<'a> {
    inner: SelfDistillation<'a>,
    crash_at: Option<StepAt>,
    labelled: Vec<bool>,
}

impl Method for Crashing<'_> {
    type Trainable = SelfDistilled;

    fn init(&mut self, device: &Device) -> Result<SelfDistilled, TrainError> {
        self.inner.init(device)
    }
    fn model<'m>(&self, trainable: &'m SelfDistilled) -> &'m Model {
        self.inner.model(trainable)
    }
    fn train_loader(&self) -> Result<Loader, TrainError> {
        self.inner.train_loader()
    }
    fn prepare(&mut self, run: &RunDir) -> Result<(), TrainError> {
        self.inner.prepare(run)
    }
    fn step(&mut self, trainable: &SelfDistilled, batch: Batch, at: StepAt) -> Result<StepLoss, TrainError> {
        if self.crash_at == Some(at) {
            return Err(TrainError::Input(format!("simulated crash at {at:?}")));
        }
        self.labelled.push(batch.is_labelled());
        self.inner.step(trainable, batch, at)
    }
    fn after_step(&mut self, trainable: SelfDistilled, at: StepAt) -> Result<SelfDistilled, TrainError> {
        self.inner.after_step(trainable, at)
    }
    fn save_state(&self, state: &mut MethodState) -> Result<(), TrainError> {
        self.inner.save_state(state)
    }
    fn load_state(&mut self, state: &MethodState) -> Result<(), TrainError> {
        self.inner.load_state(state)
    }
}

/// Each epoch's lines of metrics.jsonl without their wall-clock time.
fn metrics(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|line| {
            let mut value: serde_json::Value = serde_json::from_str(line).unwrap();
            value.as_object_mut().unwrap().remove("wall_seconds");
            value
        })
        .collect()
}

#[test]
fn a_distl_round_stopped_mid_epoch_resumes_exactly() {
    let config = config();
    let prepared = Prepared::new(&config).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let run = |dir: &Path, crash_at: Option<StepAt>, resume: bool| {
        let mut method = Crashing { inner: SelfDistillation::new(&config, &prepared), crash_at, labelled: Vec::new() };
        let folder = if resume { RunDir::open(dir).unwrap() } else { RunDir::create(dir).unwrap() };
        let result = fit(&config, &prepared.setup, &mut method, &folder, resume, false);
        (result, method.labelled)
    };

    let whole = tmp.path().join("whole");
    let (outcome, labelled) = run(&whole, None, false);
    outcome.unwrap();
    // 164 images: 41 labelled (5 batches of 8), 41 in fold 0 (5 batches); a correction pass
    // before unlabelled batches 0 and 3.
    let epoch = [[true; 5].as_slice(), &[false; 3], &[true; 5], &[false; 2]].concat();
    assert_eq!(labelled, [epoch.clone(), epoch].concat());
    let lines = metrics(&whole);
    for term in ["cross_entropy", "pseudo_label", "dino"] {
        assert!(lines[0]["train_terms"][term].as_f64().unwrap() > 0.0, "{term}: {}", lines[0]);
    }
    let split = std::fs::read_to_string(whole.join("distl_split.csv")).unwrap();
    assert_eq!(split.lines().filter(|l| l.ends_with(",labelled")).count(), 41);
    assert_eq!(split.lines().filter(|l| l.ends_with(",fold_0")).count(), 41);
    assert_eq!(split.lines().filter(|l| l.ends_with("(unused this round)")).count(), 82);

    let stopped = tmp.path().join("stopped");
    let (error, _) = run(&stopped, Some(StepAt { epoch: 1, step: 6, steps: 15 }), false);
    assert!(error.err().unwrap().to_string().contains("simulated crash"));
    run(&stopped, None, true).0.unwrap();
    assert_eq!(metrics(&stopped), metrics(&whole), "the resumed round trains the same second epoch");
    let setup = &prepared.setup;
    let logits = |dir: &Path| {
        let model = load_weights(Model::new(&setup.spec, &setup.device).unwrap(), &dir.join("checkpoints/best.safetensors")).unwrap();
        model.logits(Tensor::<4>::ones([2, 1, 28, 28], &setup.device)).into_data().try_to_vec::<f32>().unwrap()
    };
    assert_eq!(logits(&stopped), logits(&whole), "and selects the same weights");

    // The next round carries this one over: its student starts as this round's last one.
    let next =
        RunConfig::parse(&config.to_toml(), &["method.use_folds=2".into(), format!("method.previous_round=\"{}\"", whole.display())])
            .unwrap();
    let next_prepared = Prepared::new(&next).unwrap();
    let autodiff = setup.device.clone().autodiff();
    let started = SelfDistillation::new(&next, &next_prepared).init(&autodiff).unwrap();
    let fresh = SelfDistillation::new(&config, &prepared).init(&autodiff).unwrap();
    let (last, _) = load_last_modules(&whole, fresh).unwrap();
    let probe = |s: &SelfDistilled| {
        let images = Tensor::<4>::ones([2, 1, 28, 28], &setup.device);
        let pooled = s.model.valid().forward(images).pooled;
        s.head.as_ref().unwrap().valid().forward(pooled).into_data().try_to_vec::<f32>().unwrap()
    };
    assert_eq!(probe(&started), probe(&last), "model and DINO head");
    let mut unfinished = next.clone();
    let MethodConfig::Distl(method) = &mut unfinished.method else { unreachable!() };
    method.previous_round = Some(tmp.path().join("nothing"));
    let error = SelfDistillation::new(&unfinished, &next_prepared).init(&autodiff).err().unwrap().to_string();
    assert!(error.contains("`method.previous_round`") && error.contains("nothing"), "{error}");
}

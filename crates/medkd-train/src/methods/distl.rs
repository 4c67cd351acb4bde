//! Self-distillation on unlabelled images: `method = "dino"` (DINO pre-training, Caron et al.
//! 2021, labels unused) and `method = "distl"` (one round of DISTL, Park et al. 2022: an EMA
//! teacher's soft pseudo-labels and DINO on a growing unlabelled pool, with correction passes on
//! the labelled set; methods.md §2 and A.2). Both train the model with DINO's projection head on
//! its pooled embedding (a ViT's CLS token); the teacher is an exponential moving average of both.
//! The rounds themselves are stages (`crate::rounds`); a round may start from the one before
//! (`method.previous_round`).
//!
//! Where this differs from the official code (`sangjoon-park/AI-Can-Self-Evolve`): one model
//! head gives the class logits (DISTL adds a 3-layer MLP), trained with softmax cross-entropy,
//! which for two classes is DISTL's sigmoid BCE on the logit difference
//! ([`medkd_losses::soft_cross_entropy`]); the correction passes come every `correction_every`
//! unlabelled batches counted from each epoch's start (the official count runs across epochs);
//! the un-augmented view is the eval transforms' output, without the official test-time blur.

use std::collections::BTreeMap;
use std::sync::Arc;

use burn::module::Module;
use burn::prelude::*;
use burn::tensor::activation::{sigmoid, softmax};
use medkd_data::{
    Batch, Concat, ImageDataset, Interleave, LabelledFolds, Loader, LoaderOptions, Pipeline, Size, Subset, Task, TransformSpec, Unlabelled,
    labelled_folds,
};
use medkd_losses::{
    DinoHead, DinoHeadShape, LossContext, Targets, TermValue, bce_with_logits, cosine_schedule, dino_loss, soft_cross_entropy,
    teacher_temperature, updated_center,
};
use medkd_models::{Features, Model};
use serde_json::{Value, json};

use crate::TrainError;
use crate::averaging::blend_toward;
use crate::checkpoint::{MethodState, load_last_modules};
use crate::config::RunConfig;
use crate::evaluate::{Evaluation, batch_tensor, evaluate};
use crate::knn::Knn;
use crate::method::{Method, StepAt, StepLoss};
use crate::methods::classify::{initial_model, train_loader};
use crate::methods::config::{DinoConfig, DinoPretrainConfig, DistlConfig, MethodConfig, PseudoLabels};
use crate::run_dir::RunDir;
use crate::setup::{Prepared, RunSetup};

/// What the optimizer trains: the model and, when DINO takes part, its projection head.
#[derive(Module, Debug)]
pub struct SelfDistilled {
    pub model: Model,
    pub head: Option<DinoHead>,
}

/// What these methods need from the data, built with [`Prepared`] so that a bad setting fails
/// before a run folder exists.
pub struct SelfTrainingData {
    /// DISTL's labelled part and unlabelled folds.
    pub split: Option<LabelledFolds>,
    /// The local crops' pipeline and their number per image, when DINO takes part.
    pub local_crops: Option<(Arc<Pipeline>, usize)>,
}

/// The DINO settings of a config's method, if it trains with DINO.
fn dino_of(method: &MethodConfig) -> Option<&DinoConfig> {
    match method {
        MethodConfig::Dino(pretrain) => Some(&pretrain.dino),
        MethodConfig::Distl(distl) if !distl.supervised() && distl.lambda > 0.0 => Some(&distl.dino),
        _ => None,
    }
}

/// Checks a `dino` or `distl` config against the data and builds what it needs; `None` for other
/// methods.
pub(crate) fn prepare_data(config: &RunConfig, setup: &RunSetup) -> Result<Option<SelfTrainingData>, TrainError> {
    let split = match &config.method {
        MethodConfig::Dino(_) => {
            if setup.info.task != Task::Binary && setup.info.task != Task::MultiClass {
                return Err(TrainError::Config(
                    "`method`: kind = \"dino\" scores its embeddings by k-NN on the training labels and needs single-label classes".into(),
                ));
            }
            None
        }
        MethodConfig::Distl(distl) => {
            if matches!(setup.info.task, Task::Localization) {
                return Err(TrainError::Config("`method`: kind = \"distl\" trains classifiers; the data has box targets".into()));
            }
            let n = setup.splits.train.len();
            let split = labelled_folds(n, distl.labelled, distl.folds, distl.split_seed)
                .map_err(|e| TrainError::Config(format!("`method.labelled` / `method.folds`: {e}")))?;
            if !distl.supervised() && setup.train_hw != setup.input_hw {
                return Err(TrainError::Config(format!(
                    "`data.train_transforms`: DISTL's teacher reads the un-augmented image (eval transforms, {:?}) beside the augmented one, so both must have one size, got {:?}",
                    setup.input_hw, setup.train_hw
                )));
            }
            Some(split)
        }
        _ => return Ok(None),
    };
    let local_crops = dino_of(&config.method).map(|dino| local_pipeline(config, setup, dino)).transpose()?;
    Ok(Some(SelfTrainingData { split, local_crops }))
}

/// The local crops: a random resized crop to `size` (no larger than the global views), then
/// the training transforms that are not crops or resizes.
fn local_pipeline(config: &RunConfig, setup: &RunSetup, dino: &DinoConfig) -> Result<(Arc<Pipeline>, usize), TrainError> {
    let [height, width] = setup.train_hw;
    let global = height.min(width);
    let patch = config.model.arch.patch().unwrap_or(1);
    let size = match dino.local_crops.size {
        Some(size) => size as usize,
        None => (global / 2 / patch * patch).max(patch),
    };
    if size > global {
        return Err(TrainError::Config(format!(
            "`method.dino.local_crops.size`: local crops ({size} px) must not be larger than the global views ({height}x{width})"
        )));
    }
    setup.spec.check_input([size, size]).map_err(|e| TrainError::Config(format!("`method.dino.local_crops.size`: {e}")))?;
    let mut specs =
        vec![TransformSpec::RandomResizedCrop { size: Size::Edge(size as u32), scale: dino.local_crops.scale, ratio: [0.75, 4.0 / 3.0] }];
    specs.extend(
        config
            .data
            .train_transforms
            .iter()
            .filter(|t| {
                !matches!(t, TransformSpec::Resize { .. } | TransformSpec::CenterCrop { .. } | TransformSpec::RandomResizedCrop { .. })
            })
            .cloned(),
    );
    let normalization = setup.train_pipeline.normalization().clone();
    Ok((Arc::new(Pipeline::new(&specs, setup.spec.in_channels, normalization)?), dino.local_crops.number))
}

/// How a run trains.
#[derive(Clone, Copy)]
enum Mode<'a> {
    /// DINO alone on every training image, labels unused.
    Pretrain(&'a DinoPretrainConfig),
    /// DISTL round 0 or the supervised baseline: the config's loss terms on labelled images.
    Supervised(&'a DistlConfig),
    /// A DISTL round with unlabelled folds.
    SelfTrain(&'a DistlConfig),
}

/// The EMA teacher and DINO's centre.
struct Teacher {
    student: SelfDistilled,
    center: Tensor<2>,
}

pub struct SelfDistillation<'a> {
    config: &'a RunConfig,
    prepared: &'a Prepared,
    mode: Mode<'a>,
    data: &'a SelfTrainingData,
    device: Option<Device>,
    /// Made from the student at the first step, or loaded on resume.
    teacher: Option<Teacher>,
}

impl<'a> SelfDistillation<'a> {
    pub fn new(config: &'a RunConfig, prepared: &'a Prepared) -> SelfDistillation<'a> {
        let mode = match &config.method {
            MethodConfig::Dino(pretrain) => Mode::Pretrain(pretrain),
            MethodConfig::Distl(distl) if distl.supervised() => Mode::Supervised(distl),
            MethodConfig::Distl(distl) => Mode::SelfTrain(distl),
            _ => unreachable!("methods::train picks this method for dino and distl configs"),
        };
        let data = prepared.self_training.as_ref().expect("Prepared::new builds it for dino and distl configs");
        SelfDistillation { config, prepared, mode, data, device: None, teacher: None }
    }

    fn dino(&self) -> Option<&'a DinoConfig> {
        dino_of(&self.config.method)
    }

    fn split(&self) -> &LabelledFolds {
        self.data.split.as_ref().expect("distl configs have a split")
    }

    /// This round's labelled samples and unlabelled pool (indices into the training split).
    fn round_samples(&self, distl: &DistlConfig) -> (Vec<usize>, Vec<usize>) {
        let split = self.split();
        let pool: Vec<usize> = split.folds[..distl.use_folds].iter().flatten().copied().collect();
        (split.labelled.clone(), pool)
    }

    /// The views of one batch, in the student's two resolution groups: the global views stacked
    /// (`[2B, C, H, W]`) and the local ones (`[N·B, C, h, w]`, `None` without local crops).
    fn view_groups(&self, batch: &Batch) -> (Tensor<4>, Option<Tensor<4>>) {
        let device = self.device.as_ref().expect("init runs before the first step");
        let mut views = batch.views().map(|(images, shape)| batch_tensor(images, shape, device));
        let globals = Tensor::cat(views.by_ref().take(2).collect(), 0);
        let locals: Vec<Tensor<4>> = views.collect();
        (globals, (!locals.is_empty()).then(|| Tensor::cat(locals, 0)))
    }

    /// DINO's loss on a batch's views (`None` without a DINO head), the student's outputs on the
    /// two global views and the teacher's class logits on them (`[2B, ·]`, global view 0 first).
    /// Updates the centre.
    fn dino_step(&mut self, student: &SelfDistilled, batch: &Batch, at: StepAt) -> (Option<Tensor<1>>, Features, Tensor<2>) {
        let (globals, locals) = self.view_groups(batch);
        let b = batch.indices.len();
        let dino = self.dino();
        let teacher = self.teacher.get_or_insert_with(|| Teacher::new(student, dino));
        let teacher_out = teacher.student.model.forward(globals.clone().without_autodiff());
        let student_out = student.model.forward(globals);
        let Some((dino, head)) = dino.zip(student.head.as_ref()) else {
            return (None, student_out, teacher_out.logits);
        };
        let teacher_head = teacher.student.head.as_ref().expect("the teacher copies the student's head");
        let chunks = |x: Tensor<2>| {
            let views = x.dims()[0] / b;
            x.chunk(views, 0)
        };
        let train_last_layer = at.epoch >= dino.freeze_last_layer_epochs;
        let mut student_views = chunks(head.forward_with(student_out.pooled.clone(), train_last_layer));
        if let Some(locals) = locals {
            student_views.extend(chunks(head.forward_with(student.model.forward(locals).pooled, train_last_layer)));
        }
        let teacher_views = chunks(teacher_head.forward(teacher_out.pooled));
        let temp = teacher_temperature(at.epoch, dino.warmup_teacher_temp, dino.teacher_temp, dino.warmup_teacher_temp_epochs);
        let loss = dino_loss(&student_views, &teacher_views, &teacher.center, dino.student_temp, temp);
        teacher.center = updated_center(teacher.center.clone(), &teacher_views, dino.center_momentum);
        (Some(loss), student_out, teacher_out.logits)
    }

    /// The config's loss terms on the student's `outputs` against the batch's labels.
    fn supervised_loss(&self, outputs: &Features, batch: &Batch, at: StepAt) -> Result<(Tensor<1>, Vec<TermValue>), TrainError> {
        let setup = &self.prepared.setup;
        let targets = match setup.info.task {
            Task::MultiLabel => Targets::MultiHot { values: batch.multi_hot(), num_labels: setup.spec.num_classes },
            _ => Targets::Classes(batch.class_labels()),
        };
        let context = LossContext { step: at.global(), ..LossContext::student_only(outputs, &targets, at.epoch as u64) };
        Ok(self.prepared.objective.compute(&context)?)
    }

    /// Cross-entropy of the student's logits against the teacher's pseudo-labels (the teacher's
    /// outputs carry no graph: they enter as constants, as KD terms' teachers do).
    fn pseudo_label_loss(&self, student: Tensor<2>, teacher: Tensor<2>, kind: PseudoLabels) -> Tensor<1> {
        let multi_label = self.prepared.setup.info.task == Task::MultiLabel;
        match (multi_label, kind) {
            (false, PseudoLabels::Soft) => soft_cross_entropy(student, softmax(teacher, 1)),
            (false, PseudoLabels::Hard) => {
                let classes = teacher.clone().argmax(1).squeeze_dim::<1>(1);
                let one_hot = classes.one_hot(teacher.dims()[1]).float();
                soft_cross_entropy(student, one_hot)
            }
            (true, PseudoLabels::Soft) => bce_with_logits(student, sigmoid(teacher)),
            (true, PseudoLabels::Hard) => bce_with_logits(student, sigmoid(teacher).greater_elem(0.5).float()),
        }
    }

    /// DINO's weighted k-NN classifier (`eval_knn`): `loader`'s images scored by the labels of
    /// their most similar training images.
    fn knn(&self, model: &Model, loader: &Loader, pretrain: &DinoPretrainConfig) -> Result<Evaluation, TrainError> {
        let setup = &self.prepared.setup;
        let bank = setup.eval_loader(self.config, setup.splits.train.clone())?;
        let knn = Knn { k: pretrain.knn_k, temperature: pretrain.knn_temperature };
        let predictions = knn.predict(model, &bank, loader, setup.info.class_names.len(), &setup.device)?;
        evaluate(&predictions, &setup.info, &setup.shot_groups)
    }

    /// `model` with a new DINO head when DINO takes part.
    fn with_head(&self, model: Model, device: &Device) -> SelfDistilled {
        let head = self.dino().map(|dino| {
            let shape =
                DinoHeadShape { in_dim: model.feature_dim(), out_dim: dino.out_dim, hidden: dino.hidden, bottleneck: dino.bottleneck };
            DinoHead::new(shape, device)
        });
        SelfDistilled { model, head }
    }

    /// The teacher and centre `state` holds (of this run, or of the round before), loaded into a
    /// copy of `like`; `None` when it has none.
    fn saved_teacher(&self, state: &MethodState, like: &SelfDistilled) -> Result<Option<Teacher>, TrainError> {
        if !state.get::<bool>("has_teacher")? {
            return Ok(None);
        }
        let student = state.get_module("teacher", like.valid())?;
        let center: Vec<f32> = state.get("dino_center")?;
        let inner = self.device.clone().expect("init runs first").without_autodiff();
        let width = center.len();
        Ok(Some(Teacher { student, center: Tensor::from_data(TensorData::new(center, [1, width]), &inner) }))
    }
}

impl Teacher {
    fn new(student: &SelfDistilled, dino: Option<&DinoConfig>) -> Teacher {
        let device = student.model.devices()[0].clone().without_autodiff();
        let out_dim = dino.map_or(1, |d| d.out_dim);
        Teacher { student: student.valid(), center: Tensor::zeros([1, out_dim], &device) }
    }
}

impl Method for SelfDistillation<'_> {
    type Trainable = SelfDistilled;

    fn init(&mut self, device: &Device) -> Result<SelfDistilled, TrainError> {
        self.device = Some(device.clone());
        let (model, _) = initial_model(self.config, &self.prepared.setup.spec, device)?;
        let student = self.with_head(model, device);
        let Mode::SelfTrain(DistlConfig { previous_round: Some(previous), .. }) = self.mode else { return Ok(student) };
        let (student, state) =
            load_last_modules(previous, student).map_err(|e| TrainError::Config(format!("`method.previous_round`: {e}")))?;
        self.teacher = self.saved_teacher(&state, &student)?;
        Ok(student)
    }

    fn model<'m>(&self, trainable: &'m SelfDistilled) -> &'m Model {
        &trainable.model
    }

    fn evaluate(&self, model: &Model, loader: &Loader, setup: &RunSetup) -> Result<Evaluation, TrainError> {
        match self.mode {
            Mode::Pretrain(pretrain) => self.knn(model, loader, pretrain),
            _ => evaluate(&crate::evaluate::predict(model, loader, &setup.info, &setup.device)?, &setup.info, &setup.shot_groups),
        }
    }

    fn train_loader(&self) -> Result<Loader, TrainError> {
        let setup = &self.prepared.setup;
        let train = setup.splits.train.clone();
        let multi_crop = |dataset: Arc<dyn ImageDataset>, first: Arc<Pipeline>| -> Result<Loader, TrainError> {
            let mut views = vec![first, setup.train_pipeline.clone()];
            if let Some((local, number)) = &self.data.local_crops {
                views.extend(std::iter::repeat_n(local.clone(), *number));
            }
            let options = LoaderOptions {
                batch_size: self.config.train.batch_size,
                shuffle: true,
                drop_last: true,
                seed: self.config.seed,
                workers: self.config.train.workers,
                prefetch: self.config.train.prefetch,
            };
            Ok(Loader::with_views(dataset, views, options)?)
        };
        match self.mode {
            Mode::Pretrain(_) => multi_crop(Arc::new(Unlabelled::new(train)), setup.train_pipeline.clone()),
            Mode::Supervised(distl) => {
                let (mut labelled, pool) = self.round_samples(distl);
                if distl.labels_on_folds {
                    labelled.extend(pool);
                    labelled.sort_unstable();
                }
                train_loader(self.config, self.prepared, Arc::new(Subset::new(train, labelled)))
            }
            Mode::SelfTrain(distl) => {
                let (labelled, pool) = self.round_samples(distl);
                let (l, u) = (labelled.len(), pool.len());
                let dataset: Arc<dyn ImageDataset> = Arc::new(Concat::new(
                    Arc::new(Subset::new(train.clone(), labelled)),
                    Arc::new(Unlabelled::new(Arc::new(Subset::new(train, pool)))),
                ));
                let interleave = Interleave { main: (l..l + u).collect(), inserted: (0..l).collect(), every: distl.correction_every };
                Ok(multi_crop(dataset, setup.eval_pipeline.clone())?.interleaved(interleave)?)
            }
        }
    }

    /// Writes `distl_split.csv`: every training image's part (labelled, or its fold).
    fn prepare(&mut self, run: &RunDir) -> Result<(), TrainError> {
        let (Some(split), MethodConfig::Distl(distl)) = (&self.data.split, &self.config.method) else { return Ok(()) };
        let train = self.prepared.setup.splits.train.as_ref();
        let mut rows: Vec<(usize, String)> = split.labelled.iter().map(|&i| (i, "labelled".to_string())).collect();
        for (k, fold) in split.folds.iter().enumerate() {
            let used = if k < distl.use_folds { "" } else { " (unused this round)" };
            rows.extend(fold.iter().map(|&i| (i, format!("fold_{k}{used}"))));
        }
        rows.sort_unstable();
        let mut text = String::from("image,part\n");
        for (i, part) in rows {
            text.push_str(&format!("{},{part}\n", train.id(i)));
        }
        run.write_text(&run.root().join("distl_split.csv"), &text)
    }

    fn step(&mut self, student: &SelfDistilled, batch: Batch, at: StepAt) -> Result<StepLoss, TrainError> {
        let device = self.device.clone().expect("init runs before the first step");
        match self.mode {
            Mode::Supervised(_) => {
                let outputs = student.model.forward(batch_tensor(&batch.images, batch.shape, &device));
                let (total, terms) = self.supervised_loss(&outputs, &batch, at)?;
                Ok(StepLoss { total, terms })
            }
            Mode::Pretrain(_) => {
                let (dino, _, _) = self.dino_step(student, &batch, at);
                let dino = dino.expect("pre-training has a DINO head");
                Ok(StepLoss { total: dino.clone(), terms: vec![TermValue { name: "dino".into(), value: dino }] })
            }
            Mode::SelfTrain(distl) => {
                let (dino, student_out, teacher_logits) = self.dino_step(student, &batch, at);
                let b = batch.indices.len();
                // Global view 1 is the augmented one, view 0 the teacher's un-augmented one.
                let strong =
                    Features { maps: Vec::new(), pooled: student_out.pooled.narrow(0, b, b), logits: student_out.logits.narrow(0, b, b) };
                let (class_loss, mut terms) = if batch.is_labelled() {
                    self.supervised_loss(&strong, &batch, at)?
                } else {
                    let alpha = if distl.alpha_ramp { 2.0 * (at.epoch + 1) as f64 / self.config.train.epochs as f64 } else { 1.0 };
                    let pseudo = self.pseudo_label_loss(strong.logits, teacher_logits.narrow(0, 0, b), distl.pseudo_labels);
                    (pseudo.clone().mul_scalar(alpha), vec![TermValue { name: "pseudo_label".into(), value: pseudo }])
                };
                let total = match dino {
                    Some(dino) => {
                        terms.push(TermValue { name: "dino".into(), value: dino.clone() });
                        dino.mul_scalar(distl.lambda) + class_loss.mul_scalar(1.0 - distl.lambda)
                    }
                    None => class_loss.mul_scalar(1.0 - distl.lambda),
                };
                Ok(StepLoss { total, terms })
            }
        }
    }

    /// The teacher follows the student: momentum from `momentum_teacher` to 1 on a cosine over the run.
    fn after_step(&mut self, student: SelfDistilled, at: StepAt) -> Result<SelfDistilled, TrainError> {
        if let Some(teacher) = &mut self.teacher {
            let base = match self.mode {
                Mode::Pretrain(pretrain) => pretrain.dino.momentum_teacher.unwrap_or(0.996),
                Mode::SelfTrain(distl) | Mode::Supervised(distl) => distl.dino.momentum_teacher.unwrap_or(0.9995),
            };
            let total = self.config.train.epochs * at.steps;
            let momentum = cosine_schedule(base, 1.0, at.global() as usize, total, 0, 0.0);
            let previous = std::mem::replace(&mut teacher.student, student.valid());
            teacher.student = blend_toward(previous, &teacher.student, 1.0 - momentum);
        }
        Ok(student)
    }

    fn save_state(&self, state: &mut MethodState) -> Result<(), TrainError> {
        state.put("has_teacher", &self.teacher.is_some());
        if let Some(teacher) = &self.teacher {
            state.put_module("teacher", &teacher.student)?;
            state.put("dino_center", &teacher.center.clone().into_data().try_to_vec::<f32>().expect("f32 centre"));
        }
        Ok(())
    }

    fn load_state(&mut self, state: &MethodState) -> Result<(), TrainError> {
        let device = self.device.clone().expect("init runs before load_state");
        let shape = self.with_head(Model::new(&self.prepared.setup.spec, &device)?, &device);
        self.teacher = self.saved_teacher(state, &shape)?;
        Ok(())
    }

    fn summary(&self) -> BTreeMap<String, Value> {
        let mut summary = BTreeMap::new();
        if let (Some(split), MethodConfig::Distl(distl)) = (&self.data.split, &self.config.method) {
            let fold_sizes: Vec<usize> = split.folds.iter().map(Vec::len).collect();
            summary.insert(
                "distl".into(),
                json!({
                    "labelled": split.labelled.len(),
                    "fold_sizes": fold_sizes,
                    "use_folds": distl.use_folds,
                    "labels_on_folds": distl.labels_on_folds,
                    "split_seed": distl.split_seed,
                }),
            );
        }
        summary
    }
}

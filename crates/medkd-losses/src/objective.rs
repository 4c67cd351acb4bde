use burn::prelude::*;

use crate::term::{LossTerm, Needs, TermAt};
use crate::{ConvRegressor, Features, LossError, LossSpec, ProjectionHead, Targets};
use medkd_models::FeatureLayout;

/// What the loss terms see for one batch.
pub struct LossContext<'a> {
    pub student: &'a Features,
    /// The frozen teachers' outputs on the same batch, in config order (empty without teachers).
    pub teachers: &'a [Features],
    pub targets: &'a Targets,
    /// The trainable regressors of `hint`/`channel_gram` terms, as [`Objective::adapter_shapes`]
    /// lists them.
    pub adapters: &'a [ConvRegressor],
    /// The student's trainable projection heads and the teachers' trained, frozen ones, one
    /// pair per [`Objective::projection_heads`] entry.
    pub student_heads: &'a [ProjectionHead],
    pub teacher_heads: &'a [ProjectionHead],
    /// Global training step (epoch x steps per epoch + step) and epoch: seed the random
    /// teacher choices, so a resumed run draws the same ones.
    pub step: u64,
    pub epoch: u64,
    /// Per-sample weights of the batch, in batch order, for terms that weigh samples (the box
    /// terms and `cross_entropy`: sum of weight x loss over the batch, divided as without
    /// weights); `None` weighs every sample 1.
    pub sample_weights: Option<&'a [f32]>,
}

impl<'a> LossContext<'a> {
    /// A batch of the student alone, without teachers, regressors or heads: what supervised
    /// terms read.
    pub fn student_only(student: &'a Features, targets: &'a Targets, epoch: u64) -> Self {
        LossContext {
            student,
            teachers: &[],
            targets,
            adapters: &[],
            student_heads: &[],
            teacher_heads: &[],
            step: 0,
            epoch,
            sample_weights: None,
        }
    }
}

/// One term's unweighted value, for logging.
pub struct TermValue {
    pub name: String,
    pub value: Tensor<1>,
}

/// Facts about the training data and teachers that terms are resolved against.
pub struct TaskFacts<'a> {
    pub num_classes: usize,
    pub multi_label: bool,
    /// Box targets (localization): only box terms apply, and no class term.
    pub boxes: bool,
    pub class_names: &'a [String],
    /// Per-class sample counts of the training split.
    pub class_counts: &'a [usize],
    /// What the student's features hold ([`medkd_models::Model::layout`]).
    pub student: &'a FeatureLayout,
    /// What each teacher gives; its length is the number of teachers.
    pub teachers: &'a [TeacherFacts],
    /// Seeds the random teacher choice of `teachers = "random"`.
    pub seed: u64,
}

/// What a loss term may know of one teacher before training.
#[derive(Clone, Debug, PartialEq)]
pub struct TeacherFacts {
    /// What its features hold.
    pub layout: FeatureLayout,
    /// The classes of its logits' columns: the student's, or for a per-subset teacher
    /// (`subset_kd`) some of them plus possibly "other".
    pub class_names: Vec<String>,
}

/// A projection-head pair an `sskd` term needs: the student's (trained with it) and the
/// teacher's (trained first, on the frozen teacher, for `epochs` at `lr`, unless `trained` names
/// the file of one an earlier run trained).
#[derive(Clone, Debug, PartialEq)]
pub struct HeadSpec {
    pub teacher: usize,
    pub student_dim: usize,
    pub teacher_dim: usize,
    pub epochs: usize,
    pub lr: f64,
    pub trained: Option<std::path::PathBuf>,
}

/// A resolved list of weighted loss terms: total = sum of weight x term.
pub struct Objective {
    terms: Vec<(String, f64, Box<dyn LossTerm>)>,
    /// The regressors and projection heads the terms need.
    needs: Needs,
    rotated_views: bool,
}

impl Objective {
    /// No term: for a method whose loss is its own (DINO pre-training); never computed.
    pub fn none() -> Objective {
        Objective { terms: Vec::new(), needs: Needs::default(), rotated_views: false }
    }

    /// Validates every spec against the task and teachers and resolves data-dependent
    /// parameters (class weights), so a bad term fails before training starts.
    pub fn new(specs: &[LossSpec], facts: &TaskFacts) -> Result<Objective, LossError> {
        if specs.is_empty() {
            return Err(LossError::bad("loss", "the config declares no [[loss]] term"));
        }
        let mut terms: Vec<(String, f64, Box<dyn LossTerm>)> = Vec::with_capacity(specs.len());
        let mut needs = Needs::default();
        for spec in specs {
            spec.validate()?;
            let term_spec = spec.term_spec();
            if term_spec.reads_boxes() != facts.boxes {
                let (needs, found) = match facts.boxes {
                    true => ("class targets", "the task is localization (box targets): use kind = \"box_l1\" and kind = \"giou\""),
                    false => ("box targets (a localization task)", "the data has class targets"),
                };
                return Err(LossError::Incompatible { term: spec.name().into(), needs: needs.into(), found: found.into() });
            }
            let term = term_spec.resolve(facts, &mut needs)?;
            // Repeated kinds are logged apart: kd, kd_2, ...
            let repeats = specs.iter().take(terms.len()).filter(|s| s.name() == spec.name()).count();
            let name = match repeats {
                0 => spec.name().to_string(),
                n => format!("{}_{}", spec.name(), n + 1),
            };
            terms.push((name, spec.weight(), term));
        }
        let rotated_views = terms.iter().any(|(_, _, term)| term.rotated_views());
        Ok(Objective { terms, needs, rotated_views })
    }

    /// Whether the batch goes through student and teachers as four rotated views per image
    /// ([`crate::with_rotations`]): on when a `kd_rotated` or `sskd` term is present. Then the
    /// classification and `kd` terms read the normal views, `kd_rotated` and `sskd` the
    /// rotations, and the embedding and feature-map terms all views (as SSD-KD does).
    pub fn rotated_views(&self) -> bool {
        self.rotated_views
    }

    /// The projection-head pairs to create and pass back in [`LossContext`].
    pub fn projection_heads(&self) -> &[HeadSpec] {
        &self.needs.heads
    }

    /// Whether a term reads the teachers' stage maps (and not only logits and embeddings).
    pub fn reads_teacher_stages(&self) -> bool {
        self.terms.iter().any(|(_, _, term)| term.reads_teacher_stages())
    }

    /// `(in, out)` channels of the regressors to create, train with the student and pass back
    /// in [`LossContext::adapters`].
    pub fn adapter_shapes(&self) -> &[(usize, usize)] {
        &self.needs.adapters
    }

    /// Names of the terms that ignore per-sample weights ([`LossTerm::weighs_samples`]).
    pub fn unweighted_terms(&self) -> Vec<String> {
        self.terms.iter().filter(|(_, _, term)| !term.weighs_samples()).map(|(name, _, _)| name.clone()).collect()
    }

    /// Names of the terms, in config order.
    pub fn term_names(&self) -> Vec<String> {
        self.terms.iter().map(|(name, _, _)| name.clone()).collect()
    }

    /// The weighted total and each term's unweighted value.
    pub fn compute(&self, ctx: &LossContext) -> Result<(Tensor<1>, Vec<TermValue>), LossError> {
        let mut total: Option<Tensor<1>> = None;
        let mut values = Vec::with_capacity(self.terms.len());
        for (index, (name, weight, term)) in self.terms.iter().enumerate() {
            let value = term.value(ctx, &TermAt { index, name, rotated_views: self.rotated_views })?;
            let weighted = value.clone().mul_scalar(*weight);
            total = Some(match total {
                Some(sum) => sum + weighted,
                None => weighted,
            });
            values.push(TermValue { name: name.clone(), value });
        }
        Ok((total.expect("Objective::new rejects an empty term list"), values))
    }
}

//! The shape of a loss term: its parameters ([`TermSpec`], one `[[loss]]` entry) resolve against
//! the task and teachers into a [`LossTerm`] that computes the term for a batch. A term is one
//! file under `terms/` plus its line in the `loss_spec!` registry (spec.rs). The checks several
//! terms share live here.

use burn::prelude::*;
use medkd_models::FeatureLayout;

use crate::{HeadSpec, LossContext, LossError, Targets, TaskFacts, normal_rows};

/// A term's config: what a `[[loss]]` entry of its `kind` holds (serde, unknown keys denied).
pub trait TermSpec {
    /// The `kind` it is configured and logged under.
    fn kind(&self) -> &'static str;
    /// Its weight in the objective's total.
    fn weight(&self) -> f64;
    /// Whether it trains box targets (localization) rather than classes; the objective refuses
    /// the one kind of term on the other kind of task.
    fn reads_boxes(&self) -> bool {
        false
    }
    /// Checks the parameters that do not depend on the data (the weight is checked for every term).
    fn validate(&self) -> Result<(), LossError> {
        Ok(())
    }
    /// Checks the term against the data and teachers and resolves it, adding to `needs` the
    /// trainable modules it reads (it keeps their indices).
    fn resolve(&self, facts: &TaskFacts, needs: &mut Needs) -> Result<Box<dyn LossTerm>, LossError>;
}

/// A resolved term.
pub trait LossTerm: Send + Sync {
    /// The unweighted value on one batch.
    fn value(&self, ctx: &LossContext, at: &TermAt) -> Result<Tensor<1>, LossError>;
    /// Whether it reads the teachers' stage maps (which the teacher cache does not keep).
    fn reads_teacher_stages(&self) -> bool {
        false
    }
    /// Whether it reads rotated views, which turns them on for the whole objective
    /// ([`crate::Objective::rotated_views`]).
    fn rotated_views(&self) -> bool {
        false
    }
    /// Whether it weighs samples by [`crate::LossContext::sample_weights`] (a term that does not
    /// is refused where a method weighs samples, rather than silently weighing them alike).
    fn weighs_samples(&self) -> bool {
        false
    }
}

/// The trainable modules resolved terms need beside the student: the trainer creates them from
/// [`crate::Objective::adapter_shapes`] and [`crate::Objective::projection_heads`] and passes
/// them back in [`LossContext`], where a term finds its own by the index it was given here.
#[derive(Debug, Default)]
pub struct Needs {
    pub(crate) adapters: Vec<(usize, usize)>,
    pub(crate) heads: Vec<HeadSpec>,
}

impl Needs {
    /// Adds a 1x1 regressor from `from` to `to` channels; its index in [`LossContext::adapters`].
    pub fn adapter(&mut self, from: usize, to: usize) -> usize {
        self.adapters.push((from, to));
        self.adapters.len() - 1
    }

    /// Adds a projection-head pair; its index in [`LossContext::student_heads`]/`teacher_heads`.
    pub fn head(&mut self, head: HeadSpec) -> usize {
        self.heads.push(head);
        self.heads.len() - 1
    }
}

/// Where a term sits in its objective: what its value may depend on beyond the batch.
pub struct TermAt<'a> {
    /// Its position in the config's list (seeds `kd`'s random teacher choice, so it must not
    /// change when other terms change shape).
    pub index: usize,
    /// The name it is logged under (`kd`, `kd_2`, ...), for errors found on a batch.
    pub name: &'a str,
    /// Whether the batch holds four rotated views per image ([`crate::Objective::rotated_views`]).
    pub rotated_views: bool,
}

impl TermAt<'_> {
    /// The rows of `logits` that per-image terms read: the normal (as loaded) views when the
    /// batch holds rotated ones, else all.
    pub fn per_image(&self, logits: &Tensor<2>) -> Tensor<2> {
        if self.rotated_views { normal_rows(logits.clone()) } else { logits.clone() }
    }
}

/// `index` when the config declares that many teachers, else an error naming the term.
pub(crate) fn teacher_index(term: &str, index: usize, facts: &TaskFacts) -> Result<usize, LossError> {
    let declared = facts.teachers.len();
    if index < declared {
        return Ok(index);
    }
    Err(LossError::Incompatible {
        term: term.into(),
        needs: format!("teacher {index} (teachers count from 0)"),
        found: format!("the config declares {declared} [[teacher]] entries"),
    })
}

/// An error naming the term unless teacher `teacher` predicts exactly the student's classes, in
/// the same order (terms that compare whole logit rows).
pub(crate) fn same_classes(term: &str, teacher: usize, facts: &TaskFacts) -> Result<(), LossError> {
    let classes = &facts.teachers[teacher].class_names;
    if classes.as_slice() == facts.class_names {
        return Ok(());
    }
    Err(LossError::Incompatible {
        term: term.into(),
        needs: format!("a teacher that predicts the student's classes {:?}", facts.class_names),
        found: format!("teacher {teacher} predicts {classes:?} (a per-subset teacher is read by kind = \"subset_kd\")"),
    })
}

/// The student's and the teacher's channels of spatial map `index` (the config's `key`), or an
/// error naming the term when either model's map there is not a C x H x W map (a ViT's tokens).
pub(crate) fn spatial_channels(
    term: &str,
    key: &str,
    index: usize,
    facts: &TaskFacts,
    teacher: usize,
) -> Result<(usize, usize), LossError> {
    let channels = |who: &str, layout: &FeatureLayout| {
        layout.spatial_channels(index).map_err(|found| LossError::Incompatible {
            term: term.into(),
            needs: format!("spatial stage maps at `{key}` {index}"),
            found: format!("the {who}'s {found}"),
        })
    };
    Ok((channels("student", facts.student)?, channels(&format!("teacher {teacher}"), &facts.teachers[teacher].layout)?))
}

/// An error naming the term unless the task's targets are multi-label exactly when
/// `multi_label` says (what the term `needs`; `found` says what the dataset has instead).
pub(crate) fn label_kind(term: &str, multi_label: bool, needs: &str, found: &str, facts: &TaskFacts) -> Result<(), LossError> {
    if facts.multi_label == multi_label {
        return Ok(());
    }
    Err(LossError::Incompatible { term: term.into(), needs: needs.into(), found: found.into() })
}

/// An error naming the term unless the task is single-label (the softmax classification terms).
pub(crate) fn single_label(term: &str, facts: &TaskFacts) -> Result<(), LossError> {
    label_kind(term, false, "single-label targets", "the dataset is multi-label (use kind = \"bce\")", facts)
}

/// The batch's class indices, for a term that resolved through [`single_label`].
pub(crate) fn batch_classes<'a>(ctx: &LossContext<'a>) -> &'a [usize] {
    let Targets::Classes(classes) = ctx.targets else {
        unreachable!("Objective::new checked the task kind, and the loader yields targets of that kind")
    };
    classes
}

/// An error naming the term and `key` unless every weight of the list is finite and > 0.
pub(crate) fn check_class_weight_list(term: &str, key: &str, list: &[f64]) -> Result<(), LossError> {
    match list.iter().find(|w| !(w.is_finite() && **w > 0.0)) {
        None => Ok(()),
        Some(bad) => Err(LossError::bad(term, format!("{key} must all be > 0, got {bad}"))),
    }
}

/// A checked list of per-class weights (`key`), or an error unless it has one per class.
pub(crate) fn class_weight_list(term: &str, key: &str, list: &[f64], facts: &TaskFacts) -> Result<Vec<f32>, LossError> {
    if list.len() != facts.num_classes {
        return Err(LossError::bad(term, format!("{key} lists {} weights for {} classes", list.len(), facts.num_classes)));
    }
    Ok(list.iter().map(|&w| w as f32).collect())
}

/// An error naming the term and `key` unless `value` is finite and >= 0.
pub(crate) fn check_non_negative(term: &str, key: &str, value: f64) -> Result<(), LossError> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(LossError::bad(term, format!("{key} must be a finite number >= 0, got {value}")))
    }
}

/// An error naming the term and `key` unless `value` is finite and > 0.
pub(crate) fn check_positive(term: &str, key: &str, value: f64) -> Result<(), LossError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(LossError::bad(term, format!("{key} must be a finite number > 0, got {value}")))
    }
}

pub(crate) fn check_temperature(name: &str, temperature: f64) -> Result<(), LossError> {
    if temperature.is_finite() && temperature > 0.0 {
        Ok(())
    } else {
        Err(LossError::bad(name, format!("temperature must be > 0, got {temperature}")))
    }
}

pub(crate) fn check_ratio(name: &str, ratio: f64) -> Result<(), LossError> {
    if (0.0..=1.0).contains(&ratio) { Ok(()) } else { Err(LossError::bad(name, format!("ratio must be in [0, 1], got {ratio}"))) }
}

/// A resolved `hint`/`channel_gram` term: `loss` between the student's stage map, regressed by
/// adapter `adapter` when channels differ, and the teacher's.
pub(crate) struct StageMaps {
    teacher: usize,
    stage: usize,
    adapter: Option<usize>,
    loss: fn(Tensor<4>, Tensor<4>) -> Tensor<1>,
}

impl StageMaps {
    /// Checks `teacher` and `stage` for term `term` and asks for a regressor when the student's
    /// channels there differ from the teacher's.
    pub(crate) fn resolve(
        term: &str,
        teacher: usize,
        stage: usize,
        loss: fn(Tensor<4>, Tensor<4>) -> Tensor<1>,
        facts: &TaskFacts,
        needs: &mut Needs,
    ) -> Result<Box<dyn LossTerm>, LossError> {
        let teacher = teacher_index(term, teacher, facts)?;
        let (from, to) = spatial_channels(term, "stage", stage, facts, teacher)?;
        let adapter = (from != to).then(|| needs.adapter(from, to));
        Ok(Box::new(StageMaps { teacher, stage, adapter, loss }))
    }
}

impl LossTerm for StageMaps {
    /// `loss` of the (regressed) student map and the teacher map, which must have equal shapes.
    fn value(&self, ctx: &LossContext, at: &TermAt) -> Result<Tensor<1>, LossError> {
        let student = ctx.student.spatial(self.stage).clone();
        let student = match self.adapter {
            Some(index) => ctx.adapters[index].forward(student),
            None => student,
        };
        let teacher = ctx.teachers[self.teacher].spatial(self.stage).clone();
        if student.dims() != teacher.dims() {
            return Err(LossError::Incompatible {
                term: at.name.into(),
                needs: format!("equal student and teacher map shapes at stage {}", self.stage),
                found: format!("student {:?} (after its regressor), teacher {:?}", student.dims(), teacher.dims()),
            });
        }
        Ok((self.loss)(student, teacher))
    }

    fn reads_teacher_stages(&self) -> bool {
        true
    }
}

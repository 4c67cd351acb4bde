//! `kind = "subset_kd"`: relational subsets KD (Ju et al., MICCAI 2021; methods.md §3). Teacher
//! m predicts only the classes of its subset S_m (its class names, a subset of the student's,
//! possibly with a last catch-all "other"), and supervises only the student's logits of those
//! classes:
//!
//! ```text
//! L = sum_m w_m * KD(z_t^m, z_s[S_m])
//! ```
//!
//! Single-label: `KD = T^2 KL(softmax(z_t/T) || softmax(z_s[S_m]/T))` over the slice
//! ([`crate::kd_kl`]). A teacher with an "other" class is compared with the student's slice plus
//! one more logit, `T logsumexp(z_s[not S_m] / T)`, so that the student's softmax over the slice
//! and "other" is exactly its full softmax with the classes outside S_m pooled. Multi-label: the
//! mean sigmoid BCE over the slice ([`crate::kd_bce`]).
//!
//! `subset_weights` gives w_m, one per teacher. Its default ties w_m to the subset's tail-ness:
//! `w_m ∝ 1 / sqrt(mean training count of S_m's classes)`, scaled so the weights average 1, so a
//! subset of rare classes counts more than one of common classes, but by the square root of the
//! imbalance only (as square-root re-sampling does).

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::term::{LossTerm, Needs, TermAt, TermSpec, check_temperature, teacher_index};
use crate::{LossContext, LossError, TaskFacts, kd_bce, kd_kl};

/// The name of a per-subset teacher's catch-all class (medkd-data's `OTHER_CLASS`).
const OTHER: &str = "other";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubsetKdSpec {
    #[serde(default = "crate::spec::unit_weight")]
    pub weight: f64,
    #[serde(default = "crate::terms::kd::default_temperature")]
    pub temperature: f64,
    /// w_m, one per teacher, each >= 0 (default: from the subsets' training counts, see above).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset_weights: Option<Vec<f64>>,
}

impl TermSpec for SubsetKdSpec {
    fn kind(&self) -> &'static str {
        "subset_kd"
    }

    fn weight(&self) -> f64 {
        self.weight
    }

    fn validate(&self) -> Result<(), LossError> {
        check_temperature(self.kind(), self.temperature)?;
        if let Some(list) = &self.subset_weights
            && list.iter().any(|w| !(w.is_finite() && *w >= 0.0))
        {
            return Err(LossError::bad(self.kind(), format!("subset_weights must all be finite and >= 0, got {list:?}")));
        }
        Ok(())
    }

    fn resolve(&self, facts: &TaskFacts, _needs: &mut Needs) -> Result<Box<dyn LossTerm>, LossError> {
        teacher_index(self.kind(), 0, facts)?;
        let slices = (0..facts.teachers.len()).map(|m| Slice::resolve(self.kind(), m, facts)).collect::<Result<Vec<_>, _>>()?;
        let weights = match &self.subset_weights {
            Some(list) if list.len() != slices.len() => {
                return Err(LossError::bad(
                    self.kind(),
                    format!("subset_weights lists {} weights for {} teachers (one per subset)", list.len(), slices.len()),
                ));
            }
            Some(list) => list.iter().map(|&w| w as f32).collect(),
            None => tail_weights(&slices, facts.class_counts),
        };
        Ok(Box::new(SubsetKd { slices, weights, temperature: self.temperature as f32, multi_label: facts.multi_label }))
    }
}

/// One teacher's place in the student's label space.
struct Slice {
    teacher: usize,
    /// The student's class of each of the teacher's classes other than "other", in the teacher's
    /// column order, and those columns.
    classes: Vec<usize>,
    columns: Vec<usize>,
    /// With an "other" class: its column, and the student's classes outside the subset.
    other: Option<(usize, Vec<usize>)>,
}

impl Slice {
    fn resolve(term: &str, teacher: usize, facts: &TaskFacts) -> Result<Slice, LossError> {
        let names = &facts.teachers[teacher].class_names;
        let bad = |message: String| LossError::bad(term, format!("teacher {teacher} (classes {names:?}): {message}"));
        let (mut classes, mut columns, mut other_column) = (Vec::new(), Vec::new(), None);
        for (column, name) in names.iter().enumerate() {
            if name == OTHER && !facts.class_names.contains(name) {
                if other_column.replace(column).is_some() {
                    return Err(bad(format!("\"{OTHER}\" appears twice")));
                }
                continue;
            }
            let Some(class) = facts.class_names.iter().position(|c| c == name) else {
                return Err(bad(format!("\"{name}\" is not one of the student's classes {:?}", facts.class_names)));
            };
            if classes.contains(&class) {
                return Err(bad(format!("\"{name}\" appears twice")));
            }
            classes.push(class);
            columns.push(column);
        }
        if classes.is_empty() {
            return Err(bad("none of its classes is the student's".into()));
        }
        if other_column.is_some() && facts.multi_label {
            return Err(bad(format!("an \"{OTHER}\" class has no meaning for multi-label data")));
        }
        let other = other_column.map(|column| (column, (0..facts.num_classes).filter(|c| !classes.contains(c)).collect::<Vec<_>>()));
        if other.as_ref().is_some_and(|(_, rest)| rest.is_empty()) {
            return Err(bad(format!("has an \"{OTHER}\" class but covers every student class")));
        }
        Ok(Slice { teacher, classes, columns, other })
    }
}

/// `w_m ∝ 1 / sqrt(mean count of S_m)`, averaging 1 over the teachers; a subset whose classes
/// have no training sample at all counts like one with a single sample each.
fn tail_weights(slices: &[Slice], counts: &[usize]) -> Vec<f32> {
    let raw: Vec<f64> = slices
        .iter()
        .map(|slice| {
            let mean = slice.classes.iter().map(|&c| counts[c] as f64).sum::<f64>() / slice.classes.len() as f64;
            1.0 / mean.max(1.0).sqrt()
        })
        .collect();
    let average = raw.iter().sum::<f64>() / raw.len() as f64;
    raw.iter().map(|w| (w / average) as f32).collect()
}

struct SubsetKd {
    slices: Vec<Slice>,
    weights: Vec<f32>,
    temperature: f32,
    multi_label: bool,
}

/// The columns `columns` of `logits`.
fn columns(logits: &Tensor<2>, columns: &[usize]) -> Tensor<2> {
    let index = TensorData::new(columns.iter().map(|&c| c as i64).collect(), [columns.len()]);
    logits.clone().select(1, Tensor::<1, Int>::from_data(index, &logits.device()))
}

/// `T logsumexp(x / T)` per row, as a column; the row maximum is subtracted for stability.
fn tempered_logsumexp(x: Tensor<2>, temperature: f32) -> Tensor<2> {
    let x = x.div_scalar(temperature);
    let max = x.clone().max_dim(1).detach();
    ((x - max.clone()).exp().sum_dim(1).log() + max).mul_scalar(temperature)
}

impl LossTerm for SubsetKd {
    fn value(&self, ctx: &LossContext, at: &TermAt) -> Result<Tensor<1>, LossError> {
        let student = at.per_image(&ctx.student.logits);
        let terms = self.slices.iter().zip(&self.weights).map(|(slice, &weight)| {
            let teacher = at.per_image(&ctx.teachers[slice.teacher].logits);
            let (student_slice, teacher_slice) = match &slice.other {
                None => (columns(&student, &slice.classes), columns(&teacher, &slice.columns)),
                Some((other_column, rest)) => {
                    let pooled = tempered_logsumexp(columns(&student, rest), self.temperature);
                    let teacher_columns = [slice.columns.as_slice(), &[*other_column]].concat();
                    (Tensor::cat(vec![columns(&student, &slice.classes), pooled], 1), columns(&teacher, &teacher_columns))
                }
            };
            let kd = if self.multi_label {
                kd_bce(student_slice, teacher_slice, self.temperature)
            } else {
                kd_kl(student_slice, teacher_slice, self.temperature)
            };
            kd.mul_scalar(weight)
        });
        Ok(terms.reduce(|a, b| a + b).expect("resolve checked there is a teacher"))
    }
}

//! The shape of a loss term: its parameters ([`TermSpec`], one `[[loss]]` entry) resolve against
//! the task and teachers into a [`LossTerm`] that computes the term for a batch. A term in this
//! shape is one file under `terms/` plus its line in the `loss_spec!` registry (spec.rs).

use burn::prelude::*;

use crate::{LossContext, LossError, TaskFacts};

/// A term's config: what a `[[loss]]` entry of its `kind` holds (serde, unknown keys denied).
pub trait TermSpec {
    /// The `kind` it is configured and logged under.
    fn kind(&self) -> &'static str;
    /// Its weight in the objective's total.
    fn weight(&self) -> f64;
    /// Checks the parameters that do not depend on the data (the weight is checked for every term).
    fn validate(&self) -> Result<(), LossError> {
        Ok(())
    }
    /// Checks the term against the data and teachers and resolves it.
    fn resolve(&self, facts: &TaskFacts) -> Result<Box<dyn LossTerm>, LossError>;
}

/// A resolved term.
pub trait LossTerm: Send + Sync {
    /// The unweighted value on one batch.
    fn value(&self, ctx: &LossContext) -> Result<Tensor<1>, LossError>;
    /// Whether it reads the teachers' stage maps (which the teacher cache does not keep).
    fn reads_teacher_stages(&self) -> bool {
        false
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

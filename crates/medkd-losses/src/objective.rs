use burn::prelude::*;

use crate::classification::{bce_with_logits, cross_entropy, inverse_frequency_weights};
use crate::{ClassWeightRule, ClassWeights, Features, LossError, LossSpec, Targets};

/// What the loss terms see for one batch.
pub struct LossContext<'a> {
    pub student: &'a Features,
    pub targets: &'a Targets,
}

/// One term's unweighted value, for logging.
pub struct TermValue {
    pub name: String,
    pub value: Tensor<1>,
}

/// Facts about the training data that terms are resolved against.
pub struct TaskFacts<'a> {
    pub num_classes: usize,
    pub multi_label: bool,
    pub class_names: &'a [String],
    /// Per-class sample counts of the training split.
    pub class_counts: &'a [usize],
}

enum Term {
    CrossEntropy { class_weights: Option<Vec<f32>>, label_smoothing: f32 },
    Bce,
}

/// A resolved list of weighted loss terms: total = sum of weight x term.
pub struct Objective {
    terms: Vec<(String, f64, Term)>,
}

impl Objective {
    /// Validates every spec against the task and resolves data-dependent parameters
    /// (class weights), so a bad term fails before training starts.
    pub fn new(specs: &[LossSpec], facts: &TaskFacts) -> Result<Objective, LossError> {
        if specs.is_empty() {
            return Err(LossError::bad("loss", "the config declares no [[loss]] term"));
        }
        let mut terms = Vec::with_capacity(specs.len());
        for spec in specs {
            spec.validate()?;
            let name = spec.name();
            let term = match spec {
                LossSpec::CrossEntropy { label_smoothing, class_weights, .. } => {
                    if facts.multi_label {
                        return Err(LossError::Incompatible {
                            term: name.into(),
                            needs: "single-label targets".into(),
                            found: "the dataset is multi-label (use kind = \"bce\")".into(),
                        });
                    }
                    let class_weights = match class_weights {
                        ClassWeights::Rule(ClassWeightRule::None) => None,
                        ClassWeights::Rule(ClassWeightRule::InverseFrequency) => {
                            Some(inverse_frequency_weights(facts.class_counts, facts.class_names)?)
                        }
                        ClassWeights::Explicit(list) if list.len() != facts.num_classes => {
                            return Err(LossError::bad(
                                name,
                                format!("class_weights lists {} weights for {} classes", list.len(), facts.num_classes),
                            ));
                        }
                        ClassWeights::Explicit(list) => Some(list.iter().map(|&w| w as f32).collect()),
                    };
                    Term::CrossEntropy { class_weights, label_smoothing: *label_smoothing as f32 }
                }
                LossSpec::Bce { .. } => {
                    if !facts.multi_label {
                        return Err(LossError::Incompatible {
                            term: name.into(),
                            needs: "multi-label targets".into(),
                            found: "the dataset is single-label (use kind = \"cross_entropy\")".into(),
                        });
                    }
                    Term::Bce
                }
            };
            terms.push((name.to_string(), spec.weight(), term));
        }
        Ok(Objective { terms })
    }

    /// Names of the terms, in config order.
    pub fn term_names(&self) -> Vec<String> {
        self.terms.iter().map(|(name, _, _)| name.clone()).collect()
    }

    /// The weighted total and each term's unweighted value.
    pub fn compute(&self, ctx: &LossContext) -> (Tensor<1>, Vec<TermValue>) {
        let mut total: Option<Tensor<1>> = None;
        let mut values = Vec::with_capacity(self.terms.len());
        for (name, weight, term) in &self.terms {
            let value = match (term, ctx.targets) {
                (Term::CrossEntropy { class_weights, label_smoothing }, Targets::Classes(classes)) => cross_entropy(
                    ctx.student.logits.clone(),
                    classes,
                    class_weights.as_deref(),
                    *label_smoothing,
                ),
                (Term::Bce, Targets::MultiHot { values, num_labels }) => {
                    let device = ctx.student.logits.device();
                    let n = values.len() / num_labels;
                    let targets = Tensor::<2>::from_data(TensorData::new(values.clone(), [n, *num_labels]), &device);
                    bce_with_logits(ctx.student.logits.clone(), targets)
                }
                // Objective::new checked the task kind, and the loader yields targets of that kind.
                _ => unreachable!("loss term '{name}' got targets of the wrong kind"),
            };
            let weighted = value.clone().mul_scalar(*weight);
            total = Some(match total {
                Some(sum) => sum + weighted,
                None => weighted,
            });
            values.push(TermValue { name: name.clone(), value });
        }
        (total.expect("Objective::new rejects an empty term list"), values)
    }
}

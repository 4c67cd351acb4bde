use burn::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::classification::{bce_with_logits, cross_entropy, inverse_frequency_weights};
use crate::term::{LossTerm, teacher_index};
use crate::{
    ClassWeightRule, ClassWeights, ConvRegressor, Features, LossError, LossSpec, ProjectionHead, Targets, TeacherMix, TeacherRule,
    attention_transfer, channel_gram_rmse, hint_mse, kd_bce, kd_kl, kd_rotated, normal_rows, rkd_angle, similarity_kd,
};
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
    pub class_names: &'a [String],
    /// Per-class sample counts of the training split.
    pub class_counts: &'a [usize],
    /// What the student's features hold ([`medkd_models::Model::layout`]).
    pub student: &'a FeatureLayout,
    /// The same for each teacher; its length is the number of teachers.
    pub teachers: &'a [FeatureLayout],
    /// Seeds the random teacher choice of `teachers = "random"`.
    pub seed: u64,
}

enum Term {
    CrossEntropy {
        class_weights: Option<Vec<f32>>,
        label_smoothing: f32,
    },
    Bce,
    Kd {
        temperature: f32,
        mix: Mix,
    },
    /// A term in the [`crate::term::TermSpec`] shape.
    Shaped(Box<dyn LossTerm>),
    RkdAngle {
        teacher: usize,
        chunk: usize,
    },
    Attention {
        teacher: usize,
        stages: Vec<usize>,
    },
    Hint {
        map: MapPair,
    },
    ChannelGram {
        map: MapPair,
    },
    KdRotated {
        teacher: usize,
        temperature: f32,
        ratio: f64,
    },
    Sskd {
        head: usize,
        temperature: f32,
        ratio: f64,
    },
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

/// A student stage map, regressed by adapter `adapter` when channels differ, and the teacher's.
struct MapPair {
    teacher: usize,
    stage: usize,
    adapter: Option<usize>,
}

/// A resolved [`TeacherMix`]: normalized weights, or one random teacher per step or epoch.
enum Mix {
    Weighted(Vec<f32>),
    Random { per_epoch: bool },
}

/// A resolved list of weighted loss terms: total = sum of weight x term.
pub struct Objective {
    terms: Vec<(String, f64, Term)>,
    /// `(student channels, teacher channels)` of each trainable regressor the terms need.
    adapters: Vec<(usize, usize)>,
    heads: Vec<HeadSpec>,
    multi_label: bool,
    seed: u64,
}

impl Objective {
    /// Validates every spec against the task and teachers and resolves data-dependent
    /// parameters (class weights), so a bad term fails before training starts.
    pub fn new(specs: &[LossSpec], facts: &TaskFacts) -> Result<Objective, LossError> {
        if specs.is_empty() {
            return Err(LossError::bad("loss", "the config declares no [[loss]] term"));
        }
        let mut terms: Vec<(String, f64, Term)> = Vec::with_capacity(specs.len());
        let mut adapters = Vec::new();
        let mut heads = Vec::new();
        for spec in specs {
            spec.validate()?;
            let term = resolve(spec, facts, &mut adapters, &mut heads)?;
            // Repeated kinds are logged apart: kd, kd_2, ...
            let repeats = specs.iter().take(terms.len()).filter(|s| s.name() == spec.name()).count();
            let name = match repeats {
                0 => spec.name().to_string(),
                n => format!("{}_{}", spec.name(), n + 1),
            };
            terms.push((name, spec.weight(), term));
        }
        Ok(Objective { terms, adapters, heads, multi_label: facts.multi_label, seed: facts.seed })
    }

    /// Whether the batch goes through student and teachers as four rotated views per image
    /// ([`crate::with_rotations`]): on when a `kd_rotated` or `sskd` term is present. Then the
    /// classification and `kd` terms read the normal views, `kd_rotated` and `sskd` the
    /// rotations, and the embedding and feature-map terms all views (as SSD-KD does).
    pub fn rotated_views(&self) -> bool {
        self.terms.iter().any(|(_, _, term)| matches!(term, Term::KdRotated { .. } | Term::Sskd { .. }))
    }

    /// The projection-head pairs to create and pass back in [`LossContext`].
    pub fn projection_heads(&self) -> &[HeadSpec] {
        &self.heads
    }

    /// Whether a term reads the teachers' stage maps (and not only logits and embeddings).
    pub fn reads_teacher_stages(&self) -> bool {
        self.terms.iter().any(|(_, _, term)| match term {
            Term::Attention { .. } | Term::Hint { .. } | Term::ChannelGram { .. } => true,
            Term::Shaped(term) => term.reads_teacher_stages(),
            _ => false,
        })
    }

    /// `(in, out)` channels of the regressors to create, train with the student and pass back
    /// in [`LossContext::adapters`].
    pub fn adapter_shapes(&self) -> &[(usize, usize)] {
        &self.adapters
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
            let value = self.term_value(index, name, term, ctx)?;
            let weighted = value.clone().mul_scalar(*weight);
            total = Some(match total {
                Some(sum) => sum + weighted,
                None => weighted,
            });
            values.push(TermValue { name: name.clone(), value });
        }
        Ok((total.expect("Objective::new rejects an empty term list"), values))
    }

    fn term_value(&self, index: usize, name: &str, term: &Term, ctx: &LossContext) -> Result<Tensor<1>, LossError> {
        let student = ctx.student;
        let teacher = |i: usize| &ctx.teachers[i];
        // With rotated views, the per-image terms read the normal (as loaded) views.
        let per_image = |logits: &Tensor<2>| if self.rotated_views() { normal_rows(logits.clone()) } else { logits.clone() };
        Ok(match (term, ctx.targets) {
            (Term::CrossEntropy { class_weights, label_smoothing }, Targets::Classes(classes)) => {
                cross_entropy(per_image(&student.logits), classes, class_weights.as_deref(), *label_smoothing)
            }
            (Term::Bce, Targets::MultiHot { values, num_labels }) => {
                let n = values.len() / num_labels;
                let targets = Tensor::<2>::from_data(TensorData::new(values.clone(), [n, *num_labels]), &student.logits.device());
                bce_with_logits(per_image(&student.logits), targets)
            }
            (Term::CrossEntropy { .. } | Term::Bce, _) => {
                unreachable!("Objective::new checked the task kind, and the loader yields targets of that kind")
            }
            (Term::Kd { temperature, mix }, _) => {
                let target = match mix {
                    Mix::Weighted(weights) => weights
                        .iter()
                        .zip(ctx.teachers)
                        .map(|(w, t)| per_image(&t.logits).mul_scalar(*w))
                        .reduce(|a, b| a + b)
                        .expect("Objective::new checked there is a teacher"),
                    Mix::Random { per_epoch } => {
                        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
                        // Streams: steps from 0 up, epochs from the top, so the two never share one.
                        rng.set_stream(if *per_epoch { u64::MAX - ctx.epoch } else { ctx.step });
                        rng.set_word_pos(index as u128);
                        per_image(&teacher(rng.random_range(0..ctx.teachers.len())).logits)
                    }
                };
                if self.multi_label {
                    kd_bce(per_image(&student.logits), target, *temperature)
                } else {
                    kd_kl(per_image(&student.logits), target, *temperature)
                }
            }
            (Term::Shaped(term), _) => term.value(ctx)?,
            (Term::RkdAngle { teacher: t, chunk }, _) => rkd_angle(student.pooled.clone(), teacher(*t).pooled.clone(), *chunk),
            (Term::Attention { teacher: t, stages }, _) => {
                let mut sum: Option<Tensor<1>> = None;
                for &stage in stages {
                    let (s, t) = (student.spatial(stage), teacher(*t).spatial(stage));
                    if s.dims()[2..] != t.dims()[2..] {
                        return Err(LossError::Incompatible {
                            term: name.into(),
                            needs: format!("equal spatial sizes at stage {stage}"),
                            found: format!("student {:?}, teacher {:?}", s.dims(), t.dims()),
                        });
                    }
                    let value = attention_transfer(s.clone(), t.clone());
                    sum = Some(match sum {
                        Some(total) => total + value,
                        None => value,
                    });
                }
                sum.expect("validate() rejects an empty stage list")
            }
            (Term::Hint { map }, _) => {
                let (s, t) = map_pair(name, map, ctx)?;
                hint_mse(s, t)
            }
            (Term::ChannelGram { map }, _) => {
                let (s, t) = map_pair(name, map, ctx)?;
                channel_gram_rmse(s, t)
            }
            (Term::KdRotated { teacher: t, temperature, ratio }, Targets::Classes(classes)) => {
                kd_rotated(student.logits.clone(), teacher(*t).logits.clone(), classes, *temperature, *ratio)
            }
            (Term::KdRotated { .. }, _) => unreachable!("Objective::new checked the task is single-label"),
            (Term::Sskd { head, temperature, ratio }, _) => {
                let spec = &self.heads[*head];
                let student_projected = ctx.student_heads[*head].forward(student.pooled.clone());
                let teacher_projected = ctx.teacher_heads[*head].forward(teacher(spec.teacher).pooled.clone());
                similarity_kd(student_projected, teacher_projected, *temperature, *ratio)
            }
        })
    }
}

/// The (regressed) student map and the teacher map of a `hint`/`channel_gram` term, which must
/// have equal shapes.
fn map_pair(name: &str, map: &MapPair, ctx: &LossContext) -> Result<(Tensor<4>, Tensor<4>), LossError> {
    let student = ctx.student.spatial(map.stage).clone();
    let student = match map.adapter {
        Some(index) => ctx.adapters[index].forward(student),
        None => student,
    };
    let teacher = ctx.teachers[map.teacher].spatial(map.stage).clone();
    if student.dims() != teacher.dims() {
        return Err(LossError::Incompatible {
            term: name.into(),
            needs: format!("equal student and teacher map shapes at stage {}", map.stage),
            found: format!("student {:?} (after its regressor), teacher {:?}", student.dims(), teacher.dims()),
        });
    }
    Ok((student, teacher))
}

/// The student's and the teacher's channels of spatial map `index` (the config's `key`), or an
/// error naming the term when either model's map there is not a C x H x W map (a ViT's tokens).
fn spatial_channels(term: &str, key: &str, index: usize, facts: &TaskFacts, teacher: usize) -> Result<(usize, usize), LossError> {
    let channels = |who: &str, layout: &FeatureLayout| {
        layout.spatial_channels(index).map_err(|found| LossError::Incompatible {
            term: term.into(),
            needs: format!("spatial stage maps at `{key}` {index}"),
            found: format!("the {who}'s {found}"),
        })
    };
    Ok((channels("student", facts.student)?, channels(&format!("teacher {teacher}"), &facts.teachers[teacher])?))
}

/// Checks one spec against the task and teachers and resolves it into a [`Term`], adding the
/// regressors it needs to `adapters`.
fn resolve(spec: &LossSpec, facts: &TaskFacts, adapters: &mut Vec<(usize, usize)>, heads: &mut Vec<HeadSpec>) -> Result<Term, LossError> {
    if let Some(spec) = spec.term_spec() {
        return Ok(Term::Shaped(spec.resolve(facts)?));
    }
    let name = spec.name();
    let num_teachers = facts.teachers.len();
    let needs_teacher = |index: usize| teacher_index(name, index, facts);
    Ok(match spec {
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
        LossSpec::Kd { temperature, teachers, .. } => {
            needs_teacher(0)?;
            let mix = match teachers {
                TeacherMix::Rule(TeacherRule::Mean) => Mix::Weighted(vec![1.0 / num_teachers as f32; num_teachers]),
                TeacherMix::Rule(TeacherRule::Random) => Mix::Random { per_epoch: false },
                TeacherMix::Rule(TeacherRule::RandomEpoch) => Mix::Random { per_epoch: true },
                TeacherMix::Weights(list) if list.len() != num_teachers => {
                    return Err(LossError::bad(name, format!("teachers lists {} weights for {num_teachers} teachers", list.len())));
                }
                TeacherMix::Weights(list) => {
                    let sum: f64 = list.iter().sum();
                    Mix::Weighted(list.iter().map(|w| (w / sum) as f32).collect())
                }
            };
            Term::Kd { temperature: *temperature as f32, mix }
        }
        LossSpec::RkdAngle { teacher, chunk, .. } => Term::RkdAngle { teacher: needs_teacher(*teacher)?, chunk: *chunk },
        LossSpec::Attention { teacher, stages, .. } => {
            let teacher = needs_teacher(*teacher)?;
            for &stage in stages {
                spatial_channels(name, "stages", stage, facts, teacher)?;
            }
            Term::Attention { teacher, stages: stages.clone() }
        }
        LossSpec::Hint { teacher, stage, .. } | LossSpec::ChannelGram { teacher, stage, .. } => {
            let teacher = needs_teacher(*teacher)?;
            let (from, to) = spatial_channels(name, "stage", *stage, facts, teacher)?;
            let adapter = (from != to).then(|| {
                adapters.push((from, to));
                adapters.len() - 1
            });
            let map = MapPair { teacher, stage: *stage, adapter };
            match spec {
                LossSpec::Hint { .. } => Term::Hint { map },
                _ => Term::ChannelGram { map },
            }
        }
        LossSpec::KdRotated { temperature, teacher, ratio, .. } => {
            if facts.multi_label {
                return Err(LossError::Incompatible {
                    term: name.into(),
                    needs: "single-label targets (its ranking needs each view's class)".into(),
                    found: "the dataset is multi-label".into(),
                });
            }
            Term::KdRotated { teacher: needs_teacher(*teacher)?, temperature: *temperature as f32, ratio: *ratio }
        }
        LossSpec::Sskd { temperature, ratio, teacher, head_epochs, head_lr, head, .. } => {
            let teacher = needs_teacher(*teacher)?;
            heads.push(HeadSpec {
                teacher,
                student_dim: facts.student.pooled_dim,
                teacher_dim: facts.teachers[teacher].pooled_dim,
                epochs: *head_epochs,
                lr: *head_lr,
                trained: head.clone(),
            });
            Term::Sskd { head: heads.len() - 1, temperature: *temperature as f32, ratio: *ratio }
        }
        _ => unreachable!("terms in the TermSpec shape resolved above"),
    })
}

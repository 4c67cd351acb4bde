//! Synthetic label noise for robustness experiments (RoS-KD): the training split's labels are
//! corrupted, seeded, while validation and test keep their clean labels.
//!
//! Each rule flips an exact count, `round(rate x N_c)` samples of class `c` chosen at random, so
//! a run's realized noise rate is the configured one rather than a draw around it.

use std::path::Path;
use std::sync::Arc;

use image::DynamicImage;
use rand::SeedableRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::{DataError, DatasetInfo, ImageDataset, Target, Task};

/// `[data.label_noise]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LabelNoiseConfig {
    /// A fraction `rate` of each class moves to a uniformly drawn other class.
    Symmetric {
        rate: f64,
        #[serde(default)]
        seed: u64,
    },
    /// A fraction `rate` of each listed source class moves to its target class, e.g.
    /// `pairs = [["mel", "nv"], ["nv", "mel"]]` for clinically confusable classes.
    Asymmetric {
        rate: f64,
        pairs: Vec<[String; 2]>,
        #[serde(default)]
        seed: u64,
    },
    /// Class `c` loses a fraction `rates[c]` to uniformly drawn other classes.
    PerClass {
        rates: Vec<f64>,
        #[serde(default)]
        seed: u64,
    },
}

/// One corrupted training label, for the run folder's `label_noise.csv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlippedLabel {
    /// Index in the training split.
    pub index: usize,
    pub id: String,
    pub clean: usize,
    pub noisy: usize,
}

impl LabelNoiseConfig {
    fn seed(&self) -> u64 {
        match self {
            LabelNoiseConfig::Symmetric { seed, .. }
            | LabelNoiseConfig::Asymmetric { seed, .. }
            | LabelNoiseConfig::PerClass { seed, .. } => *seed,
        }
    }

    /// Per source class: the fraction to flip and where to (`None`: any other class).
    fn plan(&self, class_names: &[String]) -> Result<Vec<(f64, Option<usize>)>, DataError> {
        let k = class_names.len();
        let check_rate = |key: &str, rate: f64| {
            if (0.0..=1.0).contains(&rate) {
                Ok(rate)
            } else {
                Err(DataError::config(format!("`data.label_noise.{key}` must be in [0, 1], got {rate}")))
            }
        };
        let class = |name: &str| {
            class_names.iter().position(|c| c == name).ok_or_else(|| {
                DataError::config(format!("`data.label_noise.pairs`: unknown class `{name}`; expected one of {class_names:?}"))
            })
        };
        match self {
            LabelNoiseConfig::Symmetric { rate, .. } => Ok(vec![(check_rate("rate", *rate)?, None); k]),
            LabelNoiseConfig::PerClass { rates, .. } => {
                if rates.len() != k {
                    return Err(DataError::config(format!("`data.label_noise.rates` lists {} rates for {k} classes", rates.len())));
                }
                rates.iter().map(|&r| Ok((check_rate("rates", r)?, None))).collect()
            }
            LabelNoiseConfig::Asymmetric { rate, pairs, .. } => {
                let rate = check_rate("rate", *rate)?;
                let mut plan = vec![(0.0, None); k];
                for [from, to] in pairs {
                    let (from, to) = (class(from)?, class(to)?);
                    if from == to || plan[from].1.is_some() {
                        return Err(DataError::config(format!(
                            "`data.label_noise.pairs`: each source class needs one target other than itself; `{}` is listed twice or maps to itself",
                            class_names[from]
                        )));
                    }
                    plan[from] = (rate, Some(to));
                }
                Ok(plan)
            }
        }
    }
}

/// Writes `index,image,clean,noisy` (class indices) for each flipped sample.
pub fn write_flipped_csv(rows: &[FlippedLabel], path: &Path) -> Result<(), DataError> {
    let io = |e: csv::Error| DataError::io(path, std::io::Error::other(e));
    let mut writer = csv::Writer::from_path(path).map_err(io)?;
    writer.write_record(["index", "image", "clean", "noisy"]).map_err(io)?;
    for row in rows {
        writer.write_record([row.index.to_string(), row.id.clone(), row.clean.to_string(), row.noisy.to_string()]).map_err(io)?;
    }
    writer.flush().map_err(|e| DataError::io(path, e))
}

/// The training split with corrupted labels; images and ids are the base dataset's.
pub struct NoisyLabels {
    base: Arc<dyn ImageDataset>,
    targets: Vec<Target>,
}

impl NoisyLabels {
    /// Applies `config` to `train` (single-label tasks only); returns the noisy view and the list
    /// of flipped samples.
    pub fn new(train: Arc<dyn ImageDataset>, config: &LabelNoiseConfig) -> Result<(NoisyLabels, Vec<FlippedLabel>), DataError> {
        let info: &DatasetInfo = train.info();
        if info.task == Task::MultiLabel {
            return Err(DataError::config("`data.label_noise` needs single-label data; this dataset is multi-label"));
        }
        if info.task == Task::Localization {
            return Err(DataError::config("`data.label_noise` needs class labels; this dataset has box targets (task = localization)"));
        }
        let k = info.num_classes();
        let plan = config.plan(&info.class_names)?;
        let mut labels: Vec<usize> = (0..train.len())
            .map(|i| match train.target(i) {
                Target::Class(c) => Ok(c),
                // E.g. an `Unlabelled` view: its info still names the base dataset's task.
                other => Err(DataError::config(format!(
                    "`data.label_noise` needs a class label per sample; sample {i} ({}) has {other:?}",
                    train.id(i)
                ))),
            })
            .collect::<Result<_, _>>()?;
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed());
        let mut flipped = Vec::new();
        for (class, &(rate, target)) in plan.iter().enumerate() {
            let mut members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
            members.shuffle(&mut rng);
            let count = (rate * members.len() as f64).round() as usize;
            let others: Vec<usize> = (0..k).filter(|&c| c != class).collect();
            for &index in &members[..count] {
                let noisy = match target {
                    Some(to) => to,
                    None => *others.choose(&mut rng).expect("a classification task has at least 2 classes"),
                };
                flipped.push(FlippedLabel { index, id: train.id(index), clean: class, noisy });
            }
        }
        for flip in &flipped {
            labels[flip.index] = flip.noisy;
        }
        flipped.sort_by_key(|f| f.index);
        let targets = labels.into_iter().map(Target::Class).collect();
        Ok((NoisyLabels { base: train, targets }, flipped))
    }
}

impl ImageDataset for NoisyLabels {
    fn info(&self) -> &DatasetInfo {
        self.base.info()
    }
    fn len(&self) -> usize {
        self.targets.len()
    }
    fn image(&self, index: usize) -> Result<DynamicImage, DataError> {
        self.base.image(index)
    }
    fn target(&self, index: usize) -> Target {
        self.targets[index].clone()
    }
    fn id(&self, index: usize) -> String {
        self.base.id(index)
    }
}

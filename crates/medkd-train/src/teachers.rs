//! Frozen teachers for distillation: loaded from a finished run folder or a weights file,
//! checked against the student's data, and run without autodiff.

use std::path::Path;

use burn::prelude::*;
use medkd_data::{DatasetInfo, OTHER_CLASS};
use medkd_losses::{Features, TeacherFacts};
use medkd_models::{Model, ModelSpec, load_weights};

use crate::TrainError;
use crate::checkpoint::best_weights;
use crate::config::{RunConfig, TeacherConfig};
use crate::run_dir::RunDir;
use crate::summary::Summary;

pub struct Teacher {
    model: Model,
    pub spec: ModelSpec,
    /// Its logits' classes: the student's, or a subset of them (and "other") for `subset_kd`.
    pub class_names: Vec<String>,
    /// Where it came from, for errors and summary.json.
    pub source: String,
}

impl Teacher {
    /// A teacher from a model built in code (tests, benchmarks), predicting `class_names`.
    pub fn new(spec: ModelSpec, model: Model, class_names: Vec<String>) -> Teacher {
        Teacher { source: format!("{} built in code", spec.arch), model, spec, class_names }
    }

    /// The teacher's outputs on the student's batch, with no graph recorded: its tensors enter the
    /// student's loss as constants.
    pub fn forward(&self, images: Tensor<4>) -> Features {
        self.model.forward(images.without_autodiff())
    }

    /// What its loss terms may know of it.
    pub fn facts(&self) -> TeacherFacts {
        TeacherFacts { layout: self.model.layout(), class_names: self.class_names.clone() }
    }
}

/// Every teacher's logits and pooled embedding per training sample, computed the first time a
/// sample is seen and reused afterwards. Valid only while a sample's training input never
/// changes (no random train transform) and no loss term reads the teachers' stage maps, which
/// are not kept: the trainer checks both.
pub struct TeacherCache {
    /// `[teacher][sample]`: the logits followed by the pooled embedding.
    rows: Vec<Vec<Option<Vec<f32>>>>,
    /// `(classes, embedding width)` per teacher.
    widths: Vec<(usize, usize)>,
}

impl TeacherCache {
    pub fn new(teachers: &[Teacher], num_samples: usize) -> Self {
        TeacherCache {
            rows: vec![vec![None; num_samples]; teachers.len()],
            widths: teachers.iter().map(|t| (t.spec.num_classes, t.model.feature_dim())).collect(),
        }
    }

    /// The teachers' outputs for the samples `indices` (the batch `images`): from the cache when
    /// every sample is there, else computed and stored. Cached outputs have no stage maps.
    pub fn outputs(&mut self, teachers: &[Teacher], images: &Tensor<4>, indices: &[usize]) -> Vec<Features> {
        let cached = self.rows.iter().all(|rows| indices.iter().all(|&i| rows[i].is_some()));
        if !cached {
            let outputs: Vec<Features> = teachers.iter().map(|t| t.forward(images.clone())).collect();
            for (rows, output) in self.rows.iter_mut().zip(&outputs) {
                let logits = to_rows(&output.logits);
                let pooled = to_rows(&output.pooled);
                for (k, &i) in indices.iter().enumerate() {
                    rows[i] = Some([logits[k].as_slice(), pooled[k].as_slice()].concat());
                }
            }
            return outputs;
        }
        let device = images.device().without_autodiff();
        self.rows
            .iter()
            .zip(&self.widths)
            .map(|(rows, &(classes, width))| {
                let gather = |range: std::ops::Range<usize>| {
                    let values: Vec<f32> =
                        indices.iter().flat_map(|&i| rows[i].as_ref().expect("checked above")[range.clone()].iter().copied()).collect();
                    Tensor::<2>::from_data(TensorData::new(values, [indices.len(), range.len()]), &device)
                };
                Features { maps: Vec::new(), logits: gather(0..classes), pooled: gather(classes..classes + width) }
            })
            .collect()
    }
}

/// A `[N, W]` tensor's rows on the host.
fn to_rows(tensor: &Tensor<2>) -> Vec<Vec<f32>> {
    let [_, width] = tensor.dims();
    let values: Vec<f32> = tensor.clone().into_data().try_to_vec::<f32>().expect("model outputs are f32");
    values.chunks(width).map(<[f32]>::to_vec).collect()
}

/// Loads every `[[teacher]]` on `device` (a device without autodiff, so BatchNorm uses running
/// statistics) and checks that each predicts the dataset's classes from inputs of the
/// `student`'s channels. The teachers see the student's input size (a ViT teacher's position
/// embeddings are resampled to it).
pub fn load_teachers(
    configs: &[TeacherConfig],
    info: &DatasetInfo,
    student: &ModelSpec,
    device: &Device,
) -> Result<Vec<Teacher>, TrainError> {
    let (in_channels, image_size) = (student.in_channels, student.image_size);
    configs
        .iter()
        .enumerate()
        .map(|(index, config)| {
            let error = |message: String| TrainError::Config(format!("`teacher[{index}]`: {message}"));
            match config {
                TeacherConfig { run: Some(run), .. } => from_run(run, info, in_channels, image_size, device).map_err(error),
                TeacherConfig { arch: Some(arch), weights: Some(weights), small_input, .. } => {
                    let spec =
                        ModelSpec { in_channels, small_input: *small_input, image_size, ..ModelSpec::new(*arch, info.num_classes()) };
                    let model = load_weights(Model::new(&spec, device)?, weights).map_err(|e| error(e.to_string()))?;
                    Ok(Teacher { model, source: format!("{arch} from {}", weights.display()), spec, class_names: info.class_names.clone() })
                }
                _ => Err(error("give either `run` or both `arch` and `weights`".into())),
            }
        })
        .collect()
}

/// A finished run: its config gives the architecture, its summary.json the class names and
/// input channels, its best checkpoint the weights. Its classes must be the dataset's or some of
/// them (and "other"): the loss terms check which they accept.
fn from_run(
    path: &Path,
    info: &DatasetInfo,
    in_channels: usize,
    image_size: Option<[usize; 2]>,
    device: &Device,
) -> Result<Teacher, String> {
    let run = RunDir::open(path).map_err(|e| e.to_string())?;
    let config = RunConfig::load(&run.config_path(), &[]).map_err(|e| e.to_string())?;
    let summary_path = run.summary_path();
    if !summary_path.is_file() {
        return Err(format!("{} is missing: is the teacher run finished?", summary_path.display()));
    }
    let summary = Summary::read(&summary_path).map_err(|e| e.to_string())?;
    let class_names = summary.class_names;
    if let Some(unknown) = class_names.iter().find(|c| *c != OTHER_CLASS && !info.class_names.contains(c)) {
        return Err(format!(
            "run {} predicts classes {class_names:?}, but \"{unknown}\" is not one of the dataset's classes {:?}",
            path.display(),
            info.class_names
        ));
    }
    if summary.input_channels != in_channels {
        return Err(format!(
            "run {} takes {}-channel input, but the student's data has {in_channels} channels",
            path.display(),
            summary.input_channels
        ));
    }
    let spec = ModelSpec {
        in_channels,
        small_input: config.model.small_input,
        image_size,
        ..ModelSpec::new(config.model.arch, class_names.len())
    };
    let model = Model::new(&spec, device).map_err(|e| e.to_string())?;
    let model = load_weights(model, &best_weights(&run).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    Ok(Teacher { model, source: format!("{} from run {}", spec.arch, path.display()), spec, class_names })
}

#[cfg(test)]
mod tests {
    use burn::tensor::Distribution;
    use medkd_models::Arch;

    use super::*;

    #[test]
    fn cached_outputs_equal_computed_ones_and_partial_batches_are_recomputed() {
        let device = medkd_models::test_device();
        let spec = ModelSpec { small_input: true, ..ModelSpec::new(Arch::ResNet18, 3) };
        let teacher = |seed: u64| {
            device.seed(seed);
            Teacher::new(spec.clone(), Model::new(&spec, &device).unwrap(), vec!["a".into(), "b".into(), "c".into()])
        };
        let teachers = [teacher(1), teacher(2)];
        let images = Tensor::<4>::random([4, 3, 16, 16], Distribution::Normal(0.0, 1.0), &device);
        let mut cache = TeacherCache::new(&teachers, 10);
        let values = |t: &Tensor<2>| t.clone().into_data().try_to_vec::<f32>().unwrap();

        let computed = cache.outputs(&teachers, &images, &[7, 2, 5, 0]);
        assert_eq!(computed[0].maps.len(), 4, "a first sight runs the teachers");
        let cached = cache.outputs(&teachers, &images, &[7, 2, 5, 0]);
        assert!(cached[0].maps.is_empty(), "a second sight comes from the cache");
        for (c, f) in cached.iter().zip(&computed) {
            assert_eq!(values(&c.logits), values(&f.logits));
            assert_eq!(values(&c.pooled), values(&f.pooled));
        }
        // Rows come back in the batch's order.
        let reordered = cache.outputs(&teachers, &images.clone().select(0, Tensor::from_data([2, 0], &device)), &[5, 7]);
        assert_eq!(values(&reordered[1].logits)[..3], values(&computed[1].logits)[6..9]);
        // One unseen sample: the whole batch is recomputed.
        assert_eq!(cache.outputs(&teachers, &images, &[7, 2, 5, 9])[0].maps.len(), 4);
    }
}

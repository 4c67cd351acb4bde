//! Frozen teachers for distillation: loaded from a finished run folder or a weights file,
//! checked against the student's data, and run without autodiff.

use std::path::Path;

use burn::prelude::*;
use medkd_data::DatasetInfo;
use medkd_losses::Features;
use medkd_models::{Model, ModelSpec, load_weights};
use serde_json::Value;

use crate::config::{RunConfig, TeacherConfig};
use crate::run_dir::RunDir;
use crate::TrainError;

pub struct Teacher {
    model: Model,
    /// Where it came from, for errors and summary.json.
    pub source: String,
}

impl Teacher {
    /// The teacher's outputs on the student's batch, with no graph recorded: its tensors enter the
    /// student's loss as constants.
    pub fn forward(&self, images: Tensor<4>) -> Features {
        self.model.forward(images.without_autodiff())
    }

    pub fn stage_channels(&self) -> Vec<usize> {
        self.model.stage_channels()
    }
}

/// Loads every `[[teacher]]` on `device` (a device without autodiff, so BatchNorm uses running
/// statistics) and checks that each predicts the dataset's classes from inputs of its channels.
pub fn load_teachers(
    configs: &[TeacherConfig],
    info: &DatasetInfo,
    in_channels: usize,
    device: &Device,
) -> Result<Vec<Teacher>, TrainError> {
    configs
        .iter()
        .enumerate()
        .map(|(index, config)| {
            let error = |message: String| TrainError::Config(format!("`teacher[{index}]`: {message}"));
            match config {
                TeacherConfig { run: Some(run), .. } => from_run(run, info, in_channels, device).map_err(error),
                TeacherConfig { arch: Some(arch), weights: Some(weights), small_input, .. } => {
                    let spec = ModelSpec { arch: *arch, num_classes: info.num_classes(), in_channels, small_input: *small_input };
                    let model = load_weights(Model::new(&spec, device)?, weights).map_err(|e| error(e.to_string()))?;
                    Ok(Teacher { model, source: format!("{arch} from {}", weights.display()) })
                }
                _ => Err(error("give either `run` or both `arch` and `weights`".into())),
            }
        })
        .collect()
}

/// A finished run: its config gives the architecture, its summary.json the class names and
/// input channels, its best checkpoint the weights.
fn from_run(path: &Path, info: &DatasetInfo, in_channels: usize, device: &Device) -> Result<Teacher, String> {
    let run = RunDir::open(path).map_err(|e| e.to_string())?;
    let config = RunConfig::load(&run.config_path(), &[]).map_err(|e| e.to_string())?;
    let summary_path = run.summary_path();
    let summary: Value = std::fs::read_to_string(&summary_path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .ok_or_else(|| format!("{} is missing or unreadable: is the teacher run finished?", summary_path.display()))?;
    let class_names: Vec<String> = serde_json::from_value(summary["class_names"].clone())
        .map_err(|_| format!("{} has no class_names list", summary_path.display()))?;
    if class_names != info.class_names {
        return Err(format!(
            "run {} predicts classes {class_names:?}, but the dataset's classes are {:?}",
            path.display(),
            info.class_names
        ));
    }
    let teacher_channels = summary["input_channels"].as_u64().unwrap_or(0) as usize;
    if teacher_channels != in_channels {
        return Err(format!(
            "run {} takes {teacher_channels}-channel input, but the student's data has {in_channels} channels",
            path.display()
        ));
    }
    let spec = ModelSpec { arch: config.model.arch, num_classes: class_names.len(), in_channels, small_input: config.model.small_input };
    let model = Model::new(&spec, device).map_err(|e| e.to_string())?;
    let model = load_weights(model, &run.checkpoint("best", "safetensors")).map_err(|e| e.to_string())?;
    Ok(Teacher { model, source: format!("{} from run {}", spec.arch, path.display()) })
}

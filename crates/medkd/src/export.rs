//! `medkd export`: a run's kept weights as files other runtimes read (ONNX, or torchvision's
//! safetensors), each with a `model.json` that says everything needed to use them: input size
//! and channels, value range, normalization, classes, task, temperature and outputs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use medkd_data::{Normalization, SplitName, Target, Task, TransformSpec};
use medkd_models::{Activation, Arch, OnnxIo, WeightPrecision, save_weights_with_metadata};
use medkd_train::evaluate::submission_id;
use medkd_train::run_dir::write_atomic;
use medkd_train::{RunSetup, Summary, parse_split};
use safetensors::{Dtype, tensor::TensorView};
use serde::Serialize;

use crate::commands::open_run;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// An ONNX graph (opset 17) with the normalization and the temperature inside.
    Onnx,
    /// The weights under torchvision's (the EfficientNet-Lite checkpoint's, a ViT's timm) names.
    Torchvision,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Weights {
    Float32,
    /// Conv and linear weights as int8 per output channel (a quarter of the file), dequantized
    /// inside the graph; BatchNorm, biases and activations stay float32.
    Int8,
}

impl Weights {
    fn precision(self) -> WeightPrecision {
        match self {
            Weights::Float32 => WeightPrecision::Float32,
            Weights::Int8 => WeightPrecision::Int8,
        }
    }

    /// What model.json says of them.
    fn description(self) -> &'static str {
        match self {
            Weights::Float32 => "float32",
            Weights::Int8 => {
                "int8 per output channel (symmetric, scale = max |w| / 127) for conv and linear weights, dequantized in the graph; BatchNorm, biases and activations float32"
            }
        }
    }
}

/// `model.json`, also embedded in the exported file's metadata under the key `medkd`.
#[derive(Serialize)]
struct Description {
    format: ExportFormat,
    file: &'static str,
    arch: Arch,
    /// The 3x3 stride-1 stem for small images (torchvision's models need the same change).
    small_input: bool,
    num_classes: usize,
    class_names: Vec<String>,
    task: Task,
    input: Input,
    normalization: Normalization,
    /// Divides the logits before the softmax: `medkd predict`'s probabilities (fitted on val).
    temperature: Option<f64>,
    outputs: Vec<Output>,
    weights: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    onnx_opset: Option<i64>,
    source: Source,
}

#[derive(Serialize)]
struct Input {
    /// `[channels, height, width]`; the batch size is free.
    shape: [usize; 3],
    channels: &'static str,
    values: &'static str,
    /// The run's eval transforms, applied before (resize, crop): config.toml's `eval_transforms`.
    eval_transforms: Vec<TransformSpec>,
    normalized_inside: bool,
}

#[derive(Serialize)]
struct Output {
    name: &'static str,
    shape: [&'static str; 2],
    meaning: String,
}

#[derive(Serialize)]
struct Source {
    run: PathBuf,
    best_epoch: Option<usize>,
    medkd: serde_json::Value,
}

/// `inputs`: a split to write as the model takes it, and at most how many of its images.
pub fn export(
    run_path: &Path,
    format: ExportFormat,
    weights: Weights,
    out: Option<&Path>,
    inputs: Option<(&str, Option<usize>)>,
) -> Result<()> {
    if weights == Weights::Int8 && format != ExportFormat::Onnx {
        bail!("int8 weights are written into ONNX graphs only: use --format onnx");
    }
    let (config, run, setup) = open_run(run_path)?;
    let summary = Summary::read(&run.summary_path()).with_context(|| format!("{}: export needs a finished run", run_path.display()))?;
    if setup.info.task == Task::Localization {
        bail!("{}: export supports classifiers; this run's task is localization (box outputs)", run_path.display());
    }
    let inputs_split = inputs.map(|(name, max)| parse_split(name).map(|split| (name, split, max))).transpose()?;
    let model = setup.load_best(&run)?;
    let out = out.map_or_else(|| run_path.join("export"), Path::to_owned);
    let description = describe(run_path, &config.data.eval_transforms, &setup, &summary, format, weights);
    let json = serde_json::to_string_pretty(&description)?;
    let metadata = [("medkd".to_owned(), json.clone())];

    // Everything is built before the folder is touched.
    let file = match format {
        ExportFormat::Onnx => {
            let io = OnnxIo {
                input_chw: description.input.shape,
                mean: description.normalization.mean.clone(),
                std: description.normalization.std.clone(),
                num_classes: setup.spec.num_classes,
                temperature: description.temperature.map(|t| t as f32),
                activation: activation(setup.info.task),
                weights: weights.precision(),
            };
            Some(model.to_onnx(&setup.spec, &io, &metadata)?)
        }
        ExportFormat::Torchvision => None,
    };
    let inputs = inputs_split.map(|(name, split, max)| split_inputs(&setup, name, split, max)).transpose()?;
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let path = out.join(description.file);
    match file {
        Some(bytes) => write_atomic(&path, &bytes)?,
        None => {
            save_weights_with_metadata(&model, &path, &metadata)?;
            // burn-store writes through a private (0600) temporary file; an export is meant to be
            // shared and served, so it gets the permissions of the other files written here.
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
            }
        }
    }
    write_atomic(&out.join("model.json"), format!("{json}\n").as_bytes())?;
    eprintln!("wrote {} and model.json", path.display());
    if let (Some((split, ..)), Some(bytes)) = (inputs_split, inputs) {
        let path = out.join(format!("inputs_{split}.safetensors"));
        write_atomic(&path, &bytes)?;
        eprintln!("wrote {}: the {split} split as the exported model takes it", path.display());
    }
    Ok(())
}

/// The split's images as the exported model takes them (the eval transforms, values in [0, 1],
/// `images` `[N, C, H, W]`) with their ids (`ids`, a JSON list, named as `medkd predict` names
/// them) and labels (`labels`: class indices, or 0/1 lists for multi-label data) in the
/// metadata: another runtime's outputs on them compare with `medkd predict --split` row for
/// row, and score against the labels. With `max`, at most that many images, evenly spaced.
fn split_inputs(setup: &RunSetup, name: &str, split: SplitName, max: Option<usize>) -> Result<Vec<u8>> {
    let dataset = setup.split(split);
    let count = max.map_or(dataset.len(), |max| max.min(dataset.len()));
    if count == 0 {
        bail!("the {name} split has no images to write");
    }
    let pipeline = setup.eval_pipeline.without_normalization();
    let [height, width] = setup.input_hw;
    let shape = [setup.spec.in_channels, height, width];
    let mut bytes = Vec::with_capacity(4 * count * shape.iter().product::<usize>());
    let mut ids = Vec::with_capacity(count);
    let mut labels = Vec::with_capacity(count);
    for index in (0..count).map(|i| i * dataset.len() / count) {
        let id = dataset.id(index);
        let (data, image_shape) = pipeline.apply_seeded(&dataset.image(index)?, 0)?;
        if image_shape != shape {
            bail!("{name} image {id} comes out of the eval transforms as {image_shape:?}, not the model's {shape:?}");
        }
        bytes.extend(data.iter().flat_map(|v| v.to_le_bytes()));
        labels.push(match dataset.target(index) {
            Target::Class(class) => serde_json::json!(class),
            Target::MultiHot(hot) => serde_json::json!(hot),
            Target::None | Target::Box { .. } => serde_json::Value::Null,
        });
        ids.push(submission_id(&id).to_owned());
    }
    let view = TensorView::new(Dtype::F32, vec![count, shape[0], shape[1], shape[2]], &bytes)?;
    let metadata = HashMap::from([
        ("ids".to_owned(), serde_json::to_string(&ids)?),
        ("labels".to_owned(), serde_json::to_string(&labels)?),
        ("split".to_owned(), name.to_owned()),
    ]);
    Ok(safetensors::serialize([("images", view)], Some(metadata))?)
}

fn activation(task: Task) -> Activation {
    if task == Task::MultiLabel { Activation::Sigmoid } else { Activation::Softmax }
}

fn describe(
    run_path: &Path,
    eval_transforms: &[TransformSpec],
    setup: &RunSetup,
    summary: &Summary,
    format: ExportFormat,
    weights: Weights,
) -> Description {
    let [height, width] = setup.input_hw;
    let spec = &setup.spec;
    let temperature = summary.calibration.as_ref().map(|c| c.temperature).filter(|_| setup.info.task != Task::MultiLabel);
    let onnx = format == ExportFormat::Onnx;
    let probabilities = match (activation(setup.info.task), temperature) {
        (Activation::Sigmoid, _) => "sigmoid(logits), one per class".to_owned(),
        (Activation::Softmax, Some(t)) => format!("softmax(logits / {t}) over classes, as medkd predict writes them"),
        (Activation::Softmax, None) => "softmax(logits) over classes, as medkd predict writes them".to_owned(),
    };
    let logits = Output { name: "logits", shape: ["batch", "num_classes"], meaning: "the model's logits, before any temperature".into() };
    let outputs = if onnx {
        vec![logits, Output { name: "probabilities", shape: ["batch", "num_classes"], meaning: probabilities }]
    } else {
        vec![logits]
    };
    Description {
        format,
        file: if onnx { "model.onnx" } else { "model.safetensors" },
        arch: spec.arch,
        small_input: spec.small_input,
        num_classes: spec.num_classes,
        class_names: setup.info.class_names.clone(),
        task: setup.info.task,
        input: Input {
            shape: [spec.in_channels, height, width],
            channels: if spec.in_channels == 1 { "gray" } else { "RGB" },
            values: "pixel / 255, in [0, 1], float32, NCHW",
            eval_transforms: eval_transforms.to_vec(),
            normalized_inside: onnx,
        },
        normalization: setup.eval_pipeline.normalization().clone(),
        temperature,
        outputs,
        weights: weights.description(),
        onnx_opset: onnx.then_some(medkd_models::ONNX_OPSET),
        source: Source {
            run: std::path::absolute(run_path).unwrap_or_else(|_| run_path.to_owned()),
            best_epoch: summary.best_epoch,
            medkd: summary.medkd.clone(),
        },
    }
}

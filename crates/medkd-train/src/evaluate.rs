//! Inference over a split and the metrics report built from it.

use burn::prelude::*;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use std::path::{Path, PathBuf};

use crate::TrainError;
use crate::summary::{Calibration, SplitMetrics};
use medkd_data::{DatasetInfo, Loader, Pipeline, Target, Task, open_image_with};
use medkd_eval::{BoxReport, ClassificationReport, Metric, MultiLabelReport, ShotGroups, ShotReport};
use medkd_models::Model;

/// Per-sample class probabilities (softmax, or sigmoid per label for multi-label tasks).
pub struct Predictions {
    pub probs: Vec<f32>,
    pub num_classes: usize,
    pub targets: Vec<Target>,
    pub ids: Vec<String>,
}

impl Predictions {
    /// The probabilities at temperature `t` (single-label rows; multi-label ones are left as
    /// they are, each label being its own sigmoid).
    pub fn with_temperature(mut self, info: &DatasetInfo, t: f64) -> Predictions {
        if !matches!(info.task, Task::MultiLabel | Task::Localization) {
            self.probs = medkd_eval::scale_temperature(&self.probs, self.num_classes, t);
        }
        self
    }
}

/// Fits the temperature on what `val` scored and measures it on `test` (single-label
/// evaluations of the same model).
pub fn calibrate(val: &Scored, test: &Scored, info: &DatasetInfo) -> Result<Calibration, TrainError> {
    let k = info.class_names.len();
    let temperature = medkd_eval::fit_temperature(&val.probs, k, &val.labels);
    let ece = |probs: &[f32]| -> Result<f64, TrainError> {
        Ok(medkd_eval::evaluate_single_label(probs, k, &test.labels, &info.class_names)?.ece)
    };
    Ok(Calibration {
        temperature,
        val_nll_before: medkd_eval::temperature_nll(&val.probs, k, &val.labels, 1.0),
        val_nll_after: medkd_eval::temperature_nll(&val.probs, k, &val.labels, temperature),
        test_ece_before: ece(&test.probs)?,
        test_ece_after: ece(&medkd_eval::scale_temperature(&test.probs, k, temperature))?,
    })
}

/// Test-time augmentation: the model's logits averaged over flipped copies of each image, then
/// made probabilities (averaging logits keeps a fitted temperature meaningful).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tta {
    #[default]
    None,
    /// The image and its left-right mirror.
    Hflip,
    /// The image mirrored left-right, top-bottom and both: 4 views (dermoscopy has no up).
    Flips,
}

impl Tta {
    pub const NAMES: [&'static str; 3] = ["none", "hflip", "flips"];

    pub fn parse(name: &str) -> Option<Tta> {
        [Tta::None, Tta::Hflip, Tta::Flips].into_iter().zip(Self::NAMES).find(|(_, n)| *n == name).map(|(tta, _)| tta)
    }

    /// Each view as (flipped top-bottom, flipped left-right).
    fn views(self) -> &'static [(bool, bool)] {
        match self {
            Tta::None => &[(false, false)],
            Tta::Hflip => &[(false, false), (false, true)],
            Tta::Flips => &[(false, false), (false, true), (true, false), (true, true)],
        }
    }
}

/// Runs the model in eval mode (running BatchNorm statistics, no autodiff) over a loader.
pub fn predict(model: &Model, loader: &Loader, info: &DatasetInfo, device: &Device) -> Result<Predictions, TrainError> {
    predict_tta(model, loader, info, device, Tta::None)
}

/// [`predict`] with test-time augmentation.
pub fn predict_tta(model: &Model, loader: &Loader, info: &DatasetInfo, device: &Device, tta: Tta) -> Result<Predictions, TrainError> {
    check_tta(info, tta)?;
    let model = model.valid();
    let device = device.clone().without_autodiff();
    let mut predictions = Predictions::empty(info);
    for batch in loader.epoch(0) {
        let batch = batch?;
        let images = batch_tensor(&batch.images, batch.shape, &device);
        predictions.probs.extend(probabilities(&model, images, info, tta));
        predictions.ids.extend(batch.indices.iter().map(|&i| loader.dataset().id(i)));
        predictions.targets.extend(batch.targets);
    }
    Ok(predictions)
}

/// Flipping an image moves its box, so a localization model's boxes are not averaged over
/// flipped copies.
pub fn check_tta(info: &DatasetInfo, tta: Tta) -> Result<(), TrainError> {
    if info.task == Task::Localization && tta != Tta::None {
        return Err(TrainError::Input(
            "--tta applies to classifiers: flipped copies of an image have moved boxes, so a localization run predicts without it".into(),
        ));
    }
    Ok(())
}

/// Classifies image files (no targets); ids are the file stems, as ISIC submissions expect. Every
/// image must come out of `pipeline` at `input_hw`, the size the model was trained on: a model
/// given another size would still predict, silently wrong. DICOM files are read with
/// `dicom_window` (the run's `data.dicom_window`) when set.
#[allow(clippy::too_many_arguments)]
pub fn predict_files(
    model: &Model,
    pipeline: &Pipeline,
    paths: &[PathBuf],
    info: &DatasetInfo,
    device: &Device,
    batch_size: usize,
    input_hw: [usize; 2],
    tta: Tta,
    dicom_window: Option<medkd_data::DicomWindow>,
) -> Result<Predictions, TrainError> {
    check_tta(info, tta)?;
    let model = model.valid();
    let device = device.clone().without_autodiff();
    let mut predictions = Predictions::empty(info);
    let mut channels = 0;
    for chunk in paths.chunks(batch_size.max(1)) {
        let mut pixels = Vec::new();
        for path in chunk {
            let (values, [c, height, width]) = pipeline.apply_seeded(&open_image_with(path, dicom_window)?, 0)?;
            if [height, width] != input_hw {
                let [h, w] = input_hw;
                return Err(TrainError::Input(format!(
                    "{}: {height}x{width} after the eval transforms, but the model was trained on {h}x{w} inputs \
                     (summary.json `input_size`); pass --resize to resize every image to {h}x{w} first, or give images of that size",
                    path.display()
                )));
            }
            channels = c;
            pixels.extend(values);
        }
        let [h, w] = input_hw;
        let images = batch_tensor(&pixels, [chunk.len(), channels, h, w], &device);
        predictions.probs.extend(probabilities(&model, images, info, tta));
        predictions.ids.extend(chunk.iter().map(|p| p.file_stem().unwrap_or_default().to_string_lossy().into_owned()));
    }
    Ok(predictions)
}

impl Predictions {
    pub fn empty(info: &DatasetInfo) -> Self {
        let num_classes = if info.task == Task::Localization { 4 } else { info.class_names.len() };
        Predictions { probs: Vec::new(), num_classes, targets: Vec::new(), ids: Vec::new() }
    }
}

fn probabilities(model: &Model, images: Tensor<4>, info: &DatasetInfo, tta: Tta) -> Vec<f32> {
    let views = tta.views();
    let view = |&(vertical, horizontal): &(bool, bool)| match (vertical, horizontal) {
        (false, false) => images.clone(),
        (false, true) => images.clone().flip([3]),
        (true, false) => images.clone().flip([2]),
        (true, true) => images.clone().flip([2, 3]),
    };
    let logits = views.iter().map(|v| model.logits(view(v))).reduce(|a, b| a + b).expect("every TTA has the identity view");
    probabilities_of(if views.len() == 1 { logits } else { logits / views.len() as f32 }, info)
}

/// Softmax over classes, or a sigmoid per label for multi-label tasks; for localization, the
/// decoded box (`x0, y0, x1, y1`, [`medkd_losses::decode_boxes`]).
pub fn probabilities_of(logits: Tensor<2>, info: &DatasetInfo) -> Vec<f32> {
    let logits = if info.task == Task::Localization { medkd_losses::decode_boxes(logits) } else { logits };
    let logits: Vec<f32> = logits.into_data().try_to_vec::<f32>().expect("logits are f32");
    match info.task {
        Task::Localization => logits,
        Task::MultiLabel => medkd_eval::sigmoid(&logits),
        _ => medkd_eval::softmax_rows(&logits, info.class_names.len()),
    }
}

pub fn batch_tensor(images: &[f32], shape: [usize; 4], device: &Device) -> Tensor<4> {
    Tensor::<4>::from_data(TensorData::new(images.to_vec(), shape), device)
}

pub enum Report {
    SingleLabel(ClassificationReport),
    MultiLabel(MultiLabelReport),
    /// One box per image (localization).
    Boxes(BoxReport),
}

/// A split's metrics plus the mean task loss (NLL or BCE of the probabilities for classifiers;
/// the method's box loss for localization).
pub struct Evaluation {
    pub report: Report,
    pub loss: f64,
    /// Many / medium / few-shot recall and accuracy (classifiers).
    pub shots: Option<ShotReport>,
    /// What a single-label evaluation scored, kept for temperature scaling ([`calibrate`]).
    pub scored: Option<Scored>,
    /// What a localization evaluation scored: each sample's predicted and true box.
    pub boxes: Option<BoxPredictions>,
}

/// One predicted box per sample (normalized `[x0, y0, x1, y1]`), with the sample's id and target.
pub struct BoxPredictions {
    pub ids: Vec<String>,
    pub predicted: Vec<[f32; 4]>,
    pub targets: Vec<Target>,
    /// For boxes from class activation maps: the classifier's mean cross-entropy on the samples'
    /// classes (what a weakly supervised run is selected by, its boxes being unseen).
    pub class_loss: Option<f64>,
}

/// Where a localization run's boxes come from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BoxSource {
    /// A box head: four outputs decoded by [`medkd_losses::decode_boxes`].
    Regression,
    /// A classifier's class activation map for its predicted class (weakly supervised,
    /// [`cam_boxes`]).
    Cam { threshold: f64 },
}

impl BoxPredictions {
    /// Each sample's true box; an error naming the first sample without one.
    pub fn truth(&self) -> Result<Vec<[f32; 4]>, TrainError> {
        (self.targets.iter().enumerate())
            .map(|(i, target)| match target {
                Target::Box { bbox, .. } => Ok(*bbox),
                other => Err(TrainError::Input(format!(
                    "cannot score sample {i} ({}): box metrics need a box target, it has {other:?}",
                    self.ids.get(i).map_or("?", String::as_str)
                ))),
            })
            .collect()
    }

    /// Each sample's IoU between its predicted and true box.
    pub fn iou(&self) -> Result<Vec<f64>, TrainError> {
        Ok(self.predicted.iter().zip(self.truth()?).map(|(p, t)| medkd_eval::box_iou(*p, t)).collect())
    }

    /// `image,x0,y0,x1,y1[,true_x0,true_y0,true_x1,true_y1,iou]`: each sample's predicted box
    /// (fractions of the model's input image) and, given `iou`, its true box and their IoU. The
    /// run folder's `predictions/<split>.csv` for localization runs, and `medkd predict`'s output.
    pub fn write_csv(&self, path: &Path, iou: Option<&[f64]>) -> Result<(), TrainError> {
        let mut writer = csv::Writer::from_writer(Vec::new());
        let csv_error = |e: csv::Error| TrainError::Input(format!("{}: {e}", path.display()));
        let mut header = vec!["image", "x0", "y0", "x1", "y1"];
        let truth = iou.map(|_| self.truth()).transpose()?;
        if truth.is_some() {
            header.extend(["true_x0", "true_y0", "true_x1", "true_y1", "iou"]);
        }
        writer.write_record(&header).map_err(csv_error)?;
        for (i, (id, predicted)) in self.ids.iter().zip(&self.predicted).enumerate() {
            let mut record = vec![submission_id(id).to_string()];
            record.extend(predicted.iter().map(f32::to_string));
            if let (Some(truth), Some(iou)) = (&truth, iou) {
                record.extend(truth[i].iter().map(f32::to_string));
                record.push(iou[i].to_string());
            }
            writer.write_record(&record).map_err(csv_error)?;
        }
        let bytes = writer.into_inner().map_err(|e| TrainError::Input(format!("{}: {e}", path.display())))?;
        write_file(path, &bytes)
    }
}

/// The boxes `model` (in eval mode) predicts for every sample of `loader` (a localization
/// dataset), in order, from its box head or its class activation maps.
pub fn predict_boxes(model: &Model, loader: &Loader, source: BoxSource, device: &Device) -> Result<BoxPredictions, TrainError> {
    let BoxSource::Cam { threshold } = source else {
        return Ok(BoxPredictions::from(predict(model, loader, loader.dataset().info(), device)?));
    };
    let model = model.valid();
    let device = device.clone().without_autodiff();
    let (mut predicted, mut ids, mut targets, mut nll) = (Vec::new(), Vec::new(), Vec::new(), 0.0);
    for batch in loader.epoch(0) {
        let batch = batch?;
        let (boxes, logits) = cam_boxes(&model, batch_tensor(&batch.images, batch.shape, &device), threshold);
        nll += f64::from(medkd_losses::cross_entropy(logits, &batch.class_labels(), None, 0.0).into_scalar::<f32>()) * boxes.len() as f64;
        predicted.extend(boxes);
        ids.extend(batch.indices.iter().map(|&i| loader.dataset().id(i)));
        targets.extend(batch.targets);
    }
    let class_loss = Some(nll / predicted.len().max(1) as f64);
    Ok(BoxPredictions { ids, predicted, targets, class_loss })
}

/// Weakly supervised boxes (Zhou et al. 2016): each image's Grad-CAM for the class the model
/// predicts, upsampled bilinearly to the input size (as torch's `interpolate`,
/// `align_corners=False`), and the box of its largest region at or above `threshold` x its
/// maximum ([`medkd_eval::cam_box`]); with the model's logits.
pub fn cam_boxes(model: &Model, images: Tensor<4>, threshold: f64) -> (Vec<[f32; 4]>, Tensor<2>) {
    let [_, _, height, width] = images.dims();
    let features = model.forward(images);
    let classes: Vec<usize> = features.logits.clone().argmax(1).into_data().iter::<i64>().map(|c| c as usize).collect();
    (boxes_of_maps(model.grad_cam_of(&features, &classes), [height, width], threshold), features.logits)
}

/// `[N, h, w]` activation maps upsampled to `size` and each map's box ([`cam_boxes`]).
pub fn boxes_of_maps(maps: Tensor<3>, [height, width]: [usize; 2], threshold: f64) -> Vec<[f32; 4]> {
    let [n, h, w] = maps.dims();
    let options = InterpolateOptions::new(InterpolateMode::Bilinear).with_align_corners(false).with_output_size([height, width]);
    let maps: Vec<f32> = interpolate(maps.reshape([n, 1, h, w]), options).into_data().iter::<f32>().collect();
    maps.chunks_exact(height * width).map(|map| medkd_eval::cam_box(map, height, width, threshold)).collect()
}

impl From<Predictions> for BoxPredictions {
    /// A localization model's predictions: four values per sample, a box.
    fn from(predictions: Predictions) -> BoxPredictions {
        let predicted = predictions.probs.chunks_exact(4).map(|b| [b[0], b[1], b[2], b[3]]).collect();
        BoxPredictions { ids: predictions.ids, predicted, targets: predictions.targets, class_loss: None }
    }
}

/// The probabilities (rows of one per class) and true classes of a single-label evaluation.
pub struct Scored {
    pub ids: Vec<String>,
    pub probs: Vec<f32>,
    pub labels: Vec<usize>,
}

impl Scored {
    /// `image,label,<class 1>,...`: each sample's id, true class and probabilities (the run
    /// folder's `predictions/<split>.csv`, which `medkd report` draws its curves from).
    pub fn write_csv(&self, path: &Path, class_names: &[String]) -> Result<(), TrainError> {
        let labels: Vec<&str> = self.labels.iter().map(|&c| class_names[c].as_str()).collect();
        write_probabilities(path, class_names, &self.ids, &self.probs, Some(&labels))
    }
}

/// A sample id as challenge scorers match it: without its image file extension
/// (`ISIC_0024306.jpg` → `ISIC_0024306`, as the ISIC ground truth names images).
pub fn submission_id(id: &str) -> &str {
    match id.rsplit_once('.') {
        Some((stem, _)) if medkd_data::has_image_extension(id) && !stem.is_empty() => stem,
        _ => id,
    }
}

/// Writes `image,[label,]<class 1>,<class 2>,...` rows, images named by [`submission_id`]:
/// without labels, the ISIC challenge submission layout. The file is written whole to a
/// temporary name first.
pub fn write_probabilities(
    path: &Path,
    class_names: &[String],
    ids: &[String],
    probs: &[f32],
    labels: Option<&[&str]>,
) -> Result<(), TrainError> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["image"];
    header.extend(labels.map(|_| "label"));
    header.extend(class_names.iter().map(String::as_str));
    let csv_error = |e: csv::Error| TrainError::Input(format!("{}: {e}", path.display()));
    writer.write_record(&header).map_err(csv_error)?;
    for (row, (id, p)) in ids.iter().zip(probs.chunks_exact(class_names.len())).enumerate() {
        let mut record = vec![submission_id(id).to_string()];
        record.extend(labels.map(|labels| labels[row].to_string()));
        record.extend(p.iter().map(|p| p.to_string()));
        writer.write_record(&record).map_err(csv_error)?;
    }
    let bytes = writer.into_inner().map_err(|e| TrainError::Input(format!("{}: {e}", path.display())))?;
    write_file(path, &bytes)
}

/// Writes `bytes` whole to a temporary name first, making the parent folder if needed.
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| TrainError::io(parent, e))?;
    }
    crate::run_dir::write_atomic(path, bytes)
}

/// Scores class predictions; `shots` groups the classes by training counts.
pub fn evaluate(predictions: &Predictions, info: &DatasetInfo, shots: &ShotGroups) -> Result<Evaluation, TrainError> {
    let k = predictions.num_classes;
    let n = predictions.targets.len();
    let clamp = |p: f32| (p as f64).clamp(1e-12, 1.0 - 1e-12);
    match info.task {
        Task::MultiLabel => {
            let rows = (predictions.targets.iter().enumerate())
                .map(|(i, t)| match t {
                    Target::MultiHot(bits) => Ok(bits.clone()),
                    other => Err(not_scorable(predictions, i, other, "multi-hot labels")),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let multi_hot = rows.concat();
            let loss = predictions
                .probs
                .iter()
                .zip(&multi_hot)
                .map(|(&p, &y)| if y == 1 { -clamp(p).ln() } else { -(1.0 - clamp(p)).ln() })
                .sum::<f64>()
                / (n * k).max(1) as f64;
            let report = medkd_eval::evaluate_multi_label(&predictions.probs, k, &multi_hot, &info.class_names)?;
            Ok(Evaluation {
                shots: Some(shots.report(&report.per_label)),
                report: Report::MultiLabel(report),
                loss,
                scored: None,
                boxes: None,
            })
        }
        _ => {
            let labels = (predictions.targets.iter().enumerate())
                .map(|(i, t)| match t {
                    Target::Class(c) => Ok(*c),
                    other => Err(not_scorable(predictions, i, other, "a class label")),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let loss = labels.iter().enumerate().map(|(i, &y)| -clamp(predictions.probs[i * k + y]).ln()).sum::<f64>() / n.max(1) as f64;
            let report = medkd_eval::evaluate_single_label(&predictions.probs, k, &labels, &info.class_names)?;
            let scored = Some(Scored { ids: predictions.ids.clone(), probs: predictions.probs.clone(), labels });
            Ok(Evaluation { shots: Some(shots.report(&report.per_class)), report: Report::SingleLabel(report), loss, scored, boxes: None })
        }
    }
}

/// Scores predicted boxes against the box targets; `loss` is the method's mean box loss on the
/// split. The boxes are kept for `predictions/<split>.csv`.
pub fn evaluate_box_predictions(boxes: BoxPredictions, loss: f64) -> Result<Evaluation, TrainError> {
    let report = medkd_eval::evaluate_boxes(&boxes.predicted, &boxes.truth()?)?;
    Ok(Evaluation { report: Report::Boxes(report), loss, shots: None, scored: None, boxes: Some(boxes) })
}

/// Classification metrics need every sample's label of the task's kind; an unlabelled sample or
/// a box reaching them is a pipeline error, named rather than scored as class 0.
fn not_scorable(predictions: &Predictions, index: usize, target: &Target, needs: &str) -> TrainError {
    let id = predictions.ids.get(index).map_or("?", String::as_str);
    TrainError::Input(format!("cannot score sample {index} ({id}): classification metrics need {needs}, it has {target:?}"))
}

impl Evaluation {
    /// A metric of this split; NaN when undefined (AUC on a one-class split, ECE of a
    /// multi-label task).
    pub fn metric(&self, metric: Metric) -> f64 {
        let value = match (metric, &self.report) {
            (Metric::Loss, _) => Some(self.loss),
            (_, Report::SingleLabel(r)) => r.metric(metric),
            (_, Report::MultiLabel(r)) => r.metric(metric),
            (_, Report::Boxes(r)) => r.metric(metric),
        };
        value.unwrap_or(f64::NAN)
    }

    /// The summary.json form: headline metrics under fixed names, then the full report.
    pub fn split_metrics(&self) -> SplitMetrics {
        let headline = |metric: Metric| Some(self.metric(metric)).filter(|v| v.is_finite());
        let report = match &self.report {
            Report::SingleLabel(r) => serde_json::to_value(r),
            Report::MultiLabel(r) => serde_json::to_value(r),
            Report::Boxes(r) => serde_json::to_value(r),
        }
        .expect("reports serialize");
        let shot_recall = |group: fn(&ShotReport) -> &medkd_eval::ShotGroup| self.shots.as_ref().and_then(|s| group(s).recall);
        SplitMetrics {
            acc: headline(Metric::Accuracy),
            balanced_acc: headline(Metric::BalancedAccuracy),
            macro_f1: headline(Metric::MacroF1),
            auc: headline(Metric::Auc),
            ece: headline(Metric::Ece),
            loss: headline(Metric::Loss),
            mean_iou: headline(Metric::MeanIou),
            acc_at_50: headline(Metric::AccAt50),
            acc_at_75: headline(Metric::AccAt75),
            many_recall: shot_recall(|s| &s.many),
            medium_recall: shot_recall(|s| &s.medium),
            few_recall: shot_recall(|s| &s.few),
            shots: self.shots.clone(),
            report,
        }
    }

    pub fn table(&self) -> String {
        let table = match &self.report {
            Report::SingleLabel(r) => r.table(),
            Report::MultiLabel(r) => r.table(),
            Report::Boxes(r) => r.table(),
        };
        match &self.shots {
            Some(shots) => format!("{table}\n{shots}"),
            None => table,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;
    use medkd_models::{Arch, ModelSpec};

    /// TTA averages the logits of the flipped views before the softmax; a view that a flip does
    /// not change (a left-right symmetric image) changes nothing.
    #[test]
    fn tta_averages_the_logits_of_flipped_views() {
        let device = Device::flex();
        device.seed(3);
        let spec = ModelSpec { small_input: true, ..ModelSpec::new(Arch::ResNet18, 3) };
        let model = Model::new(&spec, &device).unwrap();
        let info =
            DatasetInfo { name: "t".into(), task: Task::MultiClass, class_names: vec!["a".into(), "b".into(), "c".into()], channels: 3 };
        let x = Tensor::<4>::random([2, 3, 16, 16], Distribution::Normal(0.0, 1.0), &device);
        let logits = [x.clone(), x.clone().flip([3]), x.clone().flip([2]), x.clone().flip([2, 3])].map(|v| model.logits(v));
        let expected = |n: usize| probabilities_of(logits[..n].iter().cloned().reduce(|a, b| a + b).unwrap() / n as f32, &info);
        let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(a, b)| (a - b).abs() < 1e-6);
        assert!(close(&probabilities(&model, x.clone(), &info, Tta::Hflip), &expected(2)));
        assert!(close(&probabilities(&model, x.clone(), &info, Tta::Flips), &expected(4)));
        assert!(!close(&probabilities(&model, x.clone(), &info, Tta::Hflip), &probabilities(&model, x.clone(), &info, Tta::None)));
        let symmetric = x.clone() + x.flip([3]);
        assert!(close(&probabilities(&model, symmetric.clone(), &info, Tta::Hflip), &probabilities(&model, symmetric, &info, Tta::None)));
        assert_eq!(Tta::NAMES.map(|name| Tta::parse(name).unwrap()), [Tta::None, Tta::Hflip, Tta::Flips]);
        assert_eq!(Tta::parse("vflip"), None);
    }

    #[test]
    fn submission_ids_drop_the_image_extension_only() {
        assert_eq!(submission_id("ISIC_0024306.jpg"), "ISIC_0024306");
        assert_eq!(submission_id("nv/ISIC_0024306.JPG"), "nv/ISIC_0024306");
        assert_eq!(submission_id("scan.dcm"), "scan");
        assert_eq!(submission_id("17"), "17");
        assert_eq!(submission_id("patient.v2"), "patient.v2");
        assert_eq!(submission_id(".png"), ".png");
    }
}

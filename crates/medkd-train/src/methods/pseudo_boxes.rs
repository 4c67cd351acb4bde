//! Semi-supervised localization (`[method.semi]`, see [`SemiConfig`]): which training images keep
//! their boxes, and pseudo-boxes for the others from an EMA teacher of the model (mean teacher),
//! kept where the teacher agrees with itself on the mirrored and on the zoomed image.

use std::collections::BTreeMap;

use burn::prelude::*;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use medkd_data::{Batch, ImageDataset};
use medkd_eval::box_iou;
use medkd_losses::decode_boxes;
use medkd_models::Model;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use crate::TrainError;
use crate::averaging::{AveragingConfig, WeightAverage};
use crate::checkpoint::MethodState;
use crate::evaluate::{batch_tensor, submission_id};
use crate::method::StepAt;
use crate::methods::config::SemiConfig;
use crate::run_dir::RunDir;

/// Where an unlabelled image has no usable pseudo-box, its target is this placeholder at weight 0
/// (never its true box, which the run must not see).
const PLACEHOLDER: [f32; 4] = [0.25, 0.25, 0.75, 0.75];

pub struct PseudoBoxes<'a> {
    config: &'a SemiConfig,
    /// Per training sample: keeps its true box.
    labelled: Vec<bool>,
    teacher: WeightAverage,
    /// Unlabelled samples seen after burn-in, and those that got a pseudo-box.
    offered: u64,
    kept: u64,
}

/// The zoomed view is the central crop of this fraction of each side, resized back.
const ZOOM: f64 = 0.8;

/// A box mirrored left-right (of a normalized image).
fn mirrored([x0, y0, x1, y1]: [f32; 4]) -> [f32; 4] {
    [1.0 - x1, y0, 1.0 - x0, y1]
}

/// `[n, c, h, w]` images cropped to their central `ZOOM` part and resized back to `h x w`, and the
/// crop's offset and size as fractions of the image (`[x, y, w, h]`), to map boxes back.
fn zoomed(images: Tensor<4>) -> (Tensor<4>, [f32; 4]) {
    let [n, c, h, w] = images.dims();
    let margin = |side: usize| ((side as f64 * (1.0 - ZOOM)) / 2.0).round() as usize;
    let (my, mx) = (margin(h), margin(w));
    let crop = images.slice([0..n, 0..c, my..h - my, mx..w - mx]);
    let resized = interpolate(crop, InterpolateOptions::new(InterpolateMode::Bilinear).with_output_size([h, w]));
    let frame = [mx as f32 / w as f32, my as f32 / h as f32, (w - 2 * mx) as f32 / w as f32, (h - 2 * my) as f32 / h as f32];
    (resized, frame)
}

/// A box of a crop's view in the coordinates of the whole image.
fn unzoomed([x0, y0, x1, y1]: [f32; 4], [fx, fy, fw, fh]: [f32; 4]) -> [f32; 4] {
    [fx + x0 * fw, fy + y0 * fh, fx + x1 * fw, fy + y1 * fh]
}

impl<'a> PseudoBoxes<'a> {
    /// Chooses `round(labelled * n)` of the `n` training samples, seeded by `config.seed`.
    pub fn new(config: &'a SemiConfig, train_samples: usize) -> PseudoBoxes<'a> {
        let mut order: Vec<usize> = (0..train_samples).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(config.seed));
        let count = (config.labelled * train_samples as f64).round() as usize;
        let mut labelled = vec![false; train_samples];
        for &i in &order[..count] {
            labelled[i] = true;
        }
        let teacher = WeightAverage::new(AveragingConfig::Ema { decay: config.ema_decay });
        PseudoBoxes { config, labelled, teacher, offered: 0, kept: 0 }
    }

    fn averaging(&self) -> AveragingConfig {
        AveragingConfig::Ema { decay: self.config.ema_decay }
    }

    /// `labelled.csv` in the run folder: `image,labelled` (1 or 0) for every training image.
    pub fn write_labelled(&self, run: &RunDir, train: &dyn ImageDataset) -> Result<(), TrainError> {
        let mut text = String::from("image,labelled\n");
        for (i, &keep) in self.labelled.iter().enumerate() {
            text.push_str(&format!("{},{}\n", submission_id(&train.id(i)), u8::from(keep)));
        }
        run.write_text(&run.root().join("labelled.csv"), &text)
    }

    /// The pseudo-boxes' weight at `at`: `weight` after a sigmoid-shaped ramp over `ramp_epochs`
    /// from the end of burn-in (Laine & Aila's exp(-5 (1 - t)^2)); 0 during burn-in.
    fn pseudo_weight(&self, at: StepAt) -> f32 {
        let SemiConfig { burn_in_epochs, ramp_epochs, weight, .. } = *self.config;
        if at.epoch < burn_in_epochs {
            return 0.0;
        }
        let steps_in = (at.global() - (burn_in_epochs * at.steps) as u64) as f64;
        let t = if ramp_epochs == 0 { 1.0 } else { (steps_in / (ramp_epochs * at.steps) as f64).min(1.0) };
        (weight * (-5.0 * (1.0 - t).powi(2)).exp()) as f32
    }

    /// The batch's box targets and their weights in the box terms: a labelled image's true box
    /// at weight 1; after burn-in, an unlabelled image's pseudo-box at the ramped weight where
    /// the teacher is confident, else a placeholder at weight 0.
    pub fn targets(&mut self, batch: &Batch, truth: &[[f32; 4]], at: StepAt, device: &Device) -> Result<(Vec<[f32; 4]>, Vec<f32>), TrainError> {
        let pseudo_weight = self.pseudo_weight(at);
        let mut targets = Vec::with_capacity(truth.len());
        let mut weights = Vec::with_capacity(truth.len());
        let unlabelled: Vec<usize> = (0..truth.len()).filter(|&j| !self.labelled[batch.indices[j]]).collect();
        let pseudo = match &self.teacher.model {
            // weight = 0 trains on the labelled images alone (the same steps, no teacher).
            Some(teacher) if pseudo_weight > 0.0 && !unlabelled.is_empty() => {
                self.offered += unlabelled.len() as u64;
                self.teacher_boxes(teacher, batch, &unlabelled, device)?
            }
            _ => vec![None; unlabelled.len()],
        };
        let mut pseudo = unlabelled.iter().zip(pseudo).peekable();
        for (j, true_box) in truth.iter().enumerate() {
            match pseudo.next_if(|(u, _)| **u == j) {
                None => {
                    targets.push(*true_box);
                    weights.push(1.0);
                }
                Some((_, Some(pseudo_box))) => {
                    self.kept += 1;
                    targets.push(pseudo_box);
                    weights.push(pseudo_weight);
                }
                Some((_, None)) => {
                    targets.push(PLACEHOLDER);
                    weights.push(0.0);
                }
            }
        }
        Ok((targets, weights))
    }

    /// The teacher's box for each of `rows` of the batch (in eval mode, on the batch's augmented
    /// view), where it agrees with its box on the mirrored image and with its box on the zoomed
    /// image, both mapped back (IoU >= `confidence`): the mean of the first two. The zoomed view
    /// rejects what mirroring cannot: a box that does not follow the image (a collapsed, nearly
    /// constant predictor is mirror-symmetric but keeps its box when the lesion grows).
    fn teacher_boxes(&self, teacher: &Model, batch: &Batch, rows: &[usize], device: &Device) -> Result<Vec<Option<[f32; 4]>>, TrainError> {
        let [_, c, h, w] = batch.shape;
        let size = c * h * w;
        let images: Vec<f32> = rows.iter().flat_map(|&j| batch.images[j * size..(j + 1) * size].iter().copied()).collect();
        let plain = device.clone().without_autodiff();
        let images = batch_tensor(&images, [rows.len(), c, h, w], &plain);
        let (zoom, frame) = zoomed(images.clone());
        let views = Tensor::cat(vec![images.clone(), images.flip([3]), zoom], 0);
        let boxes = decode_boxes(teacher.logits(views)).into_data().try_to_vec::<f32>().map_err(|e| TrainError::Input(format!("teacher boxes: {e:?}")))?;
        let boxes: Vec<[f32; 4]> = boxes.chunks_exact(4).map(|b| [b[0], b[1], b[2], b[3]]).collect();
        let n = rows.len();
        let (direct, flipped, zoom) = (&boxes[..n], &boxes[n..2 * n], &boxes[2 * n..]);
        Ok((0..n)
            .map(|i| {
                let (a, b) = (direct[i], mirrored(flipped[i]));
                let agreement = box_iou(a, b).min(box_iou(a, unzoomed(zoom[i], frame)));
                (agreement >= self.config.confidence).then(|| std::array::from_fn(|k| (a[k] + b[k]) / 2.0))
            })
            .collect())
    }

    /// After each optimizer step: the teacher follows the model.
    pub fn after_step(&mut self, model: &Model) {
        self.teacher.after_step(model);
    }

    pub fn save_state(&self, state: &mut MethodState) -> Result<(), TrainError> {
        state.put("semi_teacher_updates", &self.teacher.count);
        state.put("semi_pseudo_boxes", &(self.offered, self.kept));
        if let Some(teacher) = &self.teacher.model {
            state.put_module("semi_teacher", teacher)?;
        }
        Ok(())
    }

    /// `fresh` is a model of the run's shape for the saved teacher's weights to load into.
    pub fn load_state(&mut self, state: &MethodState, fresh: Model) -> Result<(), TrainError> {
        let count: u64 = state.get("semi_teacher_updates")?;
        (self.offered, self.kept) = state.get("semi_pseudo_boxes")?;
        let teacher = if count > 0 { Some(state.get_module("semi_teacher", fresh)?) } else { None };
        self.teacher = WeightAverage::resumed(self.averaging(), teacher, count);
        Ok(())
    }

    pub fn summary(&self) -> BTreeMap<String, Value> {
        let labelled = self.labelled.iter().filter(|l| **l).count();
        BTreeMap::from([(
            "semi".into(),
            json!({
                "labelled": labelled,
                "unlabelled": self.labelled.len() - labelled,
                "labelled_seed": self.config.seed,
                "pseudo_boxes_offered": self.offered,
                "pseudo_boxes_kept": self.kept,
            }),
        )])
    }
}

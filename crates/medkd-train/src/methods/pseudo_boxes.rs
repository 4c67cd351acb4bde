//! Semi-supervised localization (`[method.semi]`, see [`SemiConfig`]): which training images keep
//! their boxes, and pseudo-boxes for the others. An EMA teacher of the model labels the
//! unlabelled images un-augmented (eval transforms) every few epochs, keeping a box only where
//! the teacher agrees with itself on the mirrored and on the zoomed image; the training loader
//! then moves each pseudo-box with its image's random crop and flips, so the model learns it
//! under augmentation the teacher never saw (self-training as in Noisy Student and STAC).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use burn::prelude::*;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use image::DynamicImage;
use medkd_data::{Batch, DataError, DatasetInfo, ImageDataset, Subset, Target};
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
use crate::config::RunConfig;
use crate::evaluate::{batch_tensor, submission_id};
use crate::method::StepAt;
use crate::methods::config::SemiConfig;
use crate::run_dir::RunDir;
use crate::setup::RunSetup;

/// An unlabelled image without a pseudo-box trains on this placeholder at weight 0 (never on its
/// true box, which the run must not see).
const PLACEHOLDER: [f32; 4] = [0.25, 0.25, 0.75, 0.75];

/// The zoomed view is the central crop of this fraction of each side, resized back.
const ZOOM: f64 = 0.8;

/// Per training image: its pseudo-box, if any (labelled images have none).
type PseudoTable = Arc<RwLock<Vec<Option<[f32; 4]>>>>;

pub struct PseudoBoxes<'a> {
    config: &'a SemiConfig,
    /// Per training sample: keeps its true box.
    labelled: Arc<Vec<bool>>,
    pseudo: PseudoTable,
    teacher: WeightAverage,
    /// `(epoch, pseudo-boxes kept)` after each refresh, for summary.json.
    refreshes: Vec<(usize, usize)>,
}

/// The training split as the model sees it: labelled images with their boxes, the others with
/// their current pseudo-box or [`PLACEHOLDER`]. Read by the loader's workers as each epoch starts,
/// after the previous epoch's refresh.
pub struct PseudoBoxed {
    base: Arc<dyn ImageDataset>,
    labelled: Arc<Vec<bool>>,
    pseudo: PseudoTable,
}

impl ImageDataset for PseudoBoxed {
    fn info(&self) -> &DatasetInfo {
        self.base.info()
    }
    fn len(&self) -> usize {
        self.base.len()
    }
    fn image(&self, index: usize) -> Result<DynamicImage, DataError> {
        self.base.image(index)
    }
    fn target(&self, index: usize) -> Target {
        if self.labelled[index] {
            return self.base.target(index);
        }
        let pseudo = self.pseudo.read().unwrap_or_else(|poisoned| poisoned.into_inner())[index];
        Target::Box { bbox: pseudo.unwrap_or(PLACEHOLDER), class: None }
    }
    fn id(&self, index: usize) -> String {
        self.base.id(index)
    }
}

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
    let options = InterpolateOptions::new(InterpolateMode::Bilinear).with_align_corners(false).with_output_size([h, w]);
    let frame = [mx as f32 / w as f32, my as f32 / h as f32, (w - 2 * mx) as f32 / w as f32, (h - 2 * my) as f32 / h as f32];
    (interpolate(crop, options), frame)
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
        let pseudo = Arc::new(RwLock::new(vec![None; train_samples]));
        PseudoBoxes { config, labelled: Arc::new(labelled), pseudo, teacher, refreshes: Vec::new() }
    }

    /// The training split with its hidden boxes replaced ([`PseudoBoxed`]).
    pub fn dataset(&self, train: Arc<dyn ImageDataset>) -> Arc<dyn ImageDataset> {
        Arc::new(PseudoBoxed { base: train, labelled: self.labelled.clone(), pseudo: self.pseudo.clone() })
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

    /// Each sample's weight in the box terms: a labelled image 1, an unlabelled one the ramped
    /// pseudo-box weight where it has a pseudo-box, else 0.
    pub fn weights(&self, batch: &Batch, at: StepAt) -> Vec<f32> {
        let pseudo_weight = self.pseudo_weight(at);
        let pseudo = self.pseudo.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        (batch.indices.iter())
            .map(|&i| match (self.labelled[i], pseudo[i]) {
                (true, _) => 1.0,
                (false, Some(_)) => pseudo_weight,
                (false, None) => 0.0,
            })
            .collect()
    }

    /// After each optimizer step: the teacher follows the model, and at the end of the last
    /// burn-in epoch and every `refresh_epochs` epochs after it, it labels the unlabelled images.
    pub fn after_step(&mut self, model: &Model, at: StepAt, config: &RunConfig, setup: &RunSetup) -> Result<(), TrainError> {
        self.teacher.after_step(model);
        let SemiConfig { burn_in_epochs, refresh_epochs, weight, .. } = *self.config;
        let done = at.epoch + 1;
        if at.step + 1 != at.steps || done < burn_in_epochs || (done - burn_in_epochs) % refresh_epochs != 0 || weight == 0.0 {
            return Ok(());
        }
        let Some(teacher) = &self.teacher.model else { return Ok(()) };
        let unlabelled: Vec<usize> = (0..self.labelled.len()).filter(|&i| !self.labelled[i]).collect();
        // Images only: the loader's targets of these images are their true boxes, never read here.
        let loader = setup.eval_loader(config, Arc::new(Subset::new(setup.splits.train.clone(), unlabelled.clone())))?;
        let device = setup.device.clone().without_autodiff();
        let mut boxes = Vec::with_capacity(unlabelled.len());
        for batch in loader.epoch(0) {
            let batch = batch?;
            boxes.extend(self.teacher_boxes(teacher, batch_tensor(&batch.images, batch.shape, &device))?);
        }
        let kept = boxes.iter().filter(|b| b.is_some()).count();
        let mut table = self.pseudo.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        for (i, pseudo) in unlabelled.into_iter().zip(boxes) {
            table[i] = pseudo;
        }
        self.refreshes.push((at.epoch, kept));
        eprintln!("pseudo-boxes after epoch {done}: {kept} of {} unlabelled images", self.labelled.len() - self.labelled_count());
        Ok(())
    }

    fn labelled_count(&self) -> usize {
        self.labelled.iter().filter(|l| **l).count()
    }

    /// The teacher's box for each image (eval mode), where it agrees with its box on the mirrored
    /// image and with its box on the zoomed image, both mapped back (IoU >= `confidence`): the
    /// mean of the first two. The zoomed view rejects what mirroring cannot: a box that does not
    /// follow the image (a collapsed, nearly constant predictor is mirror-symmetric but keeps its
    /// box when the lesion grows).
    fn teacher_boxes(&self, teacher: &Model, images: Tensor<4>) -> Result<Vec<Option<[f32; 4]>>, TrainError> {
        let n = images.dims()[0];
        let (zoom, frame) = zoomed(images.clone());
        let views = Tensor::cat(vec![images.clone(), images.flip([3]), zoom], 0);
        let boxes = decode_boxes(teacher.logits(views))
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| TrainError::Input(format!("teacher boxes: {e:?}")))?;
        let boxes: Vec<[f32; 4]> = boxes.chunks_exact(4).map(|b| [b[0], b[1], b[2], b[3]]).collect();
        let (direct, flipped, zoom) = (&boxes[..n], &boxes[n..2 * n], &boxes[2 * n..]);
        Ok((0..n)
            .map(|i| {
                let (a, b) = (direct[i], mirrored(flipped[i]));
                let agreement = box_iou(a, b).min(box_iou(a, unzoomed(zoom[i], frame)));
                (agreement >= self.config.confidence).then(|| std::array::from_fn(|k| (a[k] + b[k]) / 2.0))
            })
            .collect())
    }

    pub fn save_state(&self, state: &mut MethodState) -> Result<(), TrainError> {
        state.put("semi_teacher_updates", &self.teacher.count);
        state.put("semi_pseudo_boxes", &*self.pseudo.read().unwrap_or_else(|poisoned| poisoned.into_inner()));
        state.put("semi_refreshes", &self.refreshes);
        if let Some(teacher) = &self.teacher.model {
            state.put_module("semi_teacher", teacher)?;
        }
        Ok(())
    }

    /// `fresh` is a model of the run's shape for the saved teacher's weights to load into.
    pub fn load_state(&mut self, state: &MethodState, fresh: Model) -> Result<(), TrainError> {
        let count: u64 = state.get("semi_teacher_updates")?;
        *self.pseudo.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = state.get("semi_pseudo_boxes")?;
        self.refreshes = state.get("semi_refreshes")?;
        let teacher = if count > 0 { Some(state.get_module("semi_teacher", fresh)?) } else { None };
        self.teacher = WeightAverage::resumed(AveragingConfig::Ema { decay: self.config.ema_decay }, teacher, count);
        Ok(())
    }

    pub fn summary(&self) -> BTreeMap<String, Value> {
        let labelled = self.labelled_count();
        let refreshes: Vec<Value> =
            self.refreshes.iter().map(|(epoch, kept)| json!({ "epoch": epoch + 1, "pseudo_boxes": kept })).collect();
        BTreeMap::from([(
            "semi".into(),
            json!({
                "labelled": labelled,
                "unlabelled": self.labelled.len() - labelled,
                "labelled_seed": self.config.seed,
                "refreshes": refreshes,
            }),
        )])
    }
}

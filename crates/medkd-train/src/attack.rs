//! White-box FGSM and PGD attacks (Goodfellow et al. 2015; Madry et al. 2018) on a run's model:
//! perturbations live on the image in [0, 1] before normalization, which is applied inside the
//! differentiated function, and adversarial images are clipped to [0, 1].

use std::sync::Arc;

use burn::module::Module;
use burn::prelude::*;
use burn::tensor::Distribution;
use medkd_data::{Normalization, Pipeline, SplitName, Target, Task};
use medkd_losses::{bce_with_logits, cross_entropy};
use serde::Serialize;

use crate::config::RunConfig;
use crate::evaluate::{Evaluation, Predictions, batch_tensor, evaluate, probabilities_of};
use crate::run_dir::RunDir;
use crate::setup::RunSetup;
use crate::{TrainError, build_info};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttackKind {
    Fgsm,
    Pgd,
}

#[derive(Clone, Debug, Serialize)]
pub struct AttackOptions {
    pub kind: AttackKind,
    pub eps: Vec<f64>,
    /// PGD iterations.
    pub steps: usize,
    /// PGD step size; default eps / 4.
    pub alpha: Option<f64>,
    /// PGD starts from a uniform random point of the eps-ball.
    pub random_start: bool,
    pub seed: u64,
}

/// Batch targets in the form the task loss needs.
pub enum Labels {
    Classes(Vec<usize>),
    MultiHot(Tensor<2>),
}

/// The gradient of the summed task loss with respect to `images` (in [0, 1]), for any
/// differentiable `logits_of`.
pub fn input_gradient(logits_of: &impl Fn(Tensor<4>) -> Tensor<2>, images: Tensor<4>, labels: &Labels) -> Tensor<4> {
    let images = images.detach().require_grad();
    let logits = logits_of(images.clone());
    let [n, _] = logits.dims();
    // Summed, not averaged, so a sample's gradient does not depend on the batch size.
    let loss = match labels {
        Labels::Classes(classes) => cross_entropy(logits, classes, None, 0.0).mul_scalar(n as f32),
        Labels::MultiHot(targets) => bce_with_logits(logits, targets.clone()).mul_scalar(targets.dims().iter().product::<usize>() as f32),
    };
    images.grad(&loss.backward()).expect("the images require a gradient")
}

/// FGSM: `clip(x + eps sign(grad), 0, 1)`.
pub fn fgsm(logits_of: &impl Fn(Tensor<4>) -> Tensor<2>, images: Tensor<4>, labels: &Labels, eps: f64) -> Tensor<4> {
    let step = input_gradient(logits_of, images.clone(), labels).sign().mul_scalar(eps);
    (images + step).clamp(0.0, 1.0)
}

/// PGD: `steps` signed-gradient steps of size `alpha`, each projected back onto the eps-ball
/// around `images` and onto [0, 1]; from `images`, or a uniform point of the ball.
pub fn pgd(
    logits_of: &impl Fn(Tensor<4>) -> Tensor<2>,
    images: Tensor<4>,
    labels: &Labels,
    eps: f64,
    steps: usize,
    alpha: f64,
    random_start: bool,
) -> Tensor<4> {
    let (low, high) = ((images.clone() - eps).clamp_min(0.0), (images.clone() + eps).clamp_max(1.0));
    let mut x = images.clone();
    if random_start {
        x = (x.clone() + Tensor::random(x.dims(), Distribution::Uniform(-eps, eps), &x.device())).clamp(0.0, 1.0);
    }
    for _ in 0..steps {
        let step = input_gradient(logits_of, x.clone(), labels).sign().mul_scalar(alpha);
        x = (x + step).max_pair(low.clone()).min_pair(high.clone());
    }
    x
}

/// Clean and adversarial metrics of a run's best checkpoint on a split.
pub struct AttackReport {
    pub split: SplitName,
    pub options: AttackOptions,
    /// `None` for the clean images, then one row per eps.
    pub rows: Vec<(Option<f64>, Evaluation)>,
}

impl AttackReport {
    /// attack.json: `{"split", "options", "clean": {...}, "adversarial": [{"eps", ...}, ...]}`.
    fn to_json(&self) -> serde_json::Value {
        let adversarial: Vec<serde_json::Value> = self
            .rows
            .iter()
            .filter_map(|(eps, evaluation)| {
                let mut entry = serde_json::to_value(evaluation.split_metrics()).expect("metrics serialize");
                entry["eps"] = serde_json::json!((*eps)?);
                Some(entry)
            })
            .collect();
        serde_json::json!({
            "split": self.split,
            "options": self.options,
            "clean": self.rows[0].1.split_metrics(),
            "adversarial": adversarial,
            "medkd": build_info::json(),
        })
    }
}

pub fn attack_run(run: &RunDir, config: &RunConfig, split: SplitName, options: &AttackOptions) -> Result<AttackReport, TrainError> {
    let setup = RunSetup::new(config)?;
    if setup.info.task == medkd_data::Task::Localization {
        return Err(TrainError::Input("attacks measure classifiers (accuracy, AUC); this is a localization run".into()));
    }
    let dataset = setup.split(split);
    let normalization = setup.eval_pipeline.normalization().clone();
    let channels = setup.eval_pipeline.channels();
    // Images in [0, 1]: the eval transforms without their normalization.
    let raw = Arc::new(Pipeline::new(&config.data.eval_transforms, channels, Normalization::identity(channels))?);
    let loader = setup.eval_loader_with(config, dataset, raw)?;

    let device = setup.device.clone().autodiff();
    device.seed(options.seed);
    // Frozen on the autodiff device: BatchNorm uses its running statistics, and the graph reaches
    // the input without recording parameter gradients.
    let model = setup.load_best_on(run, &device)?.freeze();
    let [mean, std] = [&normalization.mean, &normalization.std]
        .map(|v| Tensor::<1>::from_data(TensorData::new(v.clone(), [channels]), &device).reshape([1, channels, 1, 1]));
    let logits_of = |x: Tensor<4>| model.logits((x - mean.clone()) / std.clone());

    let multi_label = setup.info.task == Task::MultiLabel;
    let mut clean = Predictions::empty(&setup.info);
    let mut adversarial: Vec<Predictions> = options.eps.iter().map(|_| Predictions::empty(&setup.info)).collect();
    for batch in loader.epoch(0) {
        let batch = batch?;
        let images = batch_tensor(&batch.images, batch.shape, &device);
        let labels = if multi_label {
            let values = batch.multi_hot();
            Labels::MultiHot(Tensor::from_data(TensorData::new(values, [batch.shape[0], setup.spec.num_classes]), &device))
        } else {
            Labels::Classes(batch.class_labels())
        };
        let record = |predictions: &mut Predictions, x: Tensor<4>, targets: &[Target]| {
            predictions.probs.extend(probabilities_of(logits_of(x.detach()).detach(), &setup.info));
            predictions.targets.extend(targets.iter().cloned());
            predictions.ids.extend(batch.indices.iter().map(|i| i.to_string()));
        };
        record(&mut clean, images.clone(), &batch.targets);
        for (eps, predictions) in options.eps.iter().zip(&mut adversarial) {
            let x = match options.kind {
                AttackKind::Fgsm => fgsm(&logits_of, images.clone(), &labels, *eps),
                AttackKind::Pgd => {
                    pgd(&logits_of, images.clone(), &labels, *eps, options.steps, options.alpha.unwrap_or(eps / 4.0), options.random_start)
                }
            };
            record(predictions, x, &batch.targets);
        }
    }
    let mut rows = vec![(None, evaluate(&clean, &setup.info, &setup.shot_groups)?)];
    for (eps, predictions) in options.eps.iter().zip(&adversarial) {
        rows.push((Some(*eps), evaluate(predictions, &setup.info, &setup.shot_groups)?));
    }
    let report = AttackReport { split, options: options.clone(), rows };
    run.write_json(&run.root().join("attack.json"), &report.to_json())?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use burn::tensor::activation::softmax;

    use super::*;

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    /// A linear classifier `z = W flatten(x)`: its cross-entropy input gradient is, analytically,
    /// `W^T (softmax(z) - onehot(y))` per sample.
    fn linear(weights: &Tensor<2>) -> impl Fn(Tensor<4>) -> Tensor<2> + '_ {
        move |x: Tensor<4>| {
            let [n, c, h, w] = x.dims();
            x.reshape([n, c * h * w]).matmul(weights.clone().transpose())
        }
    }

    fn setup() -> (Device, Tensor<2>, Tensor<4>, Labels) {
        let device = medkd_models::test_device().autodiff();
        device.seed(5);
        let weights = Tensor::<2>::random([3, 2 * 4 * 4], Distribution::Normal(0.0, 1.0), &device);
        let images = Tensor::<4>::random([5, 2, 4, 4], Distribution::Uniform(0.0, 1.0), &device);
        (device, weights, images, Labels::Classes(vec![0, 1, 2, 1, 0]))
    }

    #[test]
    fn fgsm_steps_eps_times_the_sign_of_the_analytic_gradient() {
        let (device, weights, images, labels) = setup();
        let logits = linear(&weights)(images.clone()).detach();
        let onehot =
            Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 0., 0., 0., 1., 0., 0., 0., 1., 0., 1., 0., 1., 0., 0.], [5, 3]), &device);
        let analytic = (softmax(logits, 1) - onehot).matmul(weights.clone().detach()).reshape([5, 2, 4, 4]);
        let eps = 0.01;
        let adversarial = fgsm(&linear(&weights), images.clone(), &labels, eps);
        let expected = (images.clone() + analytic.sign().mul_scalar(eps)).clamp(0.0, 1.0);
        for (a, e) in values(adversarial).iter().zip(values(expected)) {
            assert!((a - e).abs() < 1e-6, "{a} vs {e}");
        }
        let gradient = values(input_gradient(&linear(&weights), images, &labels));
        assert!(gradient.iter().all(|g| g.abs() > 0.0), "a linear model moves every pixel");
    }

    #[test]
    fn pgd_stays_in_the_eps_ball_and_the_image_range() {
        let (_, weights, images, labels) = setup();
        let eps = 0.05;
        for random_start in [false, true] {
            let adversarial = pgd(&linear(&weights), images.clone(), &labels, eps, 7, 0.02, random_start);
            for (a, x) in values(adversarial).iter().zip(values(images.clone())) {
                assert!((a - x).abs() <= eps as f32 + 1e-6 && (0.0..=1.0).contains(a), "{a} from {x}");
            }
        }
        // PGD raises the loss at least as much as FGSM's single step here.
        let loss = |x: Tensor<4>| match &labels {
            Labels::Classes(c) => cross_entropy(linear(&weights)(x), c, None, 0.0).into_scalar::<f32>(),
            Labels::MultiHot(_) => unreachable!(),
        };
        let (clean, after) = (loss(images.clone()), loss(pgd(&linear(&weights), images.clone(), &labels, eps, 7, 0.02, false)));
        assert!(after > clean, "{after} vs {clean}");
    }

    #[test]
    fn a_model_with_a_constant_output_is_unaffected() {
        let (device, _, images, labels) = setup();
        let bias = Tensor::<2>::from_data([[0.3f32, -1.0, 2.0]], &device);
        let constant = |x: Tensor<4>| {
            let [n, ..] = x.dims();
            bias.clone().repeat_dim(0, n) + x.sum().reshape([1, 1]).mul_scalar(0.0)
        };
        let clean = values(images.clone());
        assert_eq!(values(fgsm(&constant, images.clone(), &labels, 0.1)), clean);
        assert_eq!(values(pgd(&constant, images, &labels, 0.1, 3, 0.05, false)), clean);
    }
}

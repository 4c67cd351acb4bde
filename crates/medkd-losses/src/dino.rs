//! DINO self-distillation (Caron et al., 2021; methods.md §2 and A.2): the projection head, the
//! cross-entropy between the centred, sharpened teacher and the student over every pair of
//! different views, the centre's momentum update, and the schedules DINO trains with. Written
//! after `facebookresearch/dino` (`DINOHead`, `DINOLoss`, `utils.cosine_scheduler`);
//! `tools/golden/dino_golden.py` runs that code for the golden values.

use burn::module::{Module, Param};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{log_softmax, softmax};
use medkd_models::gelu;

use crate::feature::l2_normalize;

/// The head's shape: `in_dim` → `hidden` → `hidden` → `bottleneck` (GELU between, three linear
/// layers as DINO's default `nlayers = 3`), L2 normalization, then a weight-normalized linear
/// layer to `out_dim` without bias.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DinoHeadShape {
    pub in_dim: usize,
    pub out_dim: usize,
    pub hidden: usize,
    pub bottleneck: usize,
}

impl DinoHeadShape {
    /// DINO's defaults for `in_dim` and `out_dim`: hidden 2048, bottleneck 256.
    pub fn new(in_dim: usize, out_dim: usize) -> Self {
        Self { in_dim, out_dim, hidden: 2048, bottleneck: 256 }
    }
}

/// DINO's projection head. Names follow `DINOHead`'s children where they can (`mlp.*`,
/// `last_layer.weight_v`); the MLP's linear layers are numbered 0, 1, 2 (DINO's Sequential
/// numbers them 0, 2, 4 around its GELUs). The last layer's gain `weight_g` is DINO's
/// `norm_last_layer = True`: fixed at 1, so each output unit's weight is a unit vector.
#[derive(Module, Debug)]
pub struct DinoHead {
    mlp: Vec<Linear>,
    last_layer: WeightNormLinear,
}

/// `torch.nn.utils.weight_norm(Linear(bottleneck, out_dim, bias=False))` with its gain fixed at
/// 1: the weight is `weight_v` with each row scaled to unit length.
#[derive(Module, Debug)]
struct WeightNormLinear {
    /// `[out_dim, bottleneck]`, PyTorch's layout.
    weight_v: Param<Tensor<2>>,
}

impl DinoHead {
    /// DINO's init: linear weights normal with std 0.02 (DINO truncates at ±2 std), zero biases.
    pub fn new(shape: DinoHeadShape, device: &Device) -> Self {
        let linear = |from: usize, to: usize| {
            LinearConfig::new(from, to).with_initializer(Initializer::Normal { mean: 0.0, std: 0.02 }).init(device)
        };
        let mut mlp = vec![linear(shape.in_dim, shape.hidden), linear(shape.hidden, shape.hidden), linear(shape.hidden, shape.bottleneck)];
        for (layer, width) in mlp.iter_mut().zip([shape.hidden, shape.hidden, shape.bottleneck]) {
            layer.bias = Some(Initializer::Zeros.init([width], device));
        }
        // DINO's last layer keeps PyTorch's default Linear init (Kaiming-uniform, bound 1/sqrt(fan_in)).
        let bound = 1.0 / (shape.bottleneck as f64).sqrt();
        let weight_v = Initializer::Uniform { min: -bound, max: bound }.init([shape.out_dim, shape.bottleneck], device);
        Self { mlp, last_layer: WeightNormLinear { weight_v } }
    }

    /// `[N, in_dim]` embeddings (a ViT's CLS token) → `[N, out_dim]` logits.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.forward_with(x, true)
    }

    /// [`DinoHead::forward`]; with `train_last_layer = false` no gradient reaches the last layer
    /// (DINO's `cancel_gradients_last_layer` in the first epochs), so the optimizer leaves it as
    /// it is.
    pub fn forward_with(&self, x: Tensor<2>, train_last_layer: bool) -> Tensor<2> {
        let last = self.mlp.len() - 1;
        let x = self.mlp.iter().enumerate().fold(x, |x, (i, layer)| if i < last { gelu(layer.forward(x)) } else { layer.forward(x) });
        let weight_v = if train_last_layer { self.last_layer.weight_v.val() } else { self.last_layer.weight_v.val().detach() };
        l2_normalize(x, 1).matmul(l2_normalize(weight_v, 1).transpose())
    }
}

/// DINO's loss over a batch's views. `student[v]` are the student's head outputs for view `v`
/// (`[B, out_dim]` each; the global views first, then the local ones), `teacher[t]` the
/// teacher's for the global views only. With `p_t = softmax((teacher[t] − center) / teacher_temp)`
/// (no gradient) and `log q_v = log_softmax(student[v] / student_temp)`, the loss is the mean over
/// every pair `t ≠ v` of the batch mean of `−Σ p_t · log q_v`: a view is never matched with
/// itself.
pub fn dino_loss(student: &[Tensor<2>], teacher: &[Tensor<2>], center: &Tensor<2>, student_temp: f64, teacher_temp: f64) -> Tensor<1> {
    let targets: Vec<Tensor<2>> =
        teacher.iter().map(|t| softmax((t.clone().detach() - center.clone()).div_scalar(teacher_temp), 1)).collect();
    let log_probs: Vec<Tensor<2>> = student.iter().map(|s| log_softmax(s.clone().div_scalar(student_temp), 1)).collect();
    let mut total: Option<Tensor<1>> = None;
    let mut pairs = 0;
    for (t, target) in targets.iter().enumerate() {
        for (v, log_q) in log_probs.iter().enumerate() {
            if v == t {
                continue;
            }
            let term = (target.clone() * log_q.clone()).sum_dim(1).mean().neg().reshape([1]);
            total = Some(match total {
                Some(total) => total + term,
                None => term,
            });
            pairs += 1;
        }
    }
    total.expect("DINO needs two views or more").div_scalar(pairs as f64)
}

/// DINO's centre after a step: `momentum · center + (1 − momentum) · mean` of every teacher output
/// row of the step (all global views), `[1, out_dim]`. No gradient.
pub fn updated_center(center: Tensor<2>, teacher: &[Tensor<2>], momentum: f64) -> Tensor<2> {
    let rows = Tensor::cat(teacher.iter().map(|t| t.clone().detach()).collect(), 0);
    let batch_center = rows.mean_dim(0);
    center.mul_scalar(momentum) + batch_center.mul_scalar(1.0 - momentum)
}

/// The teacher temperature at `epoch`: linear from `warmup_start` to `temp` over the first
/// `warmup_epochs` epochs (`np.linspace(warmup_start, temp, warmup_epochs)`), then `temp`.
pub fn teacher_temperature(epoch: usize, warmup_start: f64, temp: f64, warmup_epochs: usize) -> f64 {
    match warmup_epochs {
        0 => temp,
        1 if epoch == 0 => warmup_start,
        _ if epoch < warmup_epochs => warmup_start + (temp - warmup_start) * epoch as f64 / (warmup_epochs - 1) as f64,
        _ => temp,
    }
}

/// DINO's `cosine_scheduler` at iteration `step` of `total` (epochs × iterations per epoch): a
/// linear warm-up from `warmup_start` to `base` over the first `warmup` iterations, then
/// `final_value + (base − final_value) · (1 + cos(π i / (total − warmup))) / 2` for the `i`-th
/// iteration after it. DINO schedules the learning rate, the weight decay and the teacher's
/// momentum with it.
pub fn cosine_schedule(base: f64, final_value: f64, step: usize, total: usize, warmup: usize, warmup_start: f64) -> f64 {
    if step < warmup {
        return warmup_start + (base - warmup_start) * step as f64 / (warmup - 1).max(1) as f64;
    }
    let i = (step - warmup) as f64;
    final_value + 0.5 * (base - final_value) * (1.0 + (std::f64::consts::PI * i / (total - warmup) as f64).cos())
}

#[cfg(test)]
mod tests {
    use burn::tensor::TensorData;
    use serde_json::Value;

    use super::*;

    fn golden() -> Value {
        serde_json::from_str(include_str!("../tests/golden/dino.json")).expect("golden file; regenerate with tools/golden/dino_golden.py")
    }

    fn floats(value: &Value) -> Vec<f32> {
        value.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect()
    }

    fn usize_of(value: &Value) -> usize {
        value.as_u64().unwrap() as usize
    }

    fn tensor(value: &Value, shape: [usize; 2], device: &Device) -> Tensor<2> {
        Tensor::from_data(TensorData::new(floats(value), shape), device)
    }

    fn max_diff(a: Tensor<2>, b: &[f32]) -> f32 {
        let a: Vec<f32> = a.into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    /// DINO's `DINOHead` (norm_last_layer) on seeded weights and inputs.
    #[test]
    fn head_matches_dino() {
        let golden = golden();
        let case = &golden["head"];
        let device = medkd_models::test_device();
        let shape = DinoHeadShape {
            in_dim: usize_of(&case["in_dim"]),
            out_dim: usize_of(&case["out_dim"]),
            hidden: usize_of(&case["hidden"]),
            bottleneck: usize_of(&case["bottleneck"]),
        };
        let mut head = DinoHead::new(shape, &device);
        let params = &case["params"];
        let widths = [(shape.in_dim, shape.hidden), (shape.hidden, shape.hidden), (shape.hidden, shape.bottleneck)];
        for (i, (layer, (from, to))) in head.mlp.iter_mut().zip(widths).enumerate() {
            // PyTorch's [out, in] weight; burn keeps [in, out].
            layer.weight = Param::from_tensor(tensor(&params[format!("mlp.{i}.weight")], [to, from], &device).transpose());
            layer.bias =
                Some(Param::from_tensor(Tensor::from_data(TensorData::new(floats(&params[format!("mlp.{i}.bias")]), [to]), &device)));
        }
        head.last_layer.weight_v = Param::from_tensor(tensor(&params["last_layer.weight_v"], [shape.out_dim, shape.bottleneck], &device));
        let output = head.forward(tensor(&case["input"], [5, shape.in_dim], &device));
        let diff = max_diff(output, &floats(&case["output"]));
        assert!(diff < 1e-5, "head output differs by {diff}");
    }

    /// DINO's `DINOLoss` on 2 global and 3 local views: the loss, its gradient for every student
    /// view (none flows to the teacher), and the centre after the update; at the warm-up's first
    /// teacher temperature and after it.
    #[test]
    fn loss_gradient_and_center_match_dino() {
        let golden = golden();
        let device = medkd_models::test_device().autodiff();
        for case in golden["loss"].as_array().unwrap() {
            let (batch, out_dim, crops) = (usize_of(&case["batch"]), usize_of(&case["out_dim"]), usize_of(&case["ncrops"]));
            let student = tensor(&case["student"], [crops * batch, out_dim], &device).require_grad();
            let teacher = tensor(&case["teacher"], [2 * batch, out_dim], &device).require_grad();
            let views = |x: &Tensor<2>, n: usize| (0..n).map(|v| x.clone().narrow(0, v * batch, batch)).collect::<Vec<_>>();
            let center = tensor(&case["center"], [1, out_dim], &device);
            let temps = (case["student_temp"].as_f64().unwrap(), case["teacher_temp"].as_f64().unwrap());
            let loss = dino_loss(&views(&student, crops), &views(&teacher, 2), &center, temps.0, temps.1);
            let value: f32 = loss.clone().into_scalar();
            let expected = case["loss"].as_f64().unwrap() as f32;
            assert!((value - expected).abs() < 1e-5 * expected.abs(), "loss {value} vs {expected}");
            let grads = loss.backward();
            let diff = max_diff(student.grad(&grads).unwrap(), &floats(&case["student_grad"]));
            assert!(diff < 1e-5, "student gradient differs by {diff}");
            assert!(teacher.grad(&grads).is_none(), "the teacher's outputs get no gradient");
            let after = updated_center(center, &views(&teacher, 2), case["center_momentum"].as_f64().unwrap());
            let diff = max_diff(after, &floats(&case["center_after"]));
            assert!(diff < 1e-6, "centre differs by {diff}");
        }
    }

    #[test]
    fn schedules_match_dino() {
        let golden = golden();
        let t = &golden["teacher_temperature"];
        let (start, temp, warmup) = (t["warmup_start"].as_f64().unwrap(), t["temp"].as_f64().unwrap(), usize_of(&t["warmup_epochs"]));
        for (epoch, expected) in t["values"].as_array().unwrap().iter().enumerate() {
            let got = teacher_temperature(epoch, start, temp, warmup);
            assert!((got - expected.as_f64().unwrap()).abs() < 1e-12, "epoch {epoch}: {got} vs {expected}");
        }
        let c = &golden["cosine"];
        let per_epoch = usize_of(&c["niter_per_ep"]);
        let total = usize_of(&c["epochs"]) * per_epoch;
        let warmup = usize_of(&c["warmup_epochs"]) * per_epoch;
        let values = c["values"].as_array().unwrap();
        assert_eq!(values.len(), total);
        for (step, expected) in values.iter().enumerate() {
            let got = cosine_schedule(
                c["base"].as_f64().unwrap(),
                c["final"].as_f64().unwrap(),
                step,
                total,
                warmup,
                c["warmup_start"].as_f64().unwrap(),
            );
            assert!((got - expected.as_f64().unwrap()).abs() < 1e-15, "step {step}: {got} vs {expected}");
        }
    }
}

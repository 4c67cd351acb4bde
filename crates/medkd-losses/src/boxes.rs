//! Box regression: the four outputs of a localization head as a normalized `[x0, y0, x1, y1]`
//! box, and the per-box losses the `box_l1` and `giou` terms average (DETR's pair of box losses).

use burn::prelude::*;
use burn::tensor::activation::sigmoid;

use crate::term::{LossTerm, TermAt};
use crate::{LossContext, LossError, Targets};

/// Guards the divisions of GIoU, as torchvision's `generalized_box_iou_loss` (eps = 1e-7).
const EPS: f32 = 1e-7;

/// `[N, 4]` head outputs -> `[N, 4]` boxes: through a sigmoid, a centre and a size in [0, 1],
/// then `[cx - w/2, cy - h/2, cx + w/2, cy + h/2]`, so every prediction is a box with x1 > x0
/// and y1 > y0 from the first step (DETR's parametrization).
pub fn decode_boxes(outputs: Tensor<2>) -> Tensor<2> {
    let outputs = sigmoid(outputs);
    let (centre, half) = (outputs.clone().narrow(1, 0, 2), outputs.narrow(1, 2, 2).div_scalar(2.0));
    Tensor::cat(vec![centre.clone() - half.clone(), centre + half], 1)
}

/// Per box: the L1 distance summed over the four coordinates (DETR's `loss_bbox` per box). `[N]`.
pub fn box_l1(predicted: Tensor<2>, truth: Tensor<2>) -> Tensor<1> {
    (predicted - truth).abs().sum_dim(1).squeeze_dim(1)
}

/// Per box: 1 - generalized IoU (Rezatofighi et al. 2019), as torchvision's
/// `generalized_box_iou_loss` with `reduction = "none"`. `[N]`.
pub fn giou_loss(predicted: Tensor<2>, truth: Tensor<2>) -> Tensor<1> {
    let coord = |b: &Tensor<2>, i: usize| b.clone().narrow(1, i, 1);
    let [px0, py0, px1, py1] = [0, 1, 2, 3].map(|i| coord(&predicted, i));
    let [tx0, ty0, tx1, ty1] = [0, 1, 2, 3].map(|i| coord(&truth, i));
    let area = |x0: &Tensor<2>, y0: &Tensor<2>, x1: &Tensor<2>, y1: &Tensor<2>| (x1.clone() - x0.clone()) * (y1.clone() - y0.clone());
    let (xi0, yi0) = (px0.clone().max_pair(tx0.clone()), py0.clone().max_pair(ty0.clone()));
    let (xi1, yi1) = (px1.clone().min_pair(tx1.clone()), py1.clone().min_pair(ty1.clone()));
    let intersection = (xi1 - xi0).clamp_min(0.0) * (yi1 - yi0).clamp_min(0.0);
    let union = area(&px0, &py0, &px1, &py1) + area(&tx0, &ty0, &tx1, &ty1) - intersection.clone();
    let iou = intersection / (union.clone() + EPS);
    let (xc0, yc0) = (px0.min_pair(tx0), py0.min_pair(ty0));
    let (xc1, yc1) = (px1.max_pair(tx1), py1.max_pair(ty1));
    let enclosing = (xc1 - xc0) * (yc1 - yc0);
    let giou = iou - (enclosing.clone() - union) / (enclosing + EPS);
    giou.neg().add_scalar(1.0).squeeze_dim(1)
}

/// A resolved box term: `loss` per box between the decoded head outputs and the true boxes,
/// averaged over the batch with the batch's sample weights (1 each without them).
pub(crate) struct BoxTerm {
    pub loss: fn(Tensor<2>, Tensor<2>) -> Tensor<1>,
}

impl LossTerm for BoxTerm {
    fn weighs_samples(&self) -> bool {
        true
    }

    fn value(&self, ctx: &LossContext, _at: &TermAt) -> Result<Tensor<1>, LossError> {
        let Targets::Boxes(boxes) = ctx.targets else {
            unreachable!("Objective::new checked that box terms train box targets, and the loader yields targets of that kind")
        };
        let device = ctx.student.logits.device();
        let truth = Tensor::<2>::from_data(TensorData::new(boxes.concat(), [boxes.len(), 4]), &device);
        let per_box = (self.loss)(decode_boxes(ctx.student.logits.clone()), truth);
        Ok(match ctx.sample_weights {
            Some(weights) => (per_box * Tensor::<1>::from_data(TensorData::new(weights.to_vec(), [weights.len()]), &device)).mean(),
            None => per_box.mean(),
        })
    }
}

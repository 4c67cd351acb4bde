//! SSKD's rotation self-supervision (Xu et al. 2020; SSD-KD, methods.md §4 and A.4). Every image
//! of a batch becomes four views, rotated by 0, 90, 180 and 270 degrees, interleaved so that row
//! `4i` is image `i` as loaded (the "normal" view) and rows `4i+1..4i+3` its rotations. Terms
//! that do not know about rotations read the normal rows only.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{log_softmax, relu};

use crate::feature::l2_normalize;
use crate::kd_kl;

/// Number of views per image.
pub const VIEWS: usize = 4;

/// `[B, C, H, W]` -> `[4B, C, H, W]`: each image followed by its rotations by 90, 180 and 270
/// degrees counter-clockwise (`torch.rot90(x, k, (2, 3))`, k = 1, 2, 3). Needs `H == W`.
pub fn with_rotations(images: Tensor<4>) -> Tensor<4> {
    let [b, c, h, w] = images.dims();
    assert_eq!(h, w, "rotated views need square images");
    let rot90 = images.clone().flip([3]).swap_dims(2, 3);
    let rot180 = images.clone().flip([2, 3]);
    let rot270 = images.clone().flip([2]).swap_dims(2, 3);
    Tensor::stack::<5>(vec![images, rot90, rot180, rot270], 1).reshape([b * VIEWS, c, h, w])
}

/// The normal-view rows of a `[4B, D]` tensor: `[B, D]`.
pub fn normal_rows(x: Tensor<2>) -> Tensor<2> {
    let [n, d] = x.dims();
    x.reshape([n / VIEWS, VIEWS, d]).narrow(1, 0, 1).reshape([n / VIEWS, d])
}

/// The rotated-view rows of a `[4B, D]` tensor, image by image: `[3B, D]`.
pub fn rotated_rows(x: Tensor<2>) -> Tensor<2> {
    let [n, d] = x.dims();
    let rotated = (VIEWS - 1) * n / VIEWS;
    x.reshape([n / VIEWS, VIEWS, d]).narrow(1, 1, VIEWS - 1).reshape([rotated, d])
}

/// SSKD's error-level ranking. Row `r` of the `rows x cols` matrix `scores` ranks its target
/// column `targets[r]` at the number of entries greater than the target's; rank 0 is correct.
/// Rows are ordered by rank (stably) and the first `n_correct + floor(n_wrong * ratio)` are
/// kept, returned in ascending row order.
pub fn error_level_keep(scores: &[f32], cols: usize, targets: &[usize], ratio: f64) -> Vec<usize> {
    let ranks: Vec<usize> = targets
        .iter()
        .enumerate()
        .map(|(r, &target)| {
            let row = &scores[r * cols..(r + 1) * cols];
            row.iter().filter(|&&v| v > row[target]).count()
        })
        .collect();
    let wrong = ranks.iter().filter(|&&rank| rank > 0).count();
    let keep = targets.len() - wrong + (wrong as f64 * ratio).floor() as usize;
    let mut order: Vec<usize> = (0..targets.len()).collect();
    order.sort_by_key(|&r| ranks[r]);
    order.truncate(keep);
    order.sort_unstable();
    order
}

/// [`kd_kl`] (SSKD's batchmean KL x T^2) over the kept rows only; 0 when none is kept.
fn kept_rows_kl(student: Tensor<2>, teacher: Tensor<2>, kept: &[usize], temperature: f32) -> Tensor<1> {
    let device = student.device();
    if kept.is_empty() {
        return Tensor::zeros([1], &device);
    }
    let index = Tensor::<1, Int>::from_data(TensorData::new(kept.iter().map(|&i| i as i64).collect(), [kept.len()]), &device);
    kd_kl(student.select(0, index.clone()), teacher.select(0, index), temperature)
}

fn host_values(x: Tensor<2>) -> Vec<f32> {
    x.into_data().convert::<f32>().try_into_vec::<f32>().expect("float tensor data")
}

/// SSKD's L3: KD at temperature `T` on the rotated views of a `[4B, C]` logits pair, restricted
/// to the views whose teacher prediction error-level ranking keeps (target: the image's class).
pub fn kd_rotated(student_logits: Tensor<2>, teacher_logits: Tensor<2>, classes: &[usize], temperature: f32, ratio: f64) -> Tensor<1> {
    let (student, teacher) = (rotated_rows(student_logits), rotated_rows(teacher_logits.detach()));
    let [_, num_classes] = teacher.dims();
    let targets: Vec<usize> = classes.iter().flat_map(|&c| [c; VIEWS - 1]).collect();
    let kept = error_level_keep(&host_values(teacher.clone()), num_classes, &targets, ratio);
    kept_rows_kl(student, teacher, &kept, temperature)
}

/// The `3B x B` cosine similarities between every rotated view (rows, image by image) and every
/// normal view (columns) of `[4B, D]` projections.
pub fn rotation_similarity(projected: Tensor<2>) -> Tensor<2> {
    let projected = l2_normalize(projected, 1);
    rotated_rows(projected.clone()).matmul(normal_rows(projected).transpose())
}

/// Each rotated view's own image index: the target column of its similarity row.
fn own_images(batch: usize) -> Vec<usize> {
    (0..batch).flat_map(|i| [i; VIEWS - 1]).collect()
}

/// SSKD's L4: KD at temperature `T` between the teacher's and the student's similarity rows
/// ([`rotation_similarity`] of their projections), on the rows error-level ranking keeps on the
/// teacher's matrix (target: the view's own image).
pub fn similarity_kd(student_projected: Tensor<2>, teacher_projected: Tensor<2>, temperature: f32, ratio: f64) -> Tensor<1> {
    let student = rotation_similarity(student_projected);
    let teacher = rotation_similarity(teacher_projected.detach());
    let [_, batch] = teacher.dims();
    let kept = error_level_keep(&host_values(teacher.clone()), batch, &own_images(batch), ratio);
    kept_rows_kl(student, teacher, &kept, temperature)
}

/// The self-supervised task the teacher's head is trained on (SSKD stage 1): cross-entropy of
/// each rotated view's similarity row against its own image, `F.cross_entropy(S, own_index)`.
pub fn rotation_contrastive(projected: Tensor<2>) -> Tensor<1> {
    let similarity = rotation_similarity(projected);
    let [rows, batch] = similarity.dims();
    let own = own_images(batch);
    let targets = Tensor::<1, Int>::from_data(TensorData::new(own.iter().map(|&i| i as i64).collect(), [rows]), &similarity.device());
    let picked = log_softmax(similarity, 1).gather(1, targets.reshape([rows, 1]));
    picked.mean().neg()
}

/// SSKD's projection head on a pooled embedding: Linear(d, d), ReLU, Linear(d, d), with
/// PyTorch's default initialization.
#[derive(Module, Debug)]
pub struct ProjectionHead {
    fc1: Linear,
    fc2: Linear,
}

impl ProjectionHead {
    pub fn new(dim: usize, device: &Device) -> Self {
        Self { fc1: LinearConfig::new(dim, dim).init(device), fc2: LinearConfig::new(dim, dim).init(device) }
    }

    pub fn forward(&self, pooled: Tensor<2>) -> Tensor<2> {
        self.fc2.forward(relu(self.fc1.forward(pooled)))
    }
}

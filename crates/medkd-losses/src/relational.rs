use burn::prelude::*;

use crate::feature::l2_normalize;

/// Elementwise smooth-L1 (Huber, delta 1): `0.5 d^2` for `|d| < 1`, else `|d| - 0.5`, written
/// without branches as `0.5 q^2 + (|d| - q)` with `q = min(|d|, 1)`.
fn smooth_l1<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> Tensor<D> {
    let distance = (a - b).abs();
    let quadratic = distance.clone().clamp_max(1.0);
    quadratic.clone().square().mul_scalar(0.5) + distance - quadratic
}

/// Pairwise Euclidean distances from `||a||^2 + ||b||^2 - 2 a.b` (clamped at 1e-12 before the
/// square root), diagonal zeroed, divided by the mean off-diagonal distance.
fn normalized_distances(x: Tensor<2>) -> Tensor<2> {
    let [n, _] = x.dims();
    let squared_norms = x.clone().square().sum_dim(1);
    let gram = x.clone().matmul(x.transpose());
    let distances = (squared_norms.clone() + squared_norms.transpose() - gram.mul_scalar(2.0)).clamp_min(1e-12).sqrt();
    let diagonal = Tensor::<2, Bool>::diag_mask([n, n], 0, &distances.device()).bool_not();
    let distances = distances.mask_fill(diagonal, 0.0);
    let mean = distances.clone().sum().div_scalar((n * (n - 1)) as f32);
    distances / mean.unsqueeze()
}

/// Park et al. (2019) RKD distance loss: smooth-L1 (mean over the `N x N` entries) between the
/// student's and teacher's pairwise-distance matrices, each divided by its mean off-diagonal
/// distance; lenscloth/RKD `RkdDistance`. Embedding widths may differ; needs `N >= 2`.
pub fn rkd_distance(student: Tensor<2>, teacher: Tensor<2>) -> Tensor<1> {
    smooth_l1(normalized_distances(student), normalized_distances(teacher)).mean()
}

/// Cosines `<e_ji, e_jk>` with `e_ji = normalize(x_i - x_j)` for vertices `j` in `vertices`:
/// `len x N x N`, from `len x N x C` differences.
fn angles(x: Tensor<2>, vertices: std::ops::Range<usize>) -> Tensor<3> {
    let [n, c] = x.dims();
    let len = vertices.len();
    let anchors = x.clone().slice(vertices).reshape([len, 1, c]);
    let edges = l2_normalize(x.reshape([1, n, c]) - anchors, 2);
    edges.clone().matmul(edges.swap_dims(1, 2))
}

/// Park et al. (2019) RKD angle loss: smooth-L1 mean over all `N^3` triplets between the
/// student's and teacher's cosines `<e_ji, e_jk>`, `e_ji = normalize(x_i - x_j)`; lenscloth/RKD
/// `RKdAngle`. Computed `chunk` vertices `j` at a time, so memory holds `chunk x N x C`
/// differences and `chunk x N x N` cosines instead of the full `N x N x C` tensor. (Under
/// autodiff each chunk's differences stay saved for the backward pass, so there the bound holds
/// for the teacher's detached side and for inference, not for the student's graph.)
pub fn rkd_angle(student: Tensor<2>, teacher: Tensor<2>, chunk: usize) -> Tensor<1> {
    let [n, _] = student.dims();
    assert!(chunk > 0, "rkd_angle needs a positive chunk size");
    (0..n)
        .step_by(chunk)
        .map(|start| {
            let vertices = start..(start + chunk).min(n);
            smooth_l1(angles(student.clone(), vertices.clone()), angles(teacher.clone(), vertices)).sum()
        })
        .reduce(|total, part| total + part)
        .expect("rkd_angle needs a non-empty batch")
        .div_scalar((n * n * n) as f32)
}

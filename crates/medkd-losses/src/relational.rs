use burn::prelude::*;

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

/// Squared differences below this fraction of the mean squared difference count as zero: the
/// Gram form below leaves them with float32 rounding noise of about that size.
const COINCIDENT: f32 = 1e-5;

/// Cosines `<e_ji, e_jk>` with `e_ji = normalize(x_i - x_j)` for vertices `j` in `vertices`:
/// `len x N x N`, from the Gram matrix `gram` of the centred rows (cosines do not move with the
/// origin; centring keeps the entries at the scale of the differences) and its diagonal
/// `squared_norms` (`1 x N`): `<x_i - x_j, x_k - x_j> = G_ik - G_ij - G_jk + G_jj` and
/// `|x_i - x_j|^2 = G_ii - 2 G_ij + G_jj`. A chunk then costs `len N^2` element operations
/// instead of the `len N^2 C` multiply-adds of normalizing `len x N x C` differences. A zero
/// difference (`i = j`, or a coincident pair) gives 0, as normalizing it does in the direct form.
fn angles(gram: &Tensor<2>, squared_norms: &Tensor<2>, tolerance: f32, vertices: std::ops::Range<usize>) -> Tensor<3> {
    let [n, _] = gram.dims();
    let len = vertices.len();
    let to_vertex = gram.clone().slice(vertices.clone()); // G_ji: len x N
    let at_vertex = squared_norms.clone().slice([0..1, vertices]).reshape([len, 1]); // G_jj
    let squared = squared_norms.clone() + at_vertex.clone() - to_vertex.clone().mul_scalar(2.0);
    // Constants (no graph): which differences are nonzero. The dropped ones are zeroed through
    // `kept`; the clamp only keeps their lengths (and gradients) finite.
    let kept = squared.clone().greater_elem(tolerance).float();
    let lengths = squared.clamp_min(tolerance.max(1e-24)).sqrt();
    let dots = gram.clone().reshape([1, n, n]) - to_vertex.clone().reshape([len, n, 1]) - to_vertex.reshape([len, 1, n])
        + at_vertex.reshape([len, 1, 1]);
    let scale = (kept.clone().reshape([len, n, 1]) * kept.reshape([len, 1, n]))
        / (lengths.clone().reshape([len, n, 1]) * lengths.reshape([len, 1, n]));
    (dots * scale).clamp(-1.0, 1.0)
}

/// Park et al. (2019) RKD angle loss: smooth-L1 mean over all `N^3` triplets between the
/// student's and teacher's cosines `<e_ji, e_jk>`, `e_ji = normalize(x_i - x_j)`; lenscloth/RKD
/// `RKdAngle`. Computed `chunk` vertices `j` at a time, so memory holds `chunk x N x N` cosines
/// instead of all `N^3`.
pub fn rkd_angle(student: Tensor<2>, teacher: Tensor<2>, chunk: usize) -> Tensor<1> {
    let [n, _] = student.dims();
    assert!(chunk > 0, "rkd_angle needs a positive chunk size");
    let relations = |x: Tensor<2>| {
        let centred = x.clone() - x.mean_dim(0);
        let gram = centred.clone().matmul(centred.clone().transpose());
        let squared_norms = centred.square().sum_dim(1).transpose();
        // The mean of |x_i - x_j|^2 over all pairs is twice the mean squared norm of centred rows.
        let tolerance = COINCIDENT * 2.0 * squared_norms.clone().mean().into_scalar::<f32>();
        (gram, squared_norms, tolerance)
    };
    let (student, teacher) = (relations(student), relations(teacher));
    (0..n)
        .step_by(chunk)
        .map(|start| {
            let vertices = start..(start + chunk).min(n);
            let angles =
                |(gram, squared_norms, tolerance): &(Tensor<2>, Tensor<2>, f32)| angles(gram, squared_norms, *tolerance, vertices.clone());
            smooth_l1(angles(&student), angles(&teacher)).sum()
        })
        .reduce(|total, part| total + part)
        .expect("rkd_angle needs a non-empty batch")
        .div_scalar((n * n * n) as f32)
}

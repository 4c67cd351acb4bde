//! Vision transformers (Dosovitskiy et al., 2021) at DeiT's Tiny and Small sizes, with timm's
//! parameter names (`cls_token`, `pos_embed`, `patch_embed.proj`, `blocks.N.norm1`,
//! `blocks.N.attn.qkv`, `blocks.N.attn.proj`, `blocks.N.norm2`, `blocks.N.mlp.fc1`/`fc2`,
//! `norm`, `head`), so timm and DINO checkpoints load as they are.
//!
//! As timm's `VisionTransformer` with its defaults: a CLS token, learned absolute position
//! embeddings, pre-norm blocks (LayerNorm eps 1e-6, qkv with bias, MLP ratio 4, exact GELU), a
//! final LayerNorm, and logits from the CLS token. Stochastic depth grows linearly from 0 at the
//! first block to `drop_path_rate` at the last.
//!
//! The position embeddings are learned for the grid of `ModelSpec::image_size`. Another input
//! size, or a checkpoint made for another grid, gets them resampled as timm does
//! (`resample_abs_pos_embed`: bicubic with antialiasing, PyTorch's kernel), see
//! [`grid_resampling`].

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig, Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{Device, Tensor, TensorData};

use crate::error::ModelError;
use crate::features::Stages;
use crate::model::ModelSpec;
use crate::transformer_ops::{attention, attention_weights, gelu, layer_norm, linear};

/// The position embeddings' checkpoint name.
pub(crate) const POS_EMBED: &str = "pos_embed";
/// timm's LayerNorm epsilon for ViTs.
const LN_EPSILON: f64 = 1e-6;
const MLP_RATIO: usize = 4;
/// timm's init for linear weights, the position embeddings and the CLS token: std 0.02 (timm
/// truncates at ±2 std; burn has no truncated normal, and the tails change nothing that matters).
const INIT_STD: f64 = 0.02;

/// Width, depth and heads of one size; the patch is part of the architecture's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct VitSize {
    pub dim: usize,
    pub depth: usize,
    pub heads: usize,
}

/// DeiT-Tiny / timm `vit_tiny`: 192 wide, 12 blocks, 3 heads.
pub(crate) const TINY: VitSize = VitSize { dim: 192, depth: 12, heads: 3 };
/// DeiT-Small / timm `vit_small` (DINO's ViT-S): 384 wide, 12 blocks, 6 heads.
pub(crate) const SMALL: VitSize = VitSize { dim: 384, depth: 12, heads: 6 };

/// The blocks whose outputs are the first three feature maps (a quarter, half and three quarters
/// of the depth); the fourth is the final norm's output.
fn map_blocks(depth: usize) -> [usize; 3] {
    [depth / 4 - 1, depth / 2 - 1, 3 * depth / 4 - 1]
}

/// The patch grid of an input: `[height / patch, width / patch]`, or why the input does not fit.
pub(crate) fn grid(input_hw: [usize; 2], patch: usize) -> Result<[usize; 2], ModelError> {
    let [height, width] = input_hw;
    if height < patch || width < patch || height % patch != 0 || width % patch != 0 {
        return Err(ModelError::InvalidSpec(format!(
            "a ViT with {patch}x{patch} patches needs an input whose height and width are multiples of {patch}, got {height}x{width}: \
             resize the images or choose another patch size"
        )));
    }
    Ok([height / patch, width / patch])
}

#[derive(Module, Debug)]
pub struct Vit {
    cls_token: Param<Tensor<3>>,
    /// `[1, 1 + grid_h · grid_w, dim]`: the CLS token's embedding, then the grid's row by row.
    pos_embed: Param<Tensor<3>>,
    patch_embed: PatchEmbed,
    blocks: Vec<Block>,
    norm: LayerNorm,
    pub(crate) head: Linear,
    patch: usize,
    grid: [usize; 2],
    dim: usize,
}

/// timm's `PatchEmbed`: a conv with kernel and stride equal to the patch, computed as one matmul
/// over the non-overlapping patches.
#[derive(Module, Debug)]
struct PatchEmbed {
    proj: burn::nn::conv::Conv2d,
}

#[derive(Module, Debug)]
struct Block {
    norm1: LayerNorm,
    attn: Attention,
    norm2: LayerNorm,
    mlp: Mlp,
    /// Stochastic depth as a dropout of a per-sample scale: Bernoulli(1 − p) / (1 − p).
    drop_path: Dropout,
}

#[derive(Module, Debug)]
struct Attention {
    qkv: Linear,
    proj: Linear,
    heads: usize,
}

#[derive(Module, Debug)]
struct Mlp {
    fc1: Linear,
    fc2: Linear,
}

fn new_linear(in_features: usize, out_features: usize, device: &Device) -> Linear {
    let mut linear =
        LinearConfig::new(in_features, out_features).with_initializer(Initializer::Normal { mean: 0.0, std: INIT_STD }).init(device);
    linear.bias = Some(Initializer::Zeros.init([out_features], device));
    linear
}

fn new_layer_norm(dim: usize, device: &Device) -> LayerNorm {
    LayerNormConfig::new(dim).with_epsilon(LN_EPSILON).init(device)
}

/// `norm.forward(x)` through medkd's kernels (the norm is one of [`new_layer_norm`]'s).
fn norm(norm: &LayerNorm, x: Tensor<3>) -> Tensor<3> {
    layer_norm(norm, x, LN_EPSILON)
}

/// `layer.forward(x)` for `[B, T, D]` tokens, as one `[B·T, D]` product through medkd's kernel:
/// burn broadcasts the weight over B otherwise, B small matrix products forward and, backward, a
/// `[B, D, out]` weight gradient summed over B afterwards (a quarter of a ViT-Tiny/4 training
/// step in copies and zero-filled buffers; BENCHMARKS.md, issue #31).
fn tokens_linear(layer: &Linear, x: Tensor<3>) -> Tensor<3> {
    let [batch, tokens, dim] = x.dims();
    let y = linear(layer, x.reshape([batch * tokens, dim]));
    let out = y.dims()[1];
    y.reshape([batch, tokens, out])
}

impl PatchEmbed {
    /// `[B, C, H, W]` → `[B, grid_h · grid_w, dim]`, patches row by row as the conv's output
    /// flattened.
    fn forward(&self, x: Tensor<4>, patch: usize) -> Tensor<3> {
        let [batch, channels, height, width] = x.dims();
        let [grid_h, grid_w] = [height / patch, width / patch];
        let weight = self.proj.weight.val();
        let dim = weight.dims()[0];
        let patch_len = channels * patch * patch;
        let patches = x
            .reshape([batch, channels, grid_h, patch, grid_w, patch])
            .permute([0, 2, 4, 1, 3, 5])
            .reshape([batch * grid_h * grid_w, patch_len]);
        let mut y = patches.matmul(weight.reshape([dim, patch_len]).transpose());
        if let Some(bias) = &self.proj.bias {
            y = y + bias.val().reshape([1, dim]);
        }
        y.reshape([batch, grid_h * grid_w, dim])
    }
}

impl Attention {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        tokens_linear(&self.proj, attention(tokens_linear(&self.qkv, x), self.heads))
    }
}

impl Block {
    fn new(size: VitSize, drop_path: f64, device: &Device) -> Self {
        let hidden = size.dim * MLP_RATIO;
        Self {
            norm1: new_layer_norm(size.dim, device),
            attn: Attention {
                qkv: new_linear(size.dim, 3 * size.dim, device),
                proj: new_linear(size.dim, size.dim, device),
                heads: size.heads,
            },
            norm2: new_layer_norm(size.dim, device),
            mlp: Mlp { fc1: new_linear(size.dim, hidden, device), fc2: new_linear(hidden, size.dim, device) },
            drop_path: DropoutConfig::new(drop_path).init(),
        }
    }

    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let y = self.drop_path(self.attn.forward(norm(&self.norm1, x.clone())));
        let x = x + y;
        let y = self.drop_path(tokens_linear(&self.mlp.fc2, gelu(tokens_linear(&self.mlp.fc1, norm(&self.norm2, x.clone())))));
        x + y
    }

    /// The residual branch `y` dropped per sample while training.
    fn drop_path(&self, y: Tensor<3>) -> Tensor<3> {
        // Dropout's own condition for training, checked here so inference skips the multiply.
        let training = self.drop_path.prob > 0.0 && self.drop_path.training.is_enabled() && y.device().is_autodiff();
        if !training {
            return y;
        }
        let [batch, ..] = y.dims();
        let scale = self.drop_path.forward(Tensor::<3>::ones([batch, 1, 1], &y.device()));
        y * scale
    }
}

impl Vit {
    /// A ViT of `size` with `patch`-pixel patches for `spec` (its `image_size` fixes the position
    /// embeddings' grid; see [`ModelSpec::image_size`]).
    pub(crate) fn new(size: VitSize, patch: usize, spec: &ModelSpec, device: &Device) -> Result<Self, ModelError> {
        let image_size = spec.image_size.ok_or_else(|| {
            ModelError::InvalidSpec(format!("{} needs `image_size`: its position embeddings are learned for one patch grid", spec.arch))
        })?;
        let grid = grid(image_size, patch)?;
        let tokens = 1 + grid[0] * grid[1];
        let drop_path = spec.drop_path_rate;
        let depth = size.depth;
        let proj = burn::nn::conv::Conv2dConfig::new([spec.in_channels, size.dim], [patch, patch]).with_stride([patch, patch]).init(device);
        Ok(Self {
            cls_token: Initializer::Normal { mean: 0.0, std: 1e-6 }.init([1, 1, size.dim], device),
            pos_embed: Initializer::Normal { mean: 0.0, std: INIT_STD }.init([1, tokens, size.dim], device),
            patch_embed: PatchEmbed { proj },
            blocks: (0..depth).map(|i| Block::new(size, drop_path * i as f64 / (depth - 1).max(1) as f64, device)).collect(),
            norm: new_layer_norm(size.dim, device),
            head: new_linear(size.dim, spec.num_classes, device),
            patch,
            grid,
            dim: size.dim,
        })
    }

    /// The patch grid the position embeddings are learned for.
    pub(crate) fn grid(&self) -> [usize; 2] {
        self.grid
    }

    pub(crate) fn dim(&self) -> usize {
        self.dim
    }

    /// The checkpoint module paths of the four token maps.
    pub(crate) fn map_names(&self) -> [String; 4] {
        let [a, b, c] = map_blocks(self.blocks.len()).map(|block| format!("blocks.{block}"));
        [a, b, c, "norm".to_owned()]
    }

    /// The CLS token and the embedded patches, position embeddings added: `[B, 1 + cells, dim]`.
    fn embed(&self, x: Tensor<4>) -> Tensor<3> {
        let [batch, _, height, width] = x.dims();
        let grid = [height / self.patch, width / self.patch];
        let patches = self.patch_embed.forward(x, self.patch);
        let cls = self.cls_token.val().repeat_dim(0, batch);
        Tensor::cat(vec![cls, patches], 1) + self.pos_embed_for(grid)
    }

    /// `(pooled, logits)`: the CLS token after the final norm, and the head on it.
    pub(crate) fn forward(&self, x: Tensor<4>, stages: &mut Stages) -> (Tensor<2>, Tensor<2>) {
        let [batch, ..] = x.dims();
        let maps = map_blocks(self.blocks.len());
        let mut x = self.embed(x);
        for (index, block) in self.blocks.iter().enumerate() {
            x = block.forward(x);
            if maps.contains(&index) {
                stages.record_tokens(&x);
            }
        }
        let x = norm(&self.norm, x);
        stages.record_tokens(&x);
        let pooled = x.narrow(1, 0, 1).reshape([batch, self.dim]);
        let logits = self.head.forward(pooled.clone());
        (pooled, logits)
    }

    /// The last block's attention from the CLS token to each patch, averaged over the heads,
    /// `[B, grid_h, grid_w]`: where the token the head reads looks (DINO's attention maps).
    pub(crate) fn cls_attention(&self, x: Tensor<4>) -> Tensor<3> {
        let [batch, _, height, width] = x.dims();
        let [grid_h, grid_w] = [height / self.patch, width / self.patch];
        let (last, earlier) = self.blocks.split_last().expect("a ViT has blocks");
        let x = earlier.iter().fold(self.embed(x), |x, block| block.forward(x));
        let (weights, _) = attention_weights(tokens_linear(&last.attn.qkv, norm(&last.norm1, x)), last.attn.heads);
        weights.narrow(2, 0, 1).narrow(3, 1, grid_h * grid_w).mean_dim(1).reshape([batch, grid_h, grid_w])
    }

    /// The position embeddings for an input of `grid` patches: as learned at the model's own
    /// grid, resampled otherwise (a differentiable matmul, so they keep learning).
    fn pos_embed_for(&self, grid: [usize; 2]) -> Tensor<3> {
        let pos_embed = self.pos_embed.val();
        if grid == self.grid {
            return pos_embed;
        }
        let device = pos_embed.device();
        let cls = pos_embed.clone().narrow(1, 0, 1);
        let cells = self.grid[0] * self.grid[1];
        let patches = pos_embed.narrow(1, 1, cells).reshape([cells, self.dim]);
        let matrix = grid_resampling(self.grid, grid);
        let matrix = Tensor::<2>::from_data(TensorData::new(matrix, [grid[0] * grid[1], cells]), &device);
        Tensor::cat(vec![cls, matrix.matmul(patches).unsqueeze::<3>()], 1)
    }
}

/// One axis of PyTorch's `interpolate(mode="bicubic", antialias=True, align_corners=False)` as
/// a `[output, input]` weight matrix. A port of ATen's separable antialiased kernel (itself
/// PIL's): output `i` centred at `(i + 0.5) · scale` in the input, a cubic of a = −0.5 stretched
/// by the scale when downsampling, weights cut at the edges and renormalized.
fn bicubic_antialias_weights(input: usize, output: usize) -> Vec<f64> {
    let cubic = |x: f64| {
        let (x, a) = (x.abs(), -0.5);
        if x < 1.0 {
            ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
        } else if x < 2.0 {
            ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
        } else {
            0.0
        }
    };
    let scale = input as f64 / output as f64;
    let stretch = scale.max(1.0);
    let support = 2.0 * stretch;
    let mut matrix = vec![0.0; output * input];
    for i in 0..output {
        let center = scale * (i as f64 + 0.5);
        // ATen truncates toward zero, then clamps to the input.
        let first = ((center - support + 0.5) as i64).max(0) as usize;
        let end = ((center + support + 0.5) as i64).min(input as i64) as usize;
        let row = &mut matrix[i * input..(i + 1) * input];
        for (j, weight) in row.iter_mut().enumerate().take(end).skip(first) {
            *weight = cubic((j as f64 - center + 0.5) / stretch);
        }
        let total: f64 = row.iter().sum();
        if total != 0.0 {
            row.iter_mut().for_each(|w| *w /= total);
        }
    }
    matrix
}

/// The `[to_h · to_w, from_h · from_w]` matrix that resamples a row-major grid of embeddings
/// (timm's `resample_abs_pos_embed`): the two axes' weights, combined.
pub(crate) fn grid_resampling(from: [usize; 2], to: [usize; 2]) -> Vec<f32> {
    let rows = bicubic_antialias_weights(from[0], to[0]);
    let cols = bicubic_antialias_weights(from[1], to[1]);
    let mut matrix = Vec::with_capacity(to[0] * to[1] * from[0] * from[1]);
    for i in 0..to[0] {
        for j in 0..to[1] {
            for y in 0..from[0] {
                for x in 0..from[1] {
                    matrix.push((rows[i * from[0] + y] * cols[j * from[1] + x]) as f32);
                }
            }
        }
    }
    matrix
}

/// A checkpoint's `pos_embed` (`[1, 1 + from_h · from_w, dim]`, values row-major) for a model
/// of grid `to`: the CLS entry kept, the grid resampled. `None` when `tokens - 1` is not a
/// square (timm infers the old grid the same way).
pub(crate) fn resample_pos_embed(values: &[f32], tokens: usize, dim: usize, to: [usize; 2]) -> Option<Vec<f32>> {
    let side = ((tokens - 1) as f64).sqrt().round() as usize;
    if side * side != tokens - 1 {
        return None;
    }
    let from = [side, side];
    let matrix = grid_resampling(from, to);
    let cells = side * side;
    let mut out = values[..dim].to_vec();
    for row in matrix.chunks_exact(cells) {
        for d in 0..dim {
            // f64 accumulation: the golden values are computed that way too.
            let value: f64 = row.iter().enumerate().map(|(cell, &w)| w as f64 * values[dim + cell * dim + d] as f64).sum();
            out.push(value as f32);
        }
    }
    Some(out)
}

/// Conv + linear + attention multiply-accumulates for one image: the patch embedding, per block
/// qkv, the two attention products (q·kᵀ and attention·v, `tokens² · dim` each), the output
/// projection and the MLP on every token, and the head on the CLS token.
pub(crate) fn macs(size: VitSize, patch: usize, spec: &ModelSpec, input_hw: [usize; 2]) -> u64 {
    let [grid_h, grid_w] = [input_hw[0] / patch, input_hw[1] / patch];
    let (cells, dim) = ((grid_h * grid_w) as u64, size.dim as u64);
    let tokens = cells + 1;
    let embed = cells * dim * (spec.in_channels * patch * patch) as u64;
    let per_block = tokens * (3 * dim * dim + dim * dim + 2 * MLP_RATIO as u64 * dim * dim) + 2 * tokens * tokens * dim;
    embed + size.depth as u64 * per_block + dim * spec.num_classes as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resampling_to_the_same_grid_is_the_identity() {
        let matrix = grid_resampling([3, 4], [3, 4]);
        for (i, row) in matrix.chunks_exact(12).enumerate() {
            for (j, &w) in row.iter().enumerate() {
                assert!((w - if i == j { 1.0 } else { 0.0 }).abs() < 1e-6, "{i} {j} {w}");
            }
        }
    }

    #[test]
    fn resampling_rows_sum_to_one() {
        for (from, to) in [(14, 4), (7, 8), (4, 14), (5, 3)] {
            let weights = bicubic_antialias_weights(from, to);
            for row in weights.chunks_exact(from) {
                assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn grid_refuses_inputs_the_patch_does_not_divide() {
        assert_eq!(grid([28, 28], 4).unwrap(), [7, 7]);
        assert_eq!(grid([64, 32], 16).unwrap(), [4, 2]);
        let error = grid([30, 28], 4).unwrap_err().to_string();
        assert!(error.contains("multiples of 4") && error.contains("30x28"), "{error}");
        assert!(grid([8, 8], 16).is_err());
    }

    #[test]
    fn map_blocks_split_the_depth_in_quarters() {
        assert_eq!(map_blocks(12), [2, 5, 8]);
    }
}

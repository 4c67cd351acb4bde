//! Global unstructured magnitude pruning (Han et al. 2015; `torch.nn.utils.prune.global_unstructured`
//! with `L1Unstructured`, as Hooker et al. and the PruneCXR code prune): the smallest-magnitude
//! weights of every convolution and linear layer, ranked together, set to zero. Biases and
//! BatchNorm parameters are kept. Written by hand because no crate prunes burn modules.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;

use crate::error::ModelError;
use crate::model::Model;

/// What one pruning did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pruned {
    /// Weights ranked (every conv and linear weight).
    pub weights: usize,
    /// Of those, zero after pruning (pruned, plus any that were zero already).
    pub zeros: usize,
}

impl Pruned {
    /// The share of conv and linear weights that are zero.
    pub fn sparsity(&self) -> f64 {
        self.zeros as f64 / self.weights.max(1) as f64
    }
}

/// Conv and linear weights are the float parameters of rank >= 2; biases and BatchNorm's
/// parameters are vectors.
fn prunable(rank: usize) -> bool {
    rank >= 2
}

/// Collects the magnitudes of every prunable weight, in visit order.
struct Magnitudes(Vec<f32>);

impl ModuleVisitor for Magnitudes {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if prunable(D) {
            let values = param.val().into_data().convert::<f32>().try_into_vec::<f32>().expect("float weights");
            self.0.extend(values.iter().map(|v| v.abs()));
        }
    }
}

/// Zeroes the weights below `threshold` and, in visit order, the first `ties` weights equal to it,
/// so that exactly the requested number of weights is pruned.
struct Zero {
    threshold: f32,
    ties: usize,
}

impl ModuleMapper for Zero {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if !prunable(D) {
            return param;
        }
        param.map(|tensor| {
            let (shape, device) = (tensor.shape(), tensor.device());
            let mut values = tensor.into_data().convert::<f32>().try_into_vec::<f32>().expect("float weights");
            for v in &mut values {
                let magnitude = v.abs();
                if magnitude < self.threshold || (magnitude == self.threshold && self.ties > 0) {
                    if magnitude == self.threshold {
                        self.ties -= 1;
                    }
                    *v = 0.0;
                }
            }
            Tensor::from_data(TensorData::new(values, shape), &device)
        })
    }
}

/// The model with the `sparsity` share (in [0, 1)) of its conv and linear weights of smallest
/// magnitude set to zero, ranked globally across layers.
pub fn prune_global(model: Model, sparsity: f64) -> Result<(Model, Pruned), ModelError> {
    if !(0.0..1.0).contains(&sparsity) {
        return Err(ModelError::Prune(format!("sparsity {sparsity} is outside [0, 1)")));
    }
    let mut magnitudes = Magnitudes(Vec::new());
    model.visit(&mut magnitudes);
    let mut sorted = magnitudes.0;
    let weights = sorted.len();
    let count = (sparsity * weights as f64).round() as usize;
    let model = if count == 0 {
        model
    } else {
        let (_, &mut threshold, _) = sorted.select_nth_unstable_by(count - 1, f32::total_cmp);
        let below = sorted.iter().filter(|v| **v < threshold).count();
        model.map(&mut Zero { threshold, ties: count - below })
    };
    let mut after = Magnitudes(Vec::new());
    model.visit(&mut after);
    let zeros = after.0.iter().filter(|v| **v == 0.0).count();
    Ok((model, Pruned { weights, zeros }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Arch, ModelSpec, test_device};

    #[test]
    fn prunes_the_smallest_weights_across_layers_exactly() {
        let spec = ModelSpec { arch: Arch::ResNet18, num_classes: 4, in_channels: 3, small_input: true };
        let model = Model::new(&spec, &test_device()).unwrap();
        let mut before = Magnitudes(Vec::new());
        model.visit(&mut before);
        let mut sorted = before.0.clone();
        sorted.sort_by(f32::total_cmp);
        let (pruned, report) = prune_global(model, 0.6).unwrap();
        let expected = (0.6 * sorted.len() as f64).round() as usize;
        assert_eq!((report.weights, report.zeros), (sorted.len(), expected));
        // Every kept weight is at least as large as every pruned one, and kept its value.
        let mut after = Magnitudes(Vec::new());
        pruned.visit(&mut after);
        let cut = sorted[expected - 1];
        for (b, a) in before.0.iter().zip(&after.0) {
            assert!(*a == 0.0 && *b <= cut || *a == *b && *b >= cut, "{b} -> {a}");
        }
        let (_, none) = prune_global(pruned, 0.0).unwrap();
        assert_eq!(none.zeros, expected, "sparsity 0 prunes nothing");
    }
}

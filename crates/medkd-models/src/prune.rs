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
            let (shape, device, trainable) = (tensor.shape(), tensor.device(), tensor.is_require_grad());
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
            let pruned = Tensor::from_data(TensorData::new(values, shape), &device);
            if trainable { pruned.require_grad() } else { pruned }
        })
    }
}

/// The zero pattern of a pruned model's conv and linear weights (1 kept, 0 pruned), in visit
/// order: put back after every optimizer step, it keeps a fine-tuned model as sparse as it was
/// pruned (as `torch.nn.utils.prune` keeps `weight_orig * weight_mask`).
#[derive(Clone, Debug)]
pub struct Masks(Vec<Tensor<1>>);

struct CollectMasks(Vec<Tensor<1>>);

impl ModuleVisitor for CollectMasks {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if prunable(D) {
            self.0.push(param.val().detach().flatten::<1>(0, D - 1).not_equal_elem(0.0).float());
        }
    }
}

struct ApplyMasks<'a> {
    masks: &'a [Tensor<1>],
    next: usize,
}

impl ModuleMapper for ApplyMasks<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if !prunable(D) {
            return param;
        }
        let mask = self.masks[self.next].clone();
        self.next += 1;
        param.map(|tensor| {
            let trainable = tensor.is_require_grad();
            let masked = (tensor.clone() * mask.reshape(tensor.shape())).detach();
            if trainable { masked.require_grad() } else { masked }
        })
    }
}

impl Masks {
    /// The masks of `model`'s zero weights.
    pub fn of(model: &Model) -> Masks {
        let mut collect = CollectMasks(Vec::new());
        model.visit(&mut collect);
        Masks(collect.0)
    }

    /// `model` (of the architecture the masks were taken from) with its masked weights zeroed.
    pub fn apply(&self, model: Model) -> Model {
        model.map(&mut ApplyMasks { masks: &self.0, next: 0 })
    }
}

/// The count of conv and linear weights and of those that are zero.
pub fn sparsity_of(model: &Model) -> Pruned {
    let mut magnitudes = Magnitudes(Vec::new());
    model.visit(&mut magnitudes);
    Pruned { weights: magnitudes.0.len(), zeros: magnitudes.0.iter().filter(|v| **v == 0.0).count() }
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
    let report = sparsity_of(&model);
    Ok((model, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Arch, ModelSpec, test_device};

    #[test]
    fn prunes_the_smallest_weights_across_layers_exactly() {
        let spec = ModelSpec { small_input: true, ..ModelSpec::new(Arch::ResNet18, 4) };
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

    /// Whether every conv and linear weight still takes gradients.
    struct AllTrainable(bool);

    impl ModuleVisitor for AllTrainable {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0 &= !prunable(D) || param.val().is_require_grad();
        }
    }

    /// Masks put the pruned zeros back into weights that training moved, exactly there, and a
    /// pruned or masked trainable model still trains.
    #[test]
    fn masks_keep_the_pruned_weights_zero_and_the_model_trainable() {
        let spec = ModelSpec { small_input: true, ..ModelSpec::new(Arch::MobileNetV2, 3) };
        let model = Model::new(&spec, &test_device().autodiff()).unwrap();
        let (pruned, report) = prune_global(model, 0.5).unwrap();
        let masks = Masks::of(&pruned);
        let mut trainable = AllTrainable(true);
        pruned.visit(&mut trainable);
        assert!(trainable.0, "pruning keeps the weights trainable");
        let mut zero_before = Magnitudes(Vec::new());
        pruned.visit(&mut zero_before);

        // As an optimizer step would: every weight moves off zero.
        struct Shift;
        impl ModuleMapper for Shift {
            fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
                param.map(|t| (t.add_scalar(0.5)).detach().require_grad())
            }
        }
        let moved = pruned.map(&mut Shift);
        assert_eq!(sparsity_of(&moved).zeros, 0);
        let masked = masks.apply(moved);
        let mut after = Magnitudes(Vec::new());
        masked.visit(&mut after);
        for (b, a) in zero_before.0.iter().zip(&after.0) {
            assert_eq!(*b == 0.0, *a == 0.0, "zero exactly where pruned");
        }
        assert_eq!(sparsity_of(&masked), report);
        let mut trainable = AllTrainable(true);
        masked.visit(&mut trainable);
        assert!(trainable.0, "masking keeps the weights trainable");
    }
}

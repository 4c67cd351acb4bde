//! Compact image classifiers for knowledge distillation: ResNet-18/34/50, MobileNetV2 and
//! DenseNet-121 with torchvision's layout, initialization and state-dict names, and
//! EfficientNet-Lite0/1/2 with the names of its ImageNet checkpoints, so those weights load as
//! they are and saved weights load back into PyTorch, and ViT-Tiny/Small with timm's names.
//!
//! Every model returns [`Features`] (stage maps, pooled embedding, logits) for distillation
//! losses. `ModelSpec::small_input` swaps the ImageNet stem for one suited to 28-64 px images.

mod conv;
mod densenet;
mod efficientnet_lite;
mod error;
mod features;
mod flex;
mod layers;
mod macs;
mod mobilenetv2;
mod model;
mod norm;
mod onnx;
mod prune;
mod resnet;
mod transformer_ops;
mod vit;
mod weights;

/// Whether gemm's AVX-512 kernels are built in (the `avx512` feature); without them an AVX-512
/// CPU runs the AVX2+FMA ones.
pub const AVX512_KERNELS: bool = cfg!(feature = "avx512");

pub use conv::conv2d;
pub use densenet::DenseNet;
pub use efficientnet_lite::EfficientNetLite;
pub use error::{ModelError, ShapeMismatch};
pub use features::{FeatureLayout, FeatureMap, Features, MapInfo, MapKind};
pub use macs::count_macs;
pub use medkd_onnx::{Activation, Io as OnnxIo, OPSET as ONNX_OPSET, WeightPrecision};
pub use mobilenetv2::MobileNetV2;
pub use model::{Arch, Model, ModelSpec, count_params};
pub use norm::batch_norm;
pub use prune::{Masks, Pruned, prune_global, sparsity_of};
pub use resnet::ResNet;
pub use transformer_ops::gelu;
pub use vit::Vit;
pub use weights::{load_weights, load_weights_partial, save_weights, save_weights_with_metadata, state_dict, write_safetensors};

use burn::prelude::Device;

/// The device the test suites compute on: burn's `flex` CPU backend, or LibTorch's CPU in a
/// build with the `tch` feature run with `MEDKD_TEST_DEVICE=libtorch`, so one suite checks both
/// backends against the same golden values (`tools/test_libtorch.sh`). Tests of medkd's own
/// `flex` kernels name `flex` instead.
pub fn test_device() -> Device {
    #[cfg(feature = "tch")]
    if std::env::var("MEDKD_TEST_DEVICE").as_deref() == Ok("libtorch") {
        // burn 0.22 deprecates burn-tch; it stays medkd's optional LibTorch backend (issue #5).
        #[allow(deprecated)]
        return Device::libtorch();
    }
    Device::flex()
}

#[cfg(test)]
mod tests {
    use burn::backend::DispatchDevice;

    /// `MEDKD_TEST_DEVICE=libtorch` moves the suite to LibTorch in a `tch` build, and only there.
    #[test]
    fn test_device_follows_the_environment() {
        let libtorch = cfg!(feature = "tch") && std::env::var("MEDKD_TEST_DEVICE").as_deref() == Ok("libtorch");
        let on_flex = matches!(super::test_device().inner().as_dispatch(), DispatchDevice::Flex(_));
        assert_eq!(on_flex, !libtorch);
    }
}

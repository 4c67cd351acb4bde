//! Compact image classifiers for knowledge distillation: ResNet-18/34/50, MobileNetV2 and
//! DenseNet-121, with torchvision's layout, initialization and state-dict names, so torchvision
//! weights load as they are and saved weights load back into torchvision.
//!
//! Every model returns [`Features`] (stage maps, pooled embedding, logits) for distillation
//! losses. `ModelSpec::small_input` swaps the ImageNet stem for one suited to 28-64 px images.

mod conv;
mod densenet;
mod error;
mod features;
mod flex;
mod layers;
mod macs;
mod mobilenetv2;
mod model;
mod norm;
mod resnet;
mod weights;

pub use conv::conv2d;
pub use densenet::DenseNet;
pub use error::{ModelError, ShapeMismatch};
pub use features::Features;
pub use macs::count_macs;
pub use mobilenetv2::MobileNetV2;
pub use model::{Arch, Model, ModelSpec, count_params};
pub use norm::batch_norm;
pub use resnet::ResNet;
pub use weights::{load_weights, load_weights_partial, save_weights};

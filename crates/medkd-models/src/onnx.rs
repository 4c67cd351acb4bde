//! The model as an ONNX graph: each architecture's `onnx` function mirrors its eval forward,
//! naming the weights as its state dict does.

use medkd_onnx::{Graph, Io, OnnxError};

use crate::efficientnet_lite::{LITE0, LITE1, LITE2};
use crate::error::ModelError;
use crate::model::{Arch, Model, ModelSpec, vit_archs};
use crate::resnet::Layout;
use crate::weights::state_dict;
use crate::{densenet, efficientnet_lite, mobilenetv2, resnet};

impl Model {
    /// The serialized ONNX model of this network built from `spec`, evaluated on its running
    /// statistics: input `image` (`[batch, C, H, W]` floats in [0, 1], normalized inside),
    /// outputs `logits` and `probabilities` (see [`medkd_onnx::Graph::model`]). `metadata`
    /// goes into the model's metadata properties.
    pub fn to_onnx(&self, spec: &ModelSpec, io: &Io, metadata: &[(String, String)]) -> Result<Vec<u8>, ModelError> {
        let weights = state_dict(self)?;
        let [_, height, width] = io.input_chw;
        spec.check_input([height, width])?;
        let onnx = |error| ModelError::Onnx { arch: spec.arch, source: error };
        Graph::model(&weights, io, metadata, |graph, x| match spec.arch {
            Arch::ResNet18 => resnet::onnx(Layout::RESNET18, spec, graph, x),
            Arch::ResNet34 => resnet::onnx(Layout::RESNET34, spec, graph, x),
            Arch::ResNet50 => resnet::onnx(Layout::RESNET50, spec, graph, x),
            Arch::MobileNetV2 => mobilenetv2::onnx(spec, graph, x),
            Arch::DenseNet121 => densenet::onnx(spec, graph, x),
            Arch::EfficientNetLite0 => efficientnet_lite::onnx(LITE0, spec, [height, width], graph, x),
            Arch::EfficientNetLite1 => efficientnet_lite::onnx(LITE1, spec, [height, width], graph, x),
            Arch::EfficientNetLite2 => efficientnet_lite::onnx(LITE2, spec, [height, width], graph, x),
            vit_archs!() => Err(OnnxError::Invalid(
                "ViTs cannot be exported to ONNX yet: medkd's ONNX writer has no attention or LayerNorm nodes".into(),
            )),
        })
        .map_err(onnx)
    }
}

use burn::tensor::Tensor;

/// What every model returns, so distillation losses can use logits, pooled embeddings and stage
/// feature maps.
#[derive(Clone, Debug)]
pub struct Features {
    /// Four stage outputs, `[B, C_i, H_i, W_i]` with `C_i = Model::stage_channels()[i]`.
    /// At strides 4/8/16/32 with the ImageNet stem, 1/2/4/8 with `small_input`:
    /// - ResNet: outputs of layer1..layer4;
    /// - MobileNetV2: outputs of features.3, .6, .13 and .18 (the 1280-channel conv);
    /// - DenseNet: outputs of denseblock1..3 (before their transitions), then relu(norm5).
    pub stages: Vec<Tensor<4>>,
    /// Globally average-pooled last stage, `[B, Model::feature_dim()]`: the classifier's input.
    pub pooled: Tensor<2>,
    /// `[B, num_classes]`.
    pub logits: Tensor<2>,
}

/// Where a backbone records its stage outputs. The logits-only path passes a discarding
/// recorder, so no stage tensor (and, under autodiff, no graph) is kept alive for nothing.
pub(crate) struct Stages(Option<Vec<Tensor<4>>>);

impl Stages {
    pub fn keep() -> Self {
        Self(Some(Vec::with_capacity(4)))
    }

    pub fn discard() -> Self {
        Self(None)
    }

    pub fn record(&mut self, x: &Tensor<4>) {
        if let Some(stages) = &mut self.0 {
            stages.push(x.clone());
        }
    }

    pub fn into_vec(self) -> Vec<Tensor<4>> {
        self.0.unwrap_or_default()
    }
}

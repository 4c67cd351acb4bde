use burn::tensor::Tensor;

/// What every model returns, so distillation losses can use logits, pooled embeddings and
/// feature maps.
#[derive(Clone, Debug)]
pub struct Features {
    /// The architecture's named feature maps, in [`FeatureLayout::maps`] order (empty where a
    /// teacher cache keeps only logits and embeddings). The CNNs give four stage outputs,
    /// [`FeatureMap::Spatial`] `[B, C_i, H_i, W_i]`, at strides 4/8/16/32 with the ImageNet stem and
    /// 1/2/4/8 with `small_input`:
    /// - ResNet: outputs of layer1..layer4;
    /// - MobileNetV2: outputs of features.3, .6, .13 and .18 (the 1280-channel conv);
    /// - DenseNet: outputs of denseblock1..3 (before their transitions), then relu(norm5).
    pub maps: Vec<FeatureMap>,
    /// `[B, FeatureLayout::pooled_dim]`: the classifier's input (for the CNNs the globally
    /// average-pooled last stage).
    pub pooled: Tensor<2>,
    /// `[B, num_classes]`.
    pub logits: Tensor<2>,
}

impl Features {
    /// Map `index` when it is spatial; loss terms resolve against the [`FeatureLayout`] first,
    /// so a term that reads spatial maps never meets a token map here.
    pub fn spatial(&self, index: usize) -> &Tensor<4> {
        match &self.maps[index] {
            FeatureMap::Spatial(map) => map,
            FeatureMap::Tokens(_) => panic!("feature map {index} holds tokens; loss terms check the layout before they read maps"),
        }
    }
}

/// One feature map of a forward pass.
#[derive(Clone, Debug)]
pub enum FeatureMap {
    /// `[B, C, H, W]`: a CNN stage output.
    Spatial(Tensor<4>),
    /// `[B, T, D]`: tokens of a transformer block (a ViT's CLS and patch tokens).
    Tokens(Tensor<3>),
}

/// What a model's [`Features`] hold, fixed by its architecture and known before any forward pass,
/// so loss terms are checked against it when a run is set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeatureLayout {
    pub maps: Vec<MapInfo>,
    /// Width of [`Features::pooled`].
    pub pooled_dim: usize,
}

/// A feature map's name (its module path in the checkpoint's naming) and kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapInfo {
    pub name: String,
    pub kind: MapKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapKind {
    Spatial { channels: usize },
    Tokens { dim: usize },
}

impl FeatureLayout {
    /// The channels of map `index`, or why a term that needs a spatial map there cannot have one.
    pub fn spatial_channels(&self, index: usize) -> Result<usize, String> {
        match self.maps.get(index) {
            Some(MapInfo { kind: MapKind::Spatial { channels }, .. }) => Ok(*channels),
            Some(MapInfo { name, kind: MapKind::Tokens { .. } }) => Err(format!("map {index} ({name}) holds tokens, not a C x H x W map")),
            None => Err(format!("the model has {} feature maps (0 to {})", self.maps.len(), self.maps.len().saturating_sub(1))),
        }
    }
}

/// Where a backbone records its stage outputs. The logits-only path passes a discarding
/// recorder, so no stage tensor (and, under autodiff, no graph) is kept alive for nothing.
pub(crate) struct Stages(Option<Vec<FeatureMap>>);

impl Stages {
    pub fn keep() -> Self {
        Self(Some(Vec::with_capacity(4)))
    }

    pub fn discard() -> Self {
        Self(None)
    }

    pub fn record(&mut self, x: &Tensor<4>) {
        if let Some(stages) = &mut self.0 {
            stages.push(FeatureMap::Spatial(x.clone()));
        }
    }

    pub fn record_tokens(&mut self, x: &Tensor<3>) {
        if let Some(stages) = &mut self.0 {
            stages.push(FeatureMap::Tokens(x.clone()));
        }
    }

    pub fn into_vec(self) -> Vec<FeatureMap> {
        self.0.unwrap_or_default()
    }
}

use std::fmt;
use std::str::FromStr;

use burn::module::{Flag, Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::densenet::{self, DenseNet};
use crate::efficientnet_lite::{self, EfficientNetLite};
use crate::error::ModelError;
use crate::features::{FeatureLayout, Features, MapInfo, MapKind, Stages};
use crate::mobilenetv2::{self, MobileNetV2};
use crate::resnet::{self, Layout, ResNet};
use crate::vit::{self, Vit, VitSize};

/// The ViT variants of [`Arch`] as one pattern, for the matches that treat them alike (each then
/// reads its size and patch from [`Arch::vit`]).
macro_rules! vit_archs {
    () => {
        Arch::VitTinyPatch4
            | Arch::VitTinyPatch8
            | Arch::VitTinyPatch16
            | Arch::VitSmallPatch4
            | Arch::VitSmallPatch8
            | Arch::VitSmallPatch16
    };
}
pub(crate) use vit_archs;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    ResNet18,
    ResNet34,
    ResNet50,
    MobileNetV2,
    DenseNet121,
    #[serde(rename = "efficientnet_lite0")]
    EfficientNetLite0,
    #[serde(rename = "efficientnet_lite1")]
    EfficientNetLite1,
    #[serde(rename = "efficientnet_lite2")]
    EfficientNetLite2,
    #[serde(rename = "vit_tiny_patch4")]
    VitTinyPatch4,
    #[serde(rename = "vit_tiny_patch8")]
    VitTinyPatch8,
    #[serde(rename = "vit_tiny_patch16")]
    VitTinyPatch16,
    #[serde(rename = "vit_small_patch4")]
    VitSmallPatch4,
    #[serde(rename = "vit_small_patch8")]
    VitSmallPatch8,
    #[serde(rename = "vit_small_patch16")]
    VitSmallPatch16,
}

impl Arch {
    pub const ALL: [Arch; 14] = [
        Arch::ResNet18,
        Arch::ResNet34,
        Arch::ResNet50,
        Arch::MobileNetV2,
        Arch::DenseNet121,
        Arch::EfficientNetLite0,
        Arch::EfficientNetLite1,
        Arch::EfficientNetLite2,
        Arch::VitTinyPatch4,
        Arch::VitTinyPatch8,
        Arch::VitTinyPatch16,
        Arch::VitSmallPatch4,
        Arch::VitSmallPatch8,
        Arch::VitSmallPatch16,
    ];

    /// The config / CLI name, as serde writes it.
    pub fn name(self) -> &'static str {
        match self {
            Arch::ResNet18 => "resnet18",
            Arch::ResNet34 => "resnet34",
            Arch::ResNet50 => "resnet50",
            Arch::MobileNetV2 => "mobilenetv2",
            Arch::DenseNet121 => "densenet121",
            Arch::EfficientNetLite0 => "efficientnet_lite0",
            Arch::EfficientNetLite1 => "efficientnet_lite1",
            Arch::EfficientNetLite2 => "efficientnet_lite2",
            Arch::VitTinyPatch4 => "vit_tiny_patch4",
            Arch::VitTinyPatch8 => "vit_tiny_patch8",
            Arch::VitTinyPatch16 => "vit_tiny_patch16",
            Arch::VitSmallPatch4 => "vit_small_patch4",
            Arch::VitSmallPatch8 => "vit_small_patch8",
            Arch::VitSmallPatch16 => "vit_small_patch16",
        }
    }

    /// A vision transformer's size and patch side; `None` for the CNNs.
    pub(crate) fn vit(self) -> Option<(VitSize, usize)> {
        match self {
            Arch::VitTinyPatch4 => Some((vit::TINY, 4)),
            Arch::VitTinyPatch8 => Some((vit::TINY, 8)),
            Arch::VitTinyPatch16 => Some((vit::TINY, 16)),
            Arch::VitSmallPatch4 => Some((vit::SMALL, 4)),
            Arch::VitSmallPatch8 => Some((vit::SMALL, 8)),
            Arch::VitSmallPatch16 => Some((vit::SMALL, 16)),
            _ => None,
        }
    }

    /// Whether this is a vision transformer (tokens, not C x H x W maps; no BatchNorm).
    pub fn is_vit(self) -> bool {
        self.vit().is_some()
    }

    /// A vision transformer's patch side; `None` for the CNNs.
    pub fn patch(self) -> Option<usize> {
        self.vit().map(|(_, patch)| patch)
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Arch {
    type Err = ModelError;

    /// Accepts the serde names, ignoring ASCII case (`ResNet18` parses too).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Arch::ALL.into_iter().find(|arch| arch.name().eq_ignore_ascii_case(s)).ok_or_else(|| ModelError::UnknownArch(s.to_owned()))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub arch: Arch,
    pub num_classes: usize,
    #[serde(default = "default_in_channels")]
    pub in_channels: usize,
    /// Stem for 28-64 px images: no downsampling before the first stage (ResNet: conv1 3x3
    /// stride 1 and no max-pool; DenseNet: conv0 3x3 stride 1 and no pool0; MobileNetV2: stride
    /// 1 in the stem and in the first stride-2 stage). Stage strides become 1/2/4/8.
    #[serde(default)]
    pub small_input: bool,
    /// `[height, width]` of the input the network is built for. A ViT needs it: its position
    /// embeddings are learned for that patch grid (other sizes get them resampled). The CNNs
    /// take any size and ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_size: Option<[usize; 2]>,
    /// Stochastic depth of a ViT's last block (linear from 0 at the first), in [0, 1); timm's
    /// default 0. Not used by the CNNs (EfficientNet-Lite's drop-connect is fixed).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub drop_path_rate: f64,
}

fn is_zero(value: &f64) -> bool {
    *value == 0.0
}

fn default_in_channels() -> usize {
    3
}

impl ModelSpec {
    /// RGB input, ImageNet stem.
    pub fn new(arch: Arch, num_classes: usize) -> Self {
        Self { arch, num_classes, in_channels: default_in_channels(), small_input: false, image_size: None, drop_path_rate: 0.0 }
    }

    /// The smallest input side the network can take. Convolutions and max-pools are padded, so
    /// ResNet and MobileNetV2 take any size; DenseNet's three 2x2 average-pooling transitions
    /// need a map of at least 8 px after the stem (ImageNet stem: 7x7/2 conv and 3x3/2 pool, so
    /// ceil(ceil(H / 2) / 2) >= 8, i.e. H >= 29).
    pub fn min_input_side(&self) -> usize {
        match (self.arch, self.small_input) {
            (Arch::DenseNet121, false) => 29,
            (Arch::DenseNet121, true) => 8,
            _ => 1,
        }
    }

    /// Checks that `[height, width]` inputs fit the network (see [`ModelSpec::min_input_side`]).
    /// A ViT's input must be a whole number of patches.
    pub fn check_input(&self, [height, width]: [usize; 2]) -> Result<(), ModelError> {
        if let Some((_, patch)) = self.arch.vit() {
            return vit::grid([height, width], patch).map(|_| ());
        }
        let min = self.min_input_side();
        if height.min(width) >= min {
            return Ok(());
        }
        let stem = if self.small_input { "small-input" } else { "ImageNet" };
        let hint = if self.small_input { "" } else { ", or use the small-input stem (min 8 px)" };
        Err(ModelError::InvalidSpec(format!(
            "{} with the {stem} stem needs inputs of at least {min}x{min} px, got {height}x{width}: resize the images{hint}",
            self.arch
        )))
    }

    pub fn validate(&self) -> Result<(), ModelError> {
        if self.num_classes == 0 {
            return Err(ModelError::InvalidSpec("num_classes must be at least 1".into()));
        }
        if self.in_channels == 0 {
            return Err(ModelError::InvalidSpec("in_channels must be at least 1".into()));
        }
        if !(0.0..1.0).contains(&self.drop_path_rate) {
            return Err(ModelError::InvalidSpec(format!("drop_path_rate must be in [0, 1), got {}", self.drop_path_rate)));
        }
        if self.drop_path_rate > 0.0 && !self.arch.is_vit() {
            return Err(ModelError::InvalidSpec(format!("drop_path_rate is a ViT setting; {} has none", self.arch)));
        }
        if self.small_input && self.arch.is_vit() {
            return Err(ModelError::InvalidSpec(format!(
                "{} has no small-input stem: choose the patch size for the input instead",
                self.arch
            )));
        }
        Ok(())
    }
}

#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant, reason = "a few KB moved rarely; burn has no Module impl for Box")]
pub enum Model {
    ResNet(ResNet),
    MobileNetV2(MobileNetV2),
    DenseNet(DenseNet),
    EfficientNetLite(EfficientNetLite),
    Vit(Vit),
}

impl Model {
    /// A freshly initialized model (torchvision's init scheme). Parameters are materialized
    /// lazily, on first use or when weights are loaded over them.
    pub fn new(spec: &ModelSpec, device: &Device) -> Result<Model, ModelError> {
        spec.validate()?;
        Ok(match spec.arch {
            Arch::ResNet18 => Model::ResNet(ResNet::new(Layout::RESNET18, spec, device)),
            Arch::ResNet34 => Model::ResNet(ResNet::new(Layout::RESNET34, spec, device)),
            Arch::ResNet50 => Model::ResNet(ResNet::new(Layout::RESNET50, spec, device)),
            Arch::MobileNetV2 => Model::MobileNetV2(MobileNetV2::new(spec, device)),
            Arch::DenseNet121 => Model::DenseNet(DenseNet::new(spec, device)),
            Arch::EfficientNetLite0 => Model::EfficientNetLite(EfficientNetLite::new(efficientnet_lite::LITE0, spec, device)),
            Arch::EfficientNetLite1 => Model::EfficientNetLite(EfficientNetLite::new(efficientnet_lite::LITE1, spec, device)),
            Arch::EfficientNetLite2 => Model::EfficientNetLite(EfficientNetLite::new(efficientnet_lite::LITE2, spec, device)),
            vit_archs!() => {
                let (size, patch) = spec.arch.vit().expect("a ViT arch");
                Model::Vit(Vit::new(size, patch, spec, device)?)
            }
        })
    }

    /// Logits, pooled embedding and the feature maps of [`Model::layout`] (see [`Features`]).
    ///
    /// On an autodiff device the model trains (BatchNorm on batch statistics, updating its
    /// running ones; dropout on) unless it is `model.valid()`; on a plain device it always
    /// runs in eval mode.
    pub fn forward(&self, x: Tensor<4>) -> Features {
        let mut stages = Stages::keep();
        let (pooled, logits) = self.run(x, &mut stages);
        Features { maps: stages.into_vec(), pooled, logits }
    }

    /// Grad-CAM (Selvaraju et al., 2017) of image `b` for class `classes[b]` on the last feature
    /// map A: ReLU(Σ_k α_k A_k), `[B, H, W]`, at the map's resolution, before any upsampling.
    ///
    /// α_k is the spatial mean of ∂logit/∂A_k. Every architecture here averages that map
    /// globally into one linear layer, so ∂logit_c/∂A_k(h, w) = W[c, k] / (H·W) everywhere and
    /// α needs no backward pass (tests compare with PyTorch autograd on two architectures).
    /// CNNs only: a ViT's maps are tokens (see [`Model::saliency`]).
    pub fn grad_cam(&self, x: Tensor<4>, classes: &[usize]) -> Tensor<3> {
        self.grad_cam_of(&self.valid().forward(x), classes)
    }

    /// Where the model looks in each image, `[B, H, W]` at the network's own resolution:
    /// [`Model::grad_cam`] of `classes` for the CNNs; for a ViT, whose head reads the CLS token
    /// rather than a pooled map, the last block's attention from the CLS token to each patch
    /// averaged over the heads (DINO's attention maps), the same for every class.
    /// [`Model::saliency_kind`] names which.
    pub fn saliency(&self, x: Tensor<4>, classes: &[usize]) -> Tensor<3> {
        match self.valid() {
            Model::Vit(vit) => vit.cls_attention(x),
            _ => self.grad_cam(x, classes),
        }
    }

    /// `"grad_cam"` or `"cls_attention"`: what [`Model::saliency`] computes for this model.
    pub fn saliency_kind(&self) -> &'static str {
        if let Model::Vit(_) = self { "cls_attention" } else { "grad_cam" }
    }

    /// [`Model::grad_cam`] from this model's features of a forward pass already made (eval
    /// mode), so a caller that needs the logits too runs the network once.
    pub fn grad_cam_of(&self, features: &Features, classes: &[usize]) -> Tensor<3> {
        let map = features.spatial(features.maps.len() - 1).clone();
        let [batch, channels, height, width] = map.dims();
        assert_eq!(classes.len(), batch, "one class per image");
        // burn's Linear keeps its weight as [in, out]: column c is class c's.
        let weight = self.classifier_weight().transpose();
        let indices: Vec<i64> = classes.iter().map(|&c| c as i64).collect();
        let indices = Tensor::<1, burn::tensor::Int>::from_data(burn::tensor::TensorData::new(indices, [batch]), &map.device());
        let alpha = weight.select(0, indices).div_scalar((height * width) as f32).reshape([batch, channels, 1, 1]);
        burn::tensor::activation::relu((map * alpha).sum_dim(1).reshape([batch, height, width]))
    }

    /// The classifier's weight, `[features, classes]` (burn's Linear layout).
    fn classifier_weight(&self) -> Tensor<2> {
        match self {
            Model::ResNet(m) => m.fc.weight.val(),
            Model::MobileNetV2(m) => m.classifier.weight.val(),
            Model::DenseNet(m) => m.classifier.weight.val(),
            Model::EfficientNetLite(m) => m._fc.weight.val(),
            Model::Vit(m) => m.head.weight.val(),
        }
    }

    /// Logits only: no stage map is kept.
    pub fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        self.run(x, &mut Stages::discard()).1
    }

    /// Size of the pooled embedding: 512 (ResNet-18/34), 2048 (ResNet-50), 1280 (MobileNetV2),
    /// 1024 (DenseNet-121), 1280 (EfficientNet-Lite), 192 (ViT-Tiny), 384 (ViT-Small).
    pub fn feature_dim(&self) -> usize {
        match self {
            Model::Vit(m) => m.dim(),
            _ => {
                let stages = self.stage_channels_ref();
                stages[stages.len() - 1]
            }
        }
    }

    /// The names and kinds of [`Features::maps`] and the pooled width.
    pub fn layout(&self) -> FeatureLayout {
        let names: [String; 4] = match self {
            Model::ResNet(_) => ["layer1", "layer2", "layer3", "layer4"].map(String::from),
            Model::MobileNetV2(_) => ["features.3", "features.6", "features.13", "features.18"].map(String::from),
            Model::DenseNet(_) => {
                ["features.denseblock1", "features.denseblock2", "features.denseblock3", "features.norm5"].map(String::from)
            }
            Model::EfficientNetLite(m) => m.map_names(),
            Model::Vit(m) => {
                let maps = m.map_names().into_iter().map(|name| MapInfo { name, kind: MapKind::Tokens { dim: m.dim() } });
                return FeatureLayout { maps: maps.collect(), pooled_dim: m.dim() };
            }
        };
        let maps =
            names.into_iter().zip(self.stage_channels_ref()).map(|(name, &channels)| MapInfo { name, kind: MapKind::Spatial { channels } });
        FeatureLayout { maps: maps.collect(), pooled_dim: self.feature_dim() }
    }

    /// The CNNs' stage widths (a ViT has one width, [`Model::feature_dim`]).
    fn stage_channels_ref(&self) -> &[usize] {
        match self {
            Model::ResNet(m) => m.stage_channels(),
            Model::MobileNetV2(m) => m.stage_channels(),
            Model::DenseNet(m) => m.stage_channels(),
            Model::EfficientNetLite(m) => m.stage_channels(),
            Model::Vit(_) => &[],
        }
    }

    fn run(&self, x: Tensor<4>, stages: &mut Stages) -> (Tensor<2>, Tensor<2>) {
        match self {
            Model::ResNet(m) => m.forward(x, stages),
            Model::MobileNetV2(m) => m.forward(x, stages),
            Model::DenseNet(m) => m.forward(x, stages),
            Model::EfficientNetLite(m) => m.forward(x, stages),
            Model::Vit(m) => m.forward(x, stages),
        }
    }

    /// The ids of every trainable parameter but the classifier's: what fine-tuning calls the
    /// backbone.
    pub fn backbone_params(&self) -> Vec<ParamId> {
        struct Collect {
            classifier: &'static str,
            path: Vec<String>,
            ids: Vec<ParamId>,
        }
        impl ModuleVisitor for Collect {
            fn enter_module(&mut self, name: &str, _container_type: &str) {
                self.path.push(name.to_owned());
            }
            fn exit_module(&mut self, _name: &str, _container_type: &str) {
                self.path.pop();
            }
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                if !self.path.iter().any(|part| part == self.classifier) {
                    self.ids.push(param.id);
                }
            }
        }
        let classifier = match self {
            Model::ResNet(_) => "fc",
            Model::MobileNetV2(_) | Model::DenseNet(_) => "classifier",
            Model::EfficientNetLite(_) => "_fc",
            Model::Vit(_) => "head",
        };
        let mut collect = Collect { classifier, path: Vec::new(), ids: Vec::new() };
        self.visit(&mut collect);
        collect.ids
    }

    /// The model with every BatchNorm on its running statistics even where it would train
    /// (fine-tuning with few images per batch): the statistics stay as loaded, while the scale
    /// and shift still learn. Dropout is left as it is.
    pub fn freeze_batch_norm(self) -> Model {
        #[derive(Default)]
        struct Freeze {
            containers: Vec<String>,
        }
        impl ModuleMapper for Freeze {
            fn enter_module(&mut self, _name: &str, container_type: &str) {
                self.containers.push(container_type.to_owned());
            }
            fn exit_module(&mut self, _name: &str, _container_type: &str) {
                self.containers.pop();
            }
            fn map_flag(&mut self, flag: Param<Flag>) -> Param<Flag> {
                if self.containers.last().is_some_and(|c| c == "Struct:BatchNorm") { flag.with_value(false) } else { flag }
            }
        }
        self.map(&mut Freeze::default())
    }

    /// The checkpoint name of the first conv's weight, the one tensor whose shape follows
    /// `in_channels`.
    pub(crate) fn input_conv(&self) -> &'static str {
        match self {
            Model::ResNet(_) => "conv1.weight",
            Model::MobileNetV2(_) => "features.0.0.weight",
            Model::DenseNet(_) => "features.conv0.weight",
            Model::EfficientNetLite(_) => "_conv_stem.weight",
            Model::Vit(_) => "patch_embed.proj.weight",
        }
    }

    /// Regex rules from burn module paths (enum variants skipped, BatchNorm gamma/beta already
    /// named weight/bias) to torchvision state-dict names, applied in order.
    pub(crate) fn torchvision_keys(&self) -> Vec<(String, String)> {
        match self {
            Model::ResNet(_) => resnet::torchvision_keys(),
            Model::MobileNetV2(_) => mobilenetv2::torchvision_keys(),
            Model::DenseNet(_) => densenet::torchvision_keys(),
            // Their fields carry the checkpoint's names.
            Model::EfficientNetLite(_) | Model::Vit(_) => Vec::new(),
        }
    }
}

/// Trainable parameters, as torchvision counts them (`sum(p.numel() for p in m.parameters())`):
/// BatchNorm running statistics are buffers and are left out.
pub fn count_params(model: &Model) -> usize {
    #[derive(Default)]
    struct Counter {
        path: Vec<String>,
        count: usize,
    }

    impl ModuleVisitor for Counter {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_owned());
        }

        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }

        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let buffer = matches!(self.path.last().map(String::as_str), Some("running_mean" | "running_var"));
            if !buffer {
                // lazy_shape: counting must not materialize the weights.
                self.count += param.lazy_shape().num_elements();
            }
        }
    }

    let mut counter = Counter::default();
    model.visit(&mut counter);
    counter.count
}

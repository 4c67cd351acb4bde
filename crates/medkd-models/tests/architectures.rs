//! Shapes, parameter counts and MACs of every architecture, against torchvision's (golden file).

mod common;

use burn::module::Module;
use burn::tensor::Tensor;
use common::*;
use medkd_models::{Arch, Model, ModelError, ModelSpec, count_macs, count_params};

fn spec(arch: Arch, num_classes: usize, small_input: bool) -> ModelSpec {
    ModelSpec { small_input, ..ModelSpec::new(arch, num_classes) }
}

/// Stage shapes `[C, H, W]` torchvision produces for `arch` at `size` px.
fn torchvision_stages(arch: Arch, size: usize, small_input: bool) -> Vec<Vec<usize>> {
    let config = architecture_golden(arch.name())["configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["input"] == size && c["small_input"] == small_input)
        .cloned()
        .unwrap_or_else(|| panic!("no golden config for {arch} at {size} px"));
    config["stages"].as_array().unwrap().iter().map(usizes).collect()
}

/// The channels of every map of the model's layout, all of them spatial for the CNNs.
fn spatial_channels(model: &Model) -> Vec<usize> {
    let layout = model.layout();
    (0..layout.maps.len()).map(|i| layout.spatial_channels(i).unwrap()).collect()
}

fn check_shapes(arch: Arch, size: usize, small_input: bool) {
    let device = medkd_models::test_device();
    let model = Model::new(&spec(arch, 5, small_input), &device).unwrap().valid();
    let features = model.forward(Tensor::zeros([1, 3, size, size], &device));
    let stages: Vec<Vec<usize>> = (0..features.maps.len()).map(|i| features.spatial(i).dims()[1..].to_vec()).collect();
    assert_eq!(stages, torchvision_stages(arch, size, small_input), "{arch} {size} px small={small_input}");
    assert_eq!(features.pooled.dims(), [1, model.feature_dim()]);
    assert_eq!(features.logits.dims(), [1, 5]);
    let channels: Vec<usize> = stages.iter().map(|s| s[0]).collect();
    assert_eq!(channels, spatial_channels(&model));
}

// The heavy architectures (ResNet-50, DenseNet-121) run at 32 px where the others run at
// 64 px with the small-input stem, to keep the suite fast on a CPU.
#[test]
fn resnet18_shapes() {
    check_shapes(Arch::ResNet18, 64, false);
    check_shapes(Arch::ResNet18, 64, true);
    check_shapes(Arch::ResNet18, 28, true);
}

#[test]
fn resnet34_shapes() {
    check_shapes(Arch::ResNet34, 64, false);
    check_shapes(Arch::ResNet34, 64, true);
    check_shapes(Arch::ResNet34, 28, true);
}

#[test]
fn resnet50_shapes() {
    check_shapes(Arch::ResNet50, 64, false);
    check_shapes(Arch::ResNet50, 32, true);
    check_shapes(Arch::ResNet50, 28, true);
}

#[test]
fn mobilenetv2_shapes() {
    check_shapes(Arch::MobileNetV2, 64, false);
    check_shapes(Arch::MobileNetV2, 64, true);
    check_shapes(Arch::MobileNetV2, 28, true);
}

#[test]
fn densenet121_shapes() {
    check_shapes(Arch::DenseNet121, 64, false);
    check_shapes(Arch::DenseNet121, 32, true);
    check_shapes(Arch::DenseNet121, 28, true);
}

#[test]
fn efficientnet_lite_shapes() {
    check_shapes(Arch::EfficientNetLite0, 64, false);
    check_shapes(Arch::EfficientNetLite0, 64, true);
    check_shapes(Arch::EfficientNetLite0, 28, true);
    check_shapes(Arch::EfficientNetLite1, 64, false);
    check_shapes(Arch::EfficientNetLite2, 28, true);
}

#[test]
fn logits_path_matches_forward() {
    let device = medkd_models::test_device();
    let model = Model::new(&spec(Arch::MobileNetV2, 3, true), &device).unwrap().valid();
    let x = formula_input(2, 28, &device);
    let diff = max_abs_diff(&to_vec(model.logits(x.clone())), &to_vec(model.forward(x).logits));
    assert_eq!(diff, 0.0);
}

#[test]
fn parameter_counts_match_torchvision() {
    let device = medkd_models::test_device();
    for (arch, torchvision) in [
        (Arch::ResNet18, 11_689_512),
        (Arch::ResNet34, 21_797_672),
        (Arch::ResNet50, 25_557_032),
        (Arch::MobileNetV2, 3_504_872),
        (Arch::DenseNet121, 7_978_856),
        (Arch::EfficientNetLite0, 4_652_008),
        (Arch::EfficientNetLite1, 5_416_680),
        (Arch::EfficientNetLite2, 6_092_072),
    ] {
        assert_eq!(architecture_golden(arch.name())["params"], torchvision);
        let model = Model::new(&ModelSpec::new(arch, 1000), &device).unwrap();
        assert_eq!(count_params(&model), torchvision, "{arch}");
    }
}

#[test]
fn feature_dims() {
    let device = medkd_models::test_device();
    for (arch, dim, stages) in [
        (Arch::ResNet18, 512, [64, 128, 256, 512]),
        (Arch::ResNet34, 512, [64, 128, 256, 512]),
        (Arch::ResNet50, 2048, [256, 512, 1024, 2048]),
        (Arch::MobileNetV2, 1280, [24, 32, 96, 1280]),
        (Arch::DenseNet121, 1024, [256, 512, 1024, 1024]),
        (Arch::EfficientNetLite0, 1280, [24, 40, 112, 1280]),
        (Arch::EfficientNetLite2, 1280, [24, 48, 120, 1280]),
    ] {
        let model = Model::new(&ModelSpec::new(arch, 2), &device).unwrap();
        assert_eq!(model.feature_dim(), dim, "{arch}");
        assert_eq!(spatial_channels(&model), stages, "{arch}");
        assert_eq!(model.layout().pooled_dim, dim, "{arch}");
    }
}

#[test]
fn macs_match_torchvision_hooks() {
    // The ViTs' counts are checked against timm in tests/vit.rs.
    for arch in Arch::ALL.into_iter().filter(|arch| !arch.is_vit()) {
        for config in architecture_golden(arch.name())["configs"].as_array().unwrap() {
            let size = config["input"].as_u64().unwrap() as usize;
            let small_input = config["small_input"].as_bool().unwrap();
            let macs = count_macs(&spec(arch, 1000, small_input), [size, size]);
            assert_eq!(macs, config["macs"].as_u64().unwrap(), "{arch} {size} px small={small_input}");
        }
    }
}

#[test]
fn resnet18_reference_macs() {
    // Conv + a 10-class head; a 1000-class fc would add 0.0005 GMAC.
    let gmac = |size| count_macs(&ModelSpec::new(Arch::ResNet18, 10), [size, size]) as f64 / 1e9;
    assert_eq!(format!("{:.4}", gmac(224)), "1.8136");
    assert_eq!(format!("{:.4}", gmac(64)), "0.1481");
    // Non-square inputs count per axis.
    let spec = ModelSpec::new(Arch::ResNet18, 10);
    assert!(count_macs(&spec, [64, 128]) > count_macs(&spec, [64, 64]));
}

#[test]
fn arch_names_round_trip() {
    for arch in Arch::ALL {
        assert_eq!(arch.name().parse::<Arch>().unwrap(), arch);
        assert_eq!(arch.to_string(), arch.name());
        assert_eq!(serde_json::to_value(arch).unwrap(), arch.name());
    }
    assert_eq!("ResNet50".parse::<Arch>().unwrap(), Arch::ResNet50);
}

#[test]
fn unknown_arch_lists_valid_names() {
    let err = "resnet101".parse::<Arch>().unwrap_err();
    assert!(matches!(err, ModelError::UnknownArch(ref name) if name == "resnet101"));
    assert_eq!(
        err.to_string(),
        "unknown architecture `resnet101`; valid names: resnet18, resnet34, resnet50, mobilenetv2, densenet121, efficientnet_lite0, \
         efficientnet_lite1, efficientnet_lite2, vit_tiny_patch4, vit_tiny_patch8, vit_tiny_patch16, vit_small_patch4, \
         vit_small_patch8, vit_small_patch16"
    );
    assert!(serde_json::from_str::<Arch>("\"vgg16\"").is_err());
}

#[test]
fn spec_serde_defaults_and_strictness() {
    let spec: ModelSpec = serde_json::from_str(r#"{"arch": "densenet121", "num_classes": 9}"#).unwrap();
    assert_eq!(spec, ModelSpec::new(Arch::DenseNet121, 9));
    assert_eq!((spec.in_channels, spec.small_input), (3, false));
    let round_trip: ModelSpec = serde_json::from_value(serde_json::to_value(&spec).unwrap()).unwrap();
    assert_eq!(round_trip, spec);
    let err = serde_json::from_str::<ModelSpec>(r#"{"arch": "resnet18", "num_classes": 2, "dropout": 0.5}"#).unwrap_err();
    assert!(err.to_string().contains("dropout"), "{err}");
}

#[test]
fn invalid_specs_are_rejected() {
    let device = medkd_models::test_device();
    for spec in [ModelSpec::new(Arch::ResNet18, 0), ModelSpec { in_channels: 0, ..ModelSpec::new(Arch::ResNet18, 2) }] {
        assert!(matches!(Model::new(&spec, &device), Err(ModelError::InvalidSpec(_))));
    }
}

#[test]
fn single_channel_input() {
    let device = medkd_models::test_device();
    let spec = ModelSpec { in_channels: 1, small_input: true, ..ModelSpec::new(Arch::ResNet18, 4) };
    let model = Model::new(&spec, &device).unwrap().valid();
    assert_eq!(model.logits(Tensor::zeros([2, 1, 28, 28], &device)).dims(), [2, 4]);
}

#[test]
fn trains_on_an_autodiff_device() {
    // Gradients reach every trainable parameter (and no BatchNorm buffer).
    struct GradCount<'a> {
        grads: &'a burn::tensor::Gradients,
        with_grad: usize,
        total: usize,
    }
    impl burn::module::ModuleVisitor for GradCount<'_> {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            self.total += 1;
            self.with_grad += usize::from(param.val().grad(self.grads).is_some());
        }
    }

    let device = medkd_models::test_device().autodiff();
    let model = Model::new(&spec(Arch::ResNet18, 3, true), &device).unwrap();
    let features = model.forward(formula_input(2, 28, &device));
    let first_stage = features.spatial(0).clone().mean();
    let loss = features.logits.powi_scalar(2).mean() + first_stage;
    let grads = loss.backward();
    let mut counter = GradCount { grads: &grads, with_grad: 0, total: 0 };
    model.visit(&mut counter);
    let batch_norms = 20; // stem, 16 block convs, 3 downsamples
    assert_eq!(counter.with_grad, counter.total - 2 * batch_norms);
}

#[test]
fn backbone_is_everything_but_the_classifier() {
    struct Count(usize);
    impl burn::module::ModuleVisitor for Count {
        fn visit_float<const D: usize>(&mut self, _param: &burn::module::Param<Tensor<D>>) {
            self.0 += 1;
        }
    }
    let device = medkd_models::test_device();
    for arch in Arch::ALL {
        let spec = ModelSpec { image_size: Some([32, 32]), ..ModelSpec::new(arch, 3) };
        let model = Model::new(&spec, &device).unwrap();
        let mut count = Count(0);
        model.visit(&mut count);
        // The classifier's weight and bias are the only tensors left out.
        assert_eq!(model.backbone_params().len(), count.0 - 2, "{arch}");
    }
}

/// With BatchNorm frozen, a training forward uses the running statistics (so it equals the eval
/// forward and leaves them unchanged) while gradients still reach BatchNorm's scale.
#[test]
fn frozen_batch_norm_trains_on_running_statistics() {
    let device = medkd_models::test_device().autodiff();
    let model = Model::new(&spec(Arch::ResNet18, 3, true), &device).unwrap().freeze_batch_norm();
    let x = formula_input(2, 28, &device);
    let features = model.forward(x.clone());
    let eval = model.valid().forward(formula_input(2, 28, &medkd_models::test_device()));
    assert!(max_abs_diff(&to_vec(features.logits.clone()), &to_vec(eval.logits)) < 1e-5);
    let grads = features.logits.powi_scalar(2).mean().backward();
    struct Scales<'a>(&'a burn::tensor::Gradients, Vec<String>, usize, usize);
    impl burn::module::ModuleVisitor for Scales<'_> {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.1.push(name.to_owned());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.1.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            if self.1.last().is_some_and(|p| p == "gamma") {
                self.2 += 1;
                self.3 += usize::from(param.val().grad(self.0).is_some());
            }
        }
    }
    let mut scales = Scales(&grads, Vec::new(), 0, 0);
    model.visit(&mut scales);
    assert!(scales.2 > 0 && scales.2 == scales.3, "{} of {} BatchNorm scales got gradients", scales.3, scales.2);
    // And the running statistics did not move: a second training forward gives the same logits.
    let again = model.forward(x).logits;
    assert!(max_abs_diff(&to_vec(again), &to_vec(model.valid().forward(formula_input(2, 28, &medkd_models::test_device())).logits)) < 1e-5);
}

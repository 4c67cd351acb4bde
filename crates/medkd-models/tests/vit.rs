//! ViT parity with timm's `VisionTransformer`, against values computed by
//! tools/golden/vit_logits.py.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::Module;
use common::*;
use medkd_models::{Arch, FeatureMap, MapKind, Model, ModelSpec, count_macs, count_params, load_weights, save_weights};
use serde_json::Value;

/// Forward in f32 through 12 blocks vs the reference in float64 on the same f32 weights.
const TOLERANCE: f32 = 2e-5;

fn vit_golden() -> Value {
    let text = std::fs::read_to_string(golden_dir().join("vit.json")).expect("golden file; regenerate with tools/golden/vit_logits.py");
    serde_json::from_str(&text).expect("golden JSON")
}

fn spec(arch: Arch, num_classes: usize, image_size: usize) -> ModelSpec {
    ModelSpec { image_size: Some([image_size; 2]), ..ModelSpec::new(arch, num_classes) }
}

/// The script's weights: the formula, except 0.5 · u for the CLS token and position embeddings.
fn write_vit_formula_weights(path: &Path, state_dict: &Value) -> Vec<Entry> {
    let entries: Vec<Entry> = state_dict_entries(state_dict)
        .into_iter()
        .enumerate()
        .map(|(k, (name, shape))| {
            let values = if name == "cls_token" || name == "pos_embed" {
                let count: usize = shape.iter().product();
                (0..count as u64).map(|i| (0.5 * splitmix_uniform(k as u64, i)) as f32).collect()
            } else {
                formula_tensor(&name, &shape, k)
            };
            Entry { name, shape, values }
        })
        .collect();
    write_safetensors(path, &entries);
    entries
}

/// timm's logits and CLS embedding: at the model's own grid, from a 224 px checkpoint loaded
/// into a 64 px model (position embeddings resampled at load, as timm's checkpoint filter does),
/// and on inputs smaller than the model's grid (resampled at every forward, as timm's
/// `dynamic_img_size`); and the last block's CLS attention that the gallery draws.
#[test]
fn formula_weights_match_timm() {
    let golden = vit_golden();
    let device = medkd_models::test_device();
    let dir = tempfile::tempdir().unwrap();
    for case in golden["golden"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let arch: Arch = case["arch"].as_str().unwrap().parse().unwrap();
        let weights = dir.path().join(format!("{name}.safetensors"));
        write_vit_formula_weights(&weights, &case["state_dict"]);
        let model_size = case["model_image_size"].as_u64().unwrap() as usize;
        let spec = spec(arch, case["num_classes"].as_u64().unwrap() as usize, model_size);
        let model = load_weights(Model::new(&spec, &device).unwrap(), &weights).unwrap().valid();
        let input_shape = usizes(&case["input_shape"]);
        let input = formula_input(input_shape[0], input_shape[2], &device);
        let attention_diff = max_abs_diff(&to_vec(model.saliency(input.clone(), &[0, 0])), &floats(&case["cls_attention"]));
        let features = model.forward(input);
        let logits_diff = max_abs_diff(&to_vec(features.logits), &floats(&case["logits"]));
        let pooled_diff = max_abs_diff(&to_vec(features.pooled), &floats(&case["pooled"]));
        println!("{name}: max |logits - timm| = {logits_diff:e}, pooled {pooled_diff:e}, CLS attention {attention_diff:e}");
        assert!(attention_diff < 1e-6, "{name}: CLS attention differs by {attention_diff}");
        assert!(logits_diff < TOLERANCE, "{name}: logits differ by {logits_diff}");
        assert!(pooled_diff < TOLERANCE, "{name}: CLS embedding differs by {pooled_diff}");
    }
}

/// Every size and patch: timm's state-dict keys and shapes (written by `save_weights` and loaded
/// back strictly), parameter count, multiply-accumulates and token-map shapes.
#[test]
fn keys_params_macs_and_maps_are_timm_s() {
    let golden = vit_golden();
    let device = medkd_models::test_device();
    let dir = tempfile::tempdir().unwrap();
    for entry in golden["architectures"].as_array().unwrap() {
        let arch: Arch = entry["arch"].as_str().unwrap().parse().unwrap();
        let size = entry["input"].as_u64().unwrap() as usize;
        let spec = spec(arch, 1000, size);
        let model = Model::new(&spec, &device).unwrap();
        let path = dir.path().join(format!("{arch}.safetensors"));
        save_weights(&model, &path).unwrap();
        let written: BTreeMap<String, Vec<usize>> = read_safetensors(&path).into_iter().map(|e| (e.name, e.shape)).collect();
        let expected: BTreeMap<String, Vec<usize>> = state_dict_entries(&entry["state_dict"]).into_iter().collect();
        assert_eq!(written, expected, "{arch}");
        let model = load_weights(Model::new(&spec, &device).unwrap(), &path).unwrap();
        assert_eq!(count_params(&model) as u64, entry["params"].as_u64().unwrap(), "{arch} parameters");
        assert_eq!(count_macs(&spec, [size, size]), entry["macs"].as_u64().unwrap(), "{arch} MACs at {size} px");

        let features = model.valid().forward(burn::tensor::Tensor::zeros([1, 3, size, size], &device));
        let shapes: Vec<Vec<usize>> = features
            .maps
            .iter()
            .map(|map| match map {
                FeatureMap::Tokens(tokens) => tokens.dims()[1..].to_vec(),
                FeatureMap::Spatial(_) => panic!("{arch}: a spatial map"),
            })
            .collect();
        let expected: Vec<Vec<usize>> = entry["maps"].as_array().unwrap().iter().map(usizes).collect();
        assert_eq!(shapes, expected, "{arch} maps");
        let layout = model.layout();
        let dim = expected[0][1];
        assert!(layout.maps.iter().all(|map| map.kind == MapKind::Tokens { dim }), "{arch}: {layout:?}");
        assert_eq!(layout.pooled_dim, dim);
        assert_eq!(layout.maps[3].name, "norm");
    }
}

/// An RGB checkpoint loads into a one-channel ViT with its patch projection summed over the
/// colours, as for the CNN stems.
#[test]
fn rgb_patch_embedding_sums_for_one_channel_input() {
    let golden = vit_golden();
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("rgb.safetensors");
    write_vit_formula_weights(&weights, &golden["golden"][0]["state_dict"]);
    assert_gray_loads_as_rgb(&spec(Arch::VitTinyPatch4, 7, 28), &weights, 28);
}

/// Stochastic depth is on in training only, and only when asked for.
#[test]
fn drop_path_only_in_training() {
    let device = medkd_models::test_device().autodiff();
    device.seed(3);
    let x = formula_input(8, 28, &device);
    let pooled = |model: &Model| to_vec(model.forward(x.clone()).pooled);
    let dropping = Model::new(&ModelSpec { drop_path_rate: 0.3, ..spec(Arch::VitTinyPatch4, 3, 28) }, &device).unwrap();
    assert!(max_abs_diff(&pooled(&dropping), &pooled(&dropping)) > 0.0);
    let plain = Model::new(&spec(Arch::VitTinyPatch4, 3, 28), &device).unwrap();
    assert_eq!(max_abs_diff(&pooled(&plain), &pooled(&plain)), 0.0);
    let eval = dropping.valid();
    let x = formula_input(8, 28, &medkd_models::test_device());
    assert_eq!(max_abs_diff(&to_vec(eval.forward(x.clone()).pooled), &to_vec(eval.forward(x).pooled)), 0.0);
}

/// Bad input: a size the patch does not divide, a ViT without its image size, CNN-only and
/// ViT-only settings crossed, and a checkpoint of another width (every mismatching tensor named
/// with both shapes).
#[test]
fn bad_specs_and_checkpoints_are_refused_clearly() {
    let device = medkd_models::test_device();
    let err = spec(Arch::VitTinyPatch8, 2, 64).check_input([60, 64]).unwrap_err().to_string();
    assert!(err.contains("multiples of 8") && err.contains("60x64"), "{err}");
    let err = Model::new(&spec(Arch::VitTinyPatch16, 2, 72), &device).unwrap_err().to_string();
    assert!(err.contains("multiples of 16") && err.contains("72x72"), "{err}");
    let err = Model::new(&ModelSpec::new(Arch::VitSmallPatch8, 2), &device).unwrap_err().to_string();
    assert!(err.contains("vit_small_patch8 needs `image_size`"), "{err}");
    let err = ModelSpec { drop_path_rate: 0.1, ..ModelSpec::new(Arch::ResNet18, 2) }.validate().unwrap_err().to_string();
    assert!(err.contains("drop_path_rate is a ViT setting"), "{err}");
    let err = ModelSpec { drop_path_rate: 1.0, ..spec(Arch::VitTinyPatch4, 2, 28) }.validate().unwrap_err().to_string();
    assert!(err.contains("[0, 1)"), "{err}");
    let err = ModelSpec { small_input: true, ..spec(Arch::VitTinyPatch4, 2, 28) }.validate().unwrap_err().to_string();
    assert!(err.contains("no small-input stem"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small.safetensors");
    save_weights(&Model::new(&spec(Arch::VitSmallPatch4, 2, 28), &device).unwrap(), &small).unwrap();
    let err = load_weights(Model::new(&spec(Arch::VitTinyPatch4, 2, 28), &device).unwrap(), &small).unwrap_err().to_string();
    assert!(err.contains("cls_token: expected [1, 1, 192], found [1, 1, 384]"), "{err}");
    assert!(err.contains("pos_embed: expected [1, 50, 192], found [1, 50, 384]"), "{err}");
}

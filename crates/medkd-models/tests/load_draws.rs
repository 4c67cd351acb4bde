//! Loading a complete state dict draws no random numbers: every parameter comes from the file, so
//! none is initialized first. Its own test binary: the other tests draw from the same device.

use burn::tensor::{Distribution, Tensor};
use medkd_models::{Arch, Model, ModelSpec, load_weights, save_weights, test_device};

/// The next 16 uniform draws of the device.
fn draws() -> Vec<f32> {
    Tensor::<1>::random([16], Distribution::Default, &test_device()).into_data().to_vec().unwrap()
}

#[test]
fn loading_weights_draws_no_random_numbers() {
    let device = test_device();
    let spec = ModelSpec::new(Arch::ResNet18, 3);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resnet18.safetensors");
    let saved = Model::new(&spec, &device).unwrap();
    save_weights(&saved, &path).unwrap();

    device.seed(11);
    let fresh = draws();
    device.seed(11);
    let loaded = load_weights(Model::new(&spec, &device).unwrap(), &path).unwrap();
    assert_eq!(draws(), fresh, "loading drew random numbers");

    // And the loaded model is the saved one, not zeros.
    let logits = |model: &Model| -> Vec<f32> { model.logits(Tensor::ones([2, 3, 28, 28], &device)).into_data().to_vec().unwrap() };
    let expected = logits(&saved);
    assert!(expected.iter().any(|&l| l != 0.0));
    assert_eq!(logits(&loaded), expected);
}

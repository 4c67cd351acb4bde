//! Strict and partial loading, checkpoint formats and save behaviour.

mod common;

use std::path::Path;

use burn::module::Module;
use common::*;
use medkd_models::{Arch, Model, ModelError, ModelSpec, ShapeMismatch, load_weights, load_weights_partial, save_weights};

fn mobilenet(num_classes: usize) -> Model {
    Model::new(&ModelSpec { small_input: true, ..ModelSpec::new(Arch::MobileNetV2, num_classes) }, &medkd_models::test_device()).unwrap()
}

/// A complete, valid MobileNetV2 (3 classes) state dict, as written by `save_weights`.
fn valid_entries(dir: &Path) -> Vec<Entry> {
    let path = dir.join("valid.safetensors");
    save_weights(&mobilenet(3), &path).unwrap();
    read_safetensors(&path)
}

fn logits(model: Model) -> Vec<f32> {
    let device = medkd_models::test_device();
    to_vec(model.valid().logits(formula_input(1, 28, &device)))
}

#[test]
fn reports_missing_unexpected_and_misshaped_tensors_together() {
    let dir = tempfile::tempdir().unwrap();
    let mut entries = valid_entries(dir.path());
    entries.retain(|e| e.name != "features.18.1.running_var");
    entries.push(Entry::new("features.19.weight", vec![2]));
    let classifier = entries.iter_mut().find(|e| e.name == "classifier.1.weight").unwrap();
    *classifier = Entry::new("classifier.1.weight", vec![5, 1280]);
    let path = dir.path().join("broken.safetensors");
    write_safetensors(&path, &entries);

    let err = load_weights(mobilenet(3), &path).unwrap_err();
    let message = err.to_string();
    let ModelError::Mismatch { missing, unexpected, mismatched, .. } = err else { panic!("{message}") };
    assert_eq!(missing, ["features.18.1.running_var"]);
    assert_eq!(unexpected, ["features.19.weight"]);
    assert_eq!(mismatched, [ShapeMismatch { name: "classifier.1.weight".into(), expected: vec![3, 1280], found: vec![5, 1280] }]);
    for needle in [
        "missing tensors (1): features.18.1.running_var",
        "unexpected tensors (1): features.19.weight",
        "classifier.1.weight: expected [3, 1280], found [5, 1280]",
    ] {
        assert!(message.contains(needle), "{message}");
    }
}

#[test]
fn each_problem_alone_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let valid = valid_entries(dir.path());
    let path = dir.path().join("case.safetensors");
    let expect_error = |edit: &dyn Fn(&mut Vec<Entry>), needle: &str| {
        let mut entries: Vec<Entry> = valid.iter().map(Entry::clone).collect();
        edit(&mut entries);
        write_safetensors(&path, &entries);
        let message = load_weights(mobilenet(3), &path).unwrap_err().to_string();
        assert!(message.contains(needle), "expected `{needle}` in: {message}");
    };
    expect_error(&|e| e.retain(|t| t.name != "features.0.0.weight"), "missing tensors (1): features.0.0.weight");
    expect_error(&|e| e.push(Entry::new("head.bias", vec![1])), "unexpected tensors (1): head.bias");
    expect_error(
        &|e| {
            let bias = e.iter_mut().find(|t| t.name == "features.0.1.bias").unwrap();
            *bias = Entry::new("features.0.1.bias", vec![16]);
        },
        "features.0.1.bias: expected [32], found [16]",
    );
}

#[test]
fn ignores_num_batches_tracked_and_unwraps_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let mut entries = valid_entries(dir.path());
    let reference = entries.iter().map(|e| (e.name.clone(), e.values.clone())).collect::<Vec<_>>();
    entries.push(Entry { name: "features.0.1.num_batches_tracked".into(), shape: vec![], values: vec![3.0] });
    let path = dir.path().join("with_counter.safetensors");
    write_safetensors(&path, &entries);
    let expected = logits(load_weights(mobilenet(3), &path).unwrap());

    // {"model": state_dict, "optimizer": ...}
    for entry in &mut entries {
        entry.name = format!("model.{}", entry.name);
    }
    entries.push(Entry { name: "optimizer.state.0.exp_avg".into(), shape: vec![2], values: vec![1.0; 2] });
    let nested = dir.path().join("checkpoint.safetensors");
    write_safetensors(&nested, &entries);
    let model = load_weights(mobilenet(3), &nested).unwrap();

    let saved = dir.path().join("saved.safetensors");
    save_weights(&model, &saved).unwrap();
    let written: Vec<(String, Vec<f32>)> = read_safetensors(&saved).into_iter().map(|e| (e.name, e.values)).collect();
    assert_eq!(written, reference);
    assert_eq!(logits(model), expected);
}

#[test]
fn partial_loading_keeps_the_new_head() {
    let dir = tempfile::tempdir().unwrap();
    // "ImageNet" weights: same backbone, 1000-class head.
    let pretrained = dir.path().join("pretrained.safetensors");
    save_weights(&mobilenet(1000), &pretrained).unwrap();

    let strict = load_weights(mobilenet(3), &pretrained).unwrap_err().to_string();
    assert!(strict.contains("classifier.1.weight: expected [3, 1280], found [1000, 1280]"), "{strict}");

    let fresh = mobilenet(3);
    let head = dir.path().join("head.safetensors");
    save_weights(&fresh, &head).unwrap();
    let model = load_weights_partial(fresh, &pretrained, &["classifier."]).unwrap();
    let loaded = dir.path().join("loaded.safetensors");
    save_weights(&model, &loaded).unwrap();

    let by_name =
        |path: &Path| read_safetensors(path).into_iter().map(|e| (e.name, e.values)).collect::<std::collections::BTreeMap<_, _>>();
    let (pretrained, head, loaded) = (by_name(&pretrained), by_name(&head), by_name(&loaded));
    for (name, values) in &loaded {
        let source = if name.starts_with("classifier.") { &head } else { &pretrained };
        assert!(values == &source[name], "{name}");
    }

    // A file without the skipped tensors loads too.
    let backbone: Vec<Entry> =
        read_safetensors(&dir.path().join("loaded.safetensors")).into_iter().filter(|e| !e.name.starts_with("classifier.")).collect();
    let path = dir.path().join("backbone.safetensors");
    write_safetensors(&path, &backbone);
    load_weights_partial(mobilenet(3), &path, &["classifier."]).unwrap();
    let err = load_weights(mobilenet(3), &path).unwrap_err().to_string();
    assert!(err.contains("missing tensors (2): classifier.1.bias, classifier.1.weight"), "{err}");
}

#[test]
fn save_load_round_trip_is_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    let device = medkd_models::test_device();
    for spec in [ModelSpec { small_input: true, ..ModelSpec::new(Arch::ResNet50, 4) }, ModelSpec::new(Arch::DenseNet121, 2)] {
        // Train-mode forwards on an autodiff device move the BatchNorm statistics off 0/1.
        let model = Model::new(&spec, &device.clone().autodiff()).unwrap();
        model.forward(formula_input(2, 32, &device.clone().autodiff()));
        let first = dir.path().join("first.safetensors");
        let second = dir.path().join("second.safetensors");
        save_weights(&model, &first).unwrap();
        let reloaded = load_weights(Model::new(&spec, &device).unwrap(), &first).unwrap();
        save_weights(&reloaded, &second).unwrap();
        // Compared tensor by tensor: the header's metadata map has no fixed order.
        let (first, second) = (read_safetensors(&first), read_safetensors(&second));
        assert_eq!(first.len(), second.len());
        for (a, b) in first.iter().zip(&second) {
            assert_eq!((&a.name, &a.shape), (&b.name, &b.shape));
            assert!(a.values == b.values, "{:?}: {} not bit-exact", spec.arch, a.name);
        }
        let stats = first.iter().find(|e| e.name.ends_with("running_mean")).unwrap();
        assert!(stats.values.iter().any(|v| *v != 0.0), "running statistics were not updated");
    }
}

#[test]
fn save_overwrites_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    save_weights(&mobilenet(2), &path).unwrap();
    save_weights(&mobilenet(3), &path).unwrap();
    load_weights(mobilenet(3), &path).unwrap();
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(files, ["model.safetensors"], "no temporary file may be left behind");
}

#[test]
fn the_same_weights_make_the_same_file() {
    // A header kept in a HashMap (as burn-store and the safetensors crate keep `__metadata__`)
    // changes order from one map to the next: a dozen saves would all but surely show two orders.
    let dir = tempfile::tempdir().unwrap();
    let model = mobilenet(2);
    let metadata = [("medkd".to_string(), "test".to_string()), ("arch".to_string(), "mobilenet_v2".to_string())];
    let files: Vec<Vec<u8>> = (0..12)
        .map(|i| {
            let path = dir.path().join(format!("{i}.safetensors"));
            medkd_models::save_weights_with_metadata(&model, &path, &metadata).unwrap();
            std::fs::read(path).unwrap()
        })
        .collect();
    assert!(files.iter().all(|file| *file == files[0]));
    let mut written = Vec::new();
    medkd_models::write_safetensors(&model, &metadata, &mut written, Path::new("model.safetensors")).unwrap();
    assert_eq!(written, files[0]);
    // Still a safetensors file that the reference reader takes, metadata and all.
    let (_, header) = safetensors::SafeTensors::read_metadata(&files[0]).unwrap();
    assert_eq!(header.metadata().as_ref().unwrap()["arch"], "mobilenet_v2");
    load_weights(mobilenet(2), &dir.path().join("0.safetensors")).unwrap();
}

#[test]
fn rejects_unsupported_and_corrupt_files() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("model.bin");
    std::fs::write(&bin, b"weights").unwrap();
    assert!(matches!(load_weights(mobilenet(2), &bin), Err(ModelError::UnsupportedFormat { .. })));
    let pth = dir.path().join("model.pth");
    assert!(matches!(save_weights(&mobilenet(2), &pth), Err(ModelError::UnsupportedFormat { .. })));

    for name in ["corrupt.safetensors", "corrupt.pth", "missing.pt"] {
        let path = dir.path().join(name);
        if !name.starts_with("missing") {
            std::fs::write(&path, b"\x80\x02not really a checkpoint").unwrap();
        }
        let err = load_weights(mobilenet(2), &path).unwrap_err();
        assert!(matches!(err, ModelError::Read { .. }), "{name}: {err}");
    }
}

/// Feature maps are named by their module path in the checkpoint's naming, so a user can find
/// each in the torchvision state dict.
#[test]
fn feature_map_names_are_module_paths_of_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    for arch in Arch::ALL {
        // A ViT's position embeddings need its input size; the CNNs ignore it.
        let spec = ModelSpec { image_size: Some([32, 32]), ..ModelSpec::new(arch, 3) };
        let model = Model::new(&spec, &medkd_models::test_device()).unwrap();
        let path = dir.path().join(format!("{arch}.safetensors"));
        save_weights(&model, &path).unwrap();
        let names: Vec<String> = read_safetensors(&path).into_iter().map(|e| e.name).collect();
        for map in model.layout().maps {
            let prefix = format!("{}.", map.name);
            assert!(names.iter().any(|n| n.starts_with(&prefix)), "{arch}: no tensor under {prefix}");
        }
    }
}

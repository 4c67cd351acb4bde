//! Data-parallel training (`devices` > 1): the batch cut into shards, one per device, each loss
//! computed on a copy of the model moved there, the gradients summed back by autodiff. The CPU
//! backend has one device, so here every shard runs on it, through the same code as on GPUs.

mod common;

use std::path::Path;

use common::serial;
use medkd_models::{Model, load_weights};
use medkd_train::checkpoint::best_weights;
use medkd_train::engine::fit;
use medkd_train::methods::Classify;
use medkd_train::{Prepared, RunConfig, RunDir};

/// ViT-Tiny/4 on BreastMNIST with plain SGD and no dropout: LayerNorm normalizes each sample
/// alone, so the loss of a batch is the mean of its samples' losses whatever the shards, and SGD
/// does not magnify rounding the way Adam's division by the gradient's scale would.
fn config(devices: usize, arch: &str) -> RunConfig {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/breastmnist.npz");
    let text = format!(
        "seed = 3\ndevices = {devices}\n[data]\nformat = \"medmnist\"\npath = \"{}\"\n\
         train_subset = {{ ratio = 0.15, seed = 1 }}\ntrain_transforms = [{{ op = \"hflip\", p = 0.5 }}]\n\
         [model]\narch = \"{arch}\"\nsmall_input = {}\n\
         [train]\nepochs = 2\nbatch_size = 16\nworkers = 1\nselect_metric = \"loss\"\n\
         optimizer = {{ kind = \"sgd\", lr = 0.02, momentum = 0.9 }}\n[[loss]]\nkind = \"cross_entropy\"\n",
        data.display(),
        arch.starts_with("resnet")
    );
    RunConfig::parse(&text, &[]).unwrap()
}

/// Trains `arch` on each number of `devices` and returns, for each, its best weights' logits on
/// the validation images' first batch with the run's metrics log.
fn train_on(arch: &str, devices: &[usize]) -> Vec<(Vec<f32>, String)> {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    devices.iter().map(|&n| train(&config(n, arch), &dir.path().join(n.to_string()))).collect()
}

fn train(config: &RunConfig, dir: &Path) -> (Vec<f32>, String) {
    let prepared = Prepared::new(config).unwrap();
    let mut method = Classify::new(config, &prepared);
    let run = RunDir::create(dir).unwrap();
    fit(config, &prepared.setup, &mut method, &run, false, false).unwrap();
    let setup = &prepared.setup;
    let model = load_weights(Model::new(&setup.spec, &setup.device).unwrap(), &best_weights(&run).unwrap()).unwrap();
    let loader = setup.eval_loader(config, setup.splits.val.clone()).unwrap();
    let batch = loader.epoch(0).next().unwrap().unwrap();
    let images = medkd_train::evaluate::batch_tensor(&batch.images, batch.shape, &setup.device);
    let logits = model.logits(images).into_data().try_to_vec::<f32>().unwrap();
    (logits, std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap())
}

fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Two devices (shards of 8) and three (6, 5 and 5: weighted by size) train the same model as one
/// device with the whole batch of 16, up to float rounding; the shards are not just the batch
/// stepped twice, which would double the step.
#[test]
fn shards_on_several_devices_train_what_one_device_trains_with_the_whole_batch() {
    let [(one, one_log), (two, two_log), (three, _)] = train_on("vit_tiny_patch4", &[1, 2, 3]).try_into().unwrap();
    let scale = one.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(scale > 0.1, "the logits are not all near zero ({scale})");
    assert!(max_difference(&one, &two) < 1e-4 * scale.max(1.0), "2 devices: {}", max_difference(&one, &two));
    assert!(max_difference(&one, &three) < 1e-4 * scale.max(1.0), "3 devices: {}", max_difference(&one, &three));
    // The logged training loss is the batch's, not one shard's or their sum.
    let train_loss = |log: &str| -> Vec<f64> {
        log.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["train_loss"].as_f64().unwrap()).collect()
    };
    for (a, b) in train_loss(&one_log).iter().zip(train_loss(&two_log)) {
        assert!((a - b).abs() < 1e-4, "train loss {a} on one device, {b} on two");
    }
}

/// BatchNorm models train on several devices too (their running statistics go with each copy and
/// come back), normalizing each shard by its own statistics: not what one device trains.
#[test]
fn a_batch_norm_model_trains_on_several_devices_with_per_shard_statistics() {
    let [(one, _), (two, _)] = train_on("resnet18", &[1, 2]).try_into().unwrap();
    assert!(two.iter().all(|v| v.is_finite()));
    let difference = max_difference(&one, &two);
    assert!(difference > 1e-4, "shards of 8 normalized like the batch of 16 ({difference})");
}

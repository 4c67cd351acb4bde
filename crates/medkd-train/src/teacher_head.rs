//! SSKD stage 1 (methods.md §4.2, A.4): before the student trains, the teacher's projection head
//! learns the rotation task on the frozen teacher: for each rotated view, find its own image
//! among the batch's normal views by cosine similarity ([`rotation_contrastive`]). SGD with
//! momentum 0.9 and weight decay 1e-3, the rate divided by 10 at 50% and 75% of the epochs
//! (SSD-KD's [30, 45] of 60); the head with the lowest validation loss is kept.
//!
//! The frozen teacher's pooled embeddings of the four views of every training and validation
//! image are computed once, with the eval transforms, so the head's epochs cost little next to
//! a teacher forward pass per epoch. (The reference recomputes them on augmented images.)

use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::store::{BurnpackStore, ModuleSnapshot};
use medkd_data::{ImageDataset, Loader};
use medkd_losses::{HeadSpec, ProjectionHead, VIEWS, rotation_contrastive, with_rotations};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use std::sync::Arc;

use crate::TrainError;
use crate::checksum::md5_hex;
use crate::config::{OptimizerConfig, RunConfig};
use crate::evaluate::batch_tensor;
use crate::optim::build_optimizer;
use crate::run_dir::{RunDir, temp_path, write_atomic};
use crate::setup::RunSetup;
use crate::teachers::Teacher;

/// The trained, frozen head of `spec` (the `index`-th head pair), on the plain device: loaded
/// from the run folder when an earlier (interrupted) run trained it, else taken from the file
/// `spec.trained` names or trained, and saved in the run folder.
pub fn teacher_head(
    config: &RunConfig,
    setup: &RunSetup,
    teachers: &[Teacher],
    spec: &HeadSpec,
    index: usize,
    run: &RunDir,
) -> Result<ProjectionHead, TrainError> {
    let path = run.checkpoint(&format!("teacher_head_{index}"), "bpk");
    let device = setup.device.clone().without_autodiff();
    if path.is_file() {
        return load_head(&path, spec.teacher_dim, &device);
    }
    let head = match &spec.trained {
        Some(trained) => {
            eprintln!("sskd: teacher {}'s projection head from {}", spec.teacher, trained.display());
            load_head(trained, spec.teacher_dim, &device)?
        }
        None => train_head(config, setup, &teachers[spec.teacher], spec, index, run, &device)?,
    };
    let temp = temp_path(&path);
    let mut store = BurnpackStore::from_file(&temp).auto_extension(false).overwrite(true);
    head.save_into(&mut store).map_err(|e| TrainError::Checkpoint { path: temp.clone(), message: e.to_string() })?;
    // The checksum first: a head without its .md5 is one another program made, taken as it is.
    let bytes = std::fs::read(&temp).map_err(|e| TrainError::io(&temp, e))?;
    write_atomic(&path.with_extension("md5"), md5_hex(&bytes).as_bytes())?;
    std::fs::rename(&temp, &path).map_err(|e| TrainError::io(&path, e))?;
    Ok(head)
}

/// A saved head for a teacher embedding of `dim` features.
fn load_head(path: &std::path::Path, dim: usize, device: &Device) -> Result<ProjectionHead, TrainError> {
    let checkpoint_error = |message: String| TrainError::Checkpoint { path: path.to_path_buf(), message };
    if !path.is_file() {
        return Err(checkpoint_error("no such file (sskd's head names a teacher_head_N.bpk checkpoint)".into()));
    }
    // medkd writes `teacher_head_N.md5` beside each head it saves.
    let sidecar = path.with_extension("md5");
    if let Ok(expected) = std::fs::read_to_string(&sidecar) {
        let bytes = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
        if md5_hex(&bytes) != expected.trim() {
            return Err(checkpoint_error(format!(
                "content does not match {}: the file was changed or damaged after it was saved; restore it, or delete both files to train the head again",
                sidecar.display()
            )));
        }
    }
    let mut head = ProjectionHead::new(dim, device);
    let mut store = BurnpackStore::from_file(path).auto_extension(false);
    let mismatch = |detail: String| checkpoint_error(format!("not a projection head for a {dim}-feature teacher embedding: {detail}"));
    let result = head.load_from(&mut store).map_err(|e| mismatch(e.to_string()))?;
    if !result.is_success() || !result.missing.is_empty() {
        return Err(mismatch(result.to_string()));
    }
    Ok(head)
}

/// Stage 1: trains the head on the frozen teacher and logs its epochs in the run folder.
fn train_head(
    config: &RunConfig,
    setup: &RunSetup,
    teacher: &Teacher,
    spec: &HeadSpec,
    index: usize,
    run: &RunDir,
    device: &Device,
) -> Result<ProjectionHead, TrainError> {
    eprintln!("sskd: training teacher {}'s projection head ({} epochs)", spec.teacher, spec.epochs);
    let embed = |dataset: Arc<dyn ImageDataset>| rotated_embeddings(teacher, &setup.eval_loader(config, dataset)?, device);
    let (train, val) = (embed(setup.splits.train.clone())?, embed(setup.splits.val.clone())?);

    let train_device = device.clone().autodiff();
    train_device.seed(config.seed);
    let train = train.to_device(&train_device);
    let mut head = ProjectionHead::new(spec.teacher_dim, &train_device);
    let mut optimizer =
        build_optimizer(&OptimizerConfig::Sgd { lr: spec.lr, momentum: 0.9, nesterov: false, weight_decay: 1e-3 }, true, None, &head);
    let batch = config.train.batch_size;
    let images = train.dims()[0] / VIEWS;
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut best: Option<(f64, ProjectionHead)> = None;
    let mut log = Vec::new();
    for epoch in 0..spec.epochs {
        let milestones = [spec.epochs / 2, spec.epochs * 3 / 4].iter().filter(|&&m| epoch >= m).count();
        let lr = spec.lr * 0.1f64.powi(milestones as i32);
        let mut order: Vec<usize> = (0..images).collect();
        order.shuffle(&mut rng);
        let mut train_loss = 0.0;
        let chunks = order.chunks(batch).filter(|c| c.len() > 1).collect::<Vec<_>>();
        for chunk in &chunks {
            let rows = view_rows(chunk, &train_device);
            let loss = rotation_contrastive(head.forward(train.clone().select(0, rows)));
            train_loss += loss.clone().into_scalar::<f32>() as f64;
            let grads = GradientsParams::from_grads(loss.backward(), &head);
            head = optimizer.step(lr, head, grads);
        }
        let val_loss = mean_loss(&head.valid(), &val, batch, device);
        let train_loss = train_loss / chunks.len().max(1) as f64;
        let improved = best.as_ref().is_none_or(|(b, _)| val_loss < *b);
        if improved {
            best = Some((val_loss, head.valid()));
        }
        log.push(json!({ "epoch": epoch, "lr": lr, "train_loss": train_loss, "val_loss": val_loss }));
        eprintln!(
            "sskd head epoch {:>3}/{}  train loss {train_loss:.4}  val loss {val_loss:.4}{}",
            epoch + 1,
            spec.epochs,
            if improved { "  *best" } else { "" }
        );
    }
    run.write_json(&run.root().join(format!("teacher_head_{index}.json")), &log)?;
    Ok(best.expect("head_epochs >= 1").1)
}

/// The teacher's pooled embeddings of the four views of every image, `[4N, d]`, row `4i + v`
/// for image `i` and view `v`.
fn rotated_embeddings(teacher: &Teacher, loader: &Loader, device: &Device) -> Result<Tensor<2>, TrainError> {
    let mut parts = Vec::new();
    for batch in loader.epoch(0) {
        let batch = batch?;
        let images = with_rotations(batch_tensor(&batch.images, batch.shape, device));
        parts.push(teacher.forward(images).pooled);
    }
    Ok(Tensor::cat(parts, 0))
}

/// The rows of the four views of each listed image.
fn view_rows(images: &[usize], device: &Device) -> Tensor<1, Int> {
    let rows: Vec<i64> = images.iter().flat_map(|&i| (0..VIEWS).map(move |v| (i * VIEWS + v) as i64)).collect();
    Tensor::from_data(TensorData::new(rows.clone(), [rows.len()]), device)
}

/// The rotation task's loss on `embeddings`, in batches of `batch` images taken in order,
/// averaged over batches.
fn mean_loss(head: &ProjectionHead, embeddings: &Tensor<2>, batch: usize, device: &Device) -> f64 {
    let images: Vec<usize> = (0..embeddings.dims()[0] / VIEWS).collect();
    let losses: Vec<f64> = images
        .chunks(batch)
        .filter(|c| c.len() > 1)
        .map(|chunk| {
            let projected = head.forward(embeddings.clone().select(0, view_rows(chunk, device)));
            rotation_contrastive(projected).into_scalar::<f32>() as f64
        })
        .collect();
    losses.iter().sum::<f64>() / losses.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use medkd_models::{Arch, Model, ModelSpec};

    use super::*;

    fn values(t: Tensor<2>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    /// Stage 1 trains, logs and saves the head; a second call (a resumed run) loads the same head
    /// instead of training again.
    #[test]
    fn the_head_is_trained_once_and_reloaded_on_resume() {
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/breastmnist.npz");
        let text = format!(
            "[data]\nformat = \"medmnist\"\npath = \"{}\"\nchannels = 3\n[model]\narch = \"resnet18\"\n\
             [train]\nepochs = 1\nbatch_size = 64\noptimizer = {{ kind = \"adam\", lr = 0.001 }}\n[[loss]]\nkind = \"cross_entropy\"\n",
            data.display()
        );
        let config = RunConfig::parse(&text, &[]).unwrap();
        let setup = RunSetup::new(&config).unwrap();
        let spec = ModelSpec::new(Arch::ResNet18, 2);
        let teacher = Teacher::new(spec.clone(), Model::new(&spec, &setup.device).unwrap(), setup.info.class_names.clone());
        let head_spec = HeadSpec { teacher: 0, student_dim: 512, teacher_dim: 512, epochs: 2, lr: 0.05, trained: None };
        let tmp = tempfile::tempdir().unwrap();
        let run = RunDir::create(tmp.path()).unwrap();

        let trained = teacher_head(&config, &setup, std::slice::from_ref(&teacher), &head_spec, 0, &run).unwrap();
        let log: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(tmp.path().join("teacher_head_0.json")).unwrap()).unwrap();
        assert_eq!(log.as_array().unwrap().len(), 2);
        assert!(log[0]["val_loss"].as_f64().unwrap().is_finite());

        let reloaded = teacher_head(&config, &setup, std::slice::from_ref(&teacher), &head_spec, 0, &run).unwrap();
        let input = Tensor::<2>::random([4, 512], burn::tensor::Distribution::Normal(0.0, 1.0), &setup.device);
        assert_eq!(values(trained.forward(input.clone())), values(reloaded.forward(input.clone())));

        // Another run given that head skips stage 1 (no log) and keeps a copy for its own resumes.
        let saved = tmp.path().join("checkpoints/teacher_head_0.bpk");
        let other = tempfile::tempdir().unwrap();
        let other_run = RunDir::create(other.path()).unwrap();
        let shared = HeadSpec { trained: Some(saved.clone()), ..head_spec.clone() };
        let taken = teacher_head(&config, &setup, std::slice::from_ref(&teacher), &shared, 0, &other_run).unwrap();
        assert_eq!(values(trained.forward(input.clone())), values(taken.forward(input)));
        assert!(!other.path().join("teacher_head_0.json").exists());
        assert!(other.path().join("checkpoints/teacher_head_0.bpk").is_file());

        // A damaged head (a byte changed) is refused by its checksum, naming the file.
        let damaged = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(damaged.path().join("checkpoints")).unwrap();
        let mut bytes = std::fs::read(&saved).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x40;
        std::fs::write(damaged.path().join("checkpoints/teacher_head_0.bpk"), bytes).unwrap();
        std::fs::copy(saved.with_extension("md5"), damaged.path().join("checkpoints/teacher_head_0.md5")).unwrap();
        let damaged_spec = HeadSpec { trained: Some(damaged.path().join("checkpoints/teacher_head_0.bpk")), ..head_spec.clone() };
        let fresh = tempfile::tempdir().unwrap();
        let e = teacher_head(&config, &setup, std::slice::from_ref(&teacher), &damaged_spec, 0, &RunDir::create(fresh.path()).unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not match") && e.contains("teacher_head_0.bpk"), "{e}");

        // A head for another embedding width, or no file: an error naming the file.
        let wide = HeadSpec { teacher_dim: 2048, ..shared.clone() };
        for (spec, expected) in
            [(wide, "2048-feature"), (HeadSpec { trained: Some(tmp.path().join("none.bpk")), ..shared }, "no such file")]
        {
            let fresh = tempfile::tempdir().unwrap();
            let e = teacher_head(&config, &setup, std::slice::from_ref(&teacher), &spec, 0, &RunDir::create(fresh.path()).unwrap())
                .unwrap_err()
                .to_string();
            assert!(e.contains(expected) && e.contains(".bpk"), "{e}");
        }
    }
}

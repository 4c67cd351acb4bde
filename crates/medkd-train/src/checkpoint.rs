//! Checkpoints. `best.safetensors` holds the selected weights under torchvision names (what
//! users, `eval` and `predict` load). Resume state is one consistent set per finished epoch,
//! `epoch-NNNN.{bpk,optim}`, committed by atomically replacing `last.json`, which points to
//! it; older sets are deleted only after the commit, so a crash at any instant leaves the
//! last finished epoch loadable.

use std::fs;

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::{BurnpackStore, ModuleSnapshot};
use md5::{Digest, Md5};
use medkd_models::{Model, save_weights};
use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::run_dir::{RunDir, temp_path, write_atomic};
use crate::schedule::{ImprovementTracker, ScheduleState};
use crate::trainer::Student;

/// Everything besides weights and optimizer moments that a resumed run needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    pub epochs_done: usize,
    pub best: ImprovementTracker,
    pub schedule: ScheduleState,
    pub wall_seconds: f64,
    /// Weight sets in the student's running average (`train.weight_averaging`).
    #[serde(default)]
    pub averaged: u64,
}

#[derive(Serialize, Deserialize)]
struct LastPointer {
    state: TrainState,
    model_file: String,
    model_md5: String,
    optimizer_file: String,
    optimizer_md5: String,
    /// The running weight average, when the run keeps one.
    #[serde(default)]
    average_file: Option<String>,
    #[serde(default)]
    average_md5: Option<String>,
}

#[derive(Serialize, Deserialize)]
pub struct BestRecord {
    pub epoch: usize,
    pub metric: String,
    pub value: f64,
}

fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn checkpoint_error(path: &std::path::Path, message: impl Into<String>) -> TrainError {
    TrainError::Checkpoint { path: path.to_path_buf(), message: message.into() }
}

/// Saves the resume set for a finished epoch and commits it as `last`.
pub fn save_last(
    run: &RunDir,
    student: &Student,
    optimizer: &ModuleOptimizer,
    average: Option<&Model>,
    state: &TrainState,
) -> Result<(), TrainError> {
    let stem = format!("epoch-{:04}", state.epochs_done);
    let model_path = run.checkpoint(&stem, "bpk");
    let model_tmp = temp_path(&model_path);
    // Burnpack keeps parameter ids, which key the optimizer's state. valid() (which keeps the
    // ids) syncs BatchNorm's running statistics of the last training step: see save_weights.
    let mut store = BurnpackStore::from_file(&model_tmp).auto_extension(false).overwrite(true);
    student.valid().save_into(&mut store).map_err(|e| checkpoint_error(&model_tmp, e.to_string()))?;
    let model_bytes = fs::read(&model_tmp).map_err(|e| TrainError::io(&model_tmp, e))?;
    fs::rename(&model_tmp, &model_path).map_err(|e| TrainError::io(&model_path, e))?;

    let optimizer_path = run.checkpoint(&stem, "optim");
    let optimizer_bytes = optimizer.into_bytes().map_err(|e| checkpoint_error(&optimizer_path, format!("{e:?}")))?;
    write_atomic(&optimizer_path, &optimizer_bytes)?;

    let average_saved = match average {
        Some(model) => {
            let path = run.checkpoint(&format!("{stem}.average"), "safetensors");
            save_weights(model, &path)?;
            let bytes = fs::read(&path).map_err(|e| TrainError::io(&path, e))?;
            Some((file_name(&path), md5_hex(&bytes)))
        }
        None => None,
    };
    let (average_file, average_md5) = average_saved.unzip();
    let pointer = LastPointer {
        state: state.clone(),
        average_file,
        average_md5,
        model_file: file_name(&model_path),
        model_md5: md5_hex(&model_bytes),
        optimizer_file: file_name(&optimizer_path),
        optimizer_md5: md5_hex(&optimizer_bytes),
    };
    run.write_json(&run.checkpoint("last", "json"), &pointer)?;
    remove_other_epoch_sets(run, &stem)
}

fn file_name(path: &std::path::Path) -> String {
    path.file_name().expect("checkpoint paths have names").to_string_lossy().into_owned()
}

fn remove_other_epoch_sets(run: &RunDir, keep_stem: &str) -> Result<(), TrainError> {
    let dir = run.checkpoint_dir();
    let entries = fs::read_dir(&dir).map_err(|e| TrainError::io(&dir, e))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("epoch-") && !name.starts_with(keep_stem) {
            fs::remove_file(entry.path()).map_err(|e| TrainError::io(&entry.path(), e))?;
        }
    }
    Ok(())
}

/// What a resumed run continues from.
pub struct Resumed {
    pub student: Student,
    pub optimizer: ModuleOptimizer,
    pub state: TrainState,
    /// The saved weight average (torchvision names), checked against its MD5.
    pub average: Option<std::path::PathBuf>,
}

/// Whether the run committed a `last` set, i.e. finished at least one epoch.
pub fn has_finished_epoch(run: &RunDir) -> bool {
    run.checkpoint("last", "json").is_file()
}

/// Loads the committed `last` set into a freshly built student and optimizer.
pub fn load_last(run: &RunDir, mut student: Student, optimizer: ModuleOptimizer) -> Result<Resumed, TrainError> {
    let pointer_path = run.checkpoint("last", "json");
    let text = fs::read_to_string(&pointer_path)
        .map_err(|e| checkpoint_error(&pointer_path, format!("cannot resume: no finished epoch was saved ({e})")))?;
    let pointer: LastPointer = serde_json::from_str(&text).map_err(|e| checkpoint_error(&pointer_path, format!("unreadable: {e}")))?;

    let model_path = run.checkpoint_dir().join(&pointer.model_file);
    let model_bytes = fs::read(&model_path).map_err(|e| TrainError::io(&model_path, e))?;
    if md5_hex(&model_bytes) != pointer.model_md5 {
        return Err(checkpoint_error(&model_path, "content does not match last.json's MD5 (the file was changed after it was saved)"));
    }
    let mut store = BurnpackStore::from_file(&model_path).auto_extension(false);
    student.load_from(&mut store).map_err(|e| checkpoint_error(&model_path, e.to_string()))?;

    let optimizer_path = run.checkpoint_dir().join(&pointer.optimizer_file);
    let optimizer_bytes = fs::read(&optimizer_path).map_err(|e| TrainError::io(&optimizer_path, e))?;
    if md5_hex(&optimizer_bytes) != pointer.optimizer_md5 {
        return Err(checkpoint_error(&optimizer_path, "content does not match last.json's MD5"));
    }
    let optimizer = optimizer
        .from_bytes(burn::tensor::Bytes::from_bytes_vec(optimizer_bytes))
        .map_err(|e| checkpoint_error(&optimizer_path, format!("{e:?}")))?;
    let average = match (&pointer.average_file, &pointer.average_md5) {
        (Some(file), Some(md5)) => {
            let path = run.checkpoint_dir().join(file);
            let bytes = fs::read(&path).map_err(|e| TrainError::io(&path, e))?;
            if &md5_hex(&bytes) != md5 {
                return Err(checkpoint_error(&path, "content does not match last.json's MD5"));
            }
            Some(path)
        }
        _ => None,
    };
    Ok(Resumed { student, optimizer, state: pointer.state, average })
}

/// Saves the selected weights (torchvision names) and what selected them.
pub fn save_best(run: &RunDir, model: &Model, record: &BestRecord) -> Result<(), TrainError> {
    save_weights(model, &run.checkpoint("best", "safetensors"))?;
    run.write_json(&run.checkpoint("best", "json"), record)
}

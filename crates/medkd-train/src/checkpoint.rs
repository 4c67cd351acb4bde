//! Checkpoints. `best.safetensors` holds the selected weights under torchvision names (what
//! users, `eval` and `predict` load). Resume state is one consistent set per finished epoch,
//! `epoch-NNNN.{bpk,optim}`, committed by atomically replacing `last.json`, which points to
//! it; older sets are deleted only after the commit, so a crash at any instant leaves the
//! last finished epoch loadable. A method's own resumable state (an EMA teacher, a loss term's
//! running centre) travels in the same set through [`MethodState`].

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::{BurnpackStore, ModuleSnapshot};
use md5::{Digest, Md5};
use medkd_models::{Model, save_weights};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::TrainError;
use crate::run_dir::{RunDir, temp_path, write_atomic};
use crate::schedule::{ImprovementTracker, ScheduleState};

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
    /// The method's state ([`MethodState`]); absent in runs of earlier binaries.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    method_values: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    method_files: BTreeMap<String, SavedFile>,
}

/// A file of the epoch set and the MD5 it had when saved.
#[derive(Clone, Serialize, Deserialize)]
struct SavedFile {
    file: String,
    md5: String,
}

/// A method's resumable state beyond its trainable module and the optimizer: values (JSON) and
/// modules (Burnpack files of the epoch set), saved with every finished epoch and MD5-checked
/// when a run resumes. See `Method::save_state`.
pub struct MethodState {
    dir: PathBuf,
    stem: String,
    values: BTreeMap<String, Value>,
    files: BTreeMap<String, SavedFile>,
}

impl MethodState {
    /// An empty state to be saved with the epoch set `stem` in `run`.
    fn new(run: &RunDir, stem: &str) -> MethodState {
        MethodState { dir: run.checkpoint_dir(), stem: stem.into(), values: BTreeMap::new(), files: BTreeMap::new() }
    }

    pub fn put<T: Serialize>(&mut self, key: &str, value: &T) {
        self.values.insert(key.into(), serde_json::to_value(value).expect("method state serializes to JSON"));
    }

    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<T, TrainError> {
        let path = self.dir.join("last.json");
        let value = self.values.get(key).ok_or_else(|| checkpoint_error(&path, format!("holds no method state `{key}`")))?;
        serde_json::from_value(value.clone()).map_err(|e| checkpoint_error(&path, format!("method state `{key}`: {e}")))
    }

    /// Saves `module` as `epoch-NNNN.KEY.bpk`.
    pub fn put_module<M: Module>(&mut self, key: &str, module: &M) -> Result<(), TrainError> {
        let path = self.dir.join(format!("{}.{key}.bpk", self.stem));
        let md5 = save_burnpack(module, &path)?;
        self.files.insert(key.into(), SavedFile { file: file_name(&path), md5 });
        Ok(())
    }

    /// Loads the module saved under `key` into `module`, checking the file against its MD5.
    pub fn get_module<M: Module>(&self, key: &str, module: M) -> Result<M, TrainError> {
        let saved = self.files.get(key).ok_or_else(|| checkpoint_error(&self.dir.join("last.json"), format!("holds no module `{key}`")))?;
        load_burnpack(module, &self.dir.join(&saved.file), &saved.md5)
    }
}

/// `best.json`: what selected `best.safetensors`, and the file's MD5 when it was written.
#[derive(Serialize, Deserialize)]
pub struct BestRecord {
    pub epoch: usize,
    pub metric: String,
    pub value: f64,
    /// Absent in runs of binaries before the checksum; their file is taken as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
}

pub(crate) fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn checkpoint_error(path: &Path, message: impl Into<String>) -> TrainError {
    TrainError::Checkpoint { path: path.to_path_buf(), message: message.into() }
}

/// The stem of the resume set saved after `epochs_done` epochs.
fn epoch_stem(epochs_done: usize) -> String {
    format!("epoch-{epochs_done:04}")
}

/// The state a method fills before the epoch set of `state` is saved.
pub fn method_state_for(run: &RunDir, state: &TrainState) -> MethodState {
    MethodState::new(run, &epoch_stem(state.epochs_done))
}

/// Writes `module` (Burnpack keeps parameter ids, which key the optimizer's state) and returns
/// the file's MD5. valid() (which keeps the ids) syncs BatchNorm's running statistics of the
/// last training step: see save_weights.
fn save_burnpack<M: Module>(module: &M, path: &Path) -> Result<String, TrainError> {
    let temp = temp_path(path);
    let mut store = BurnpackStore::from_file(&temp).auto_extension(false).overwrite(true);
    module.valid().save_into(&mut store).map_err(|e| checkpoint_error(&temp, e.to_string()))?;
    let bytes = fs::read(&temp).map_err(|e| TrainError::io(&temp, e))?;
    fs::rename(&temp, path).map_err(|e| TrainError::io(path, e))?;
    Ok(md5_hex(&bytes))
}

fn load_burnpack<M: Module>(mut module: M, path: &Path, md5: &str) -> Result<M, TrainError> {
    let bytes = fs::read(path).map_err(|e| TrainError::io(path, e))?;
    if md5_hex(&bytes) != md5 {
        return Err(checkpoint_error(path, "content does not match last.json's MD5 (the file was changed after it was saved)"));
    }
    let mut store = BurnpackStore::from_file(path).auto_extension(false);
    module.load_from(&mut store).map_err(|e| checkpoint_error(path, e.to_string()))?;
    Ok(module)
}

/// Saves the resume set for a finished epoch and commits it as `last`.
pub fn save_last<M: Module>(
    run: &RunDir,
    trainable: &M,
    optimizer: &ModuleOptimizer,
    average: Option<&Model>,
    state: &TrainState,
    method: MethodState,
) -> Result<(), TrainError> {
    let stem = epoch_stem(state.epochs_done);
    let model_path = run.checkpoint(&stem, "bpk");
    let optimizer_path = run.checkpoint(&stem, "optim");
    let optimizer_bytes = optimizer.into_bytes().map_err(|e| checkpoint_error(&optimizer_path, format!("{e:?}")))?;
    // The model's file and the optimizer's (twice the model's size with Adam) are written and
    // hashed side by side: MD5 alone took 8% of the README demo's training time.
    let (model_md5, optimizer_md5) = std::thread::scope(|scope| {
        let optimizer_md5 = scope.spawn(|| md5_hex(&optimizer_bytes));
        let model_md5 = save_burnpack(trainable, &model_path);
        (model_md5, optimizer_md5.join().expect("MD5 does not panic"))
    });
    let model_md5 = model_md5?;
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
        model_md5,
        optimizer_file: file_name(&optimizer_path),
        optimizer_md5,
        method_values: method.values,
        method_files: method.files,
    };
    run.write_json(&run.checkpoint("last", "json"), &pointer)?;
    remove_other_epoch_sets(run, &stem)
}

fn file_name(path: &Path) -> String {
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
pub struct Resumed<M> {
    pub trainable: M,
    pub optimizer: ModuleOptimizer,
    pub state: TrainState,
    /// The saved weight average (torchvision names), checked against its MD5.
    pub average: Option<PathBuf>,
    pub method: MethodState,
}

/// Whether the run committed a `last` set, i.e. finished at least one epoch.
pub fn has_finished_epoch(run: &RunDir) -> bool {
    run.checkpoint("last", "json").is_file()
}

/// `last.json` of the checkpoint folder `dir`; `missing` says what its absence means.
fn read_last_pointer(dir: &Path, missing: &str) -> Result<LastPointer, TrainError> {
    let path = dir.join("last.json");
    let text = fs::read_to_string(&path).map_err(|e| checkpoint_error(&path, format!("{missing} ({e})")))?;
    serde_json::from_str(&text).map_err(|e| checkpoint_error(&path, format!("unreadable: {e}")))
}

/// Loads the committed `last` set into a freshly built trainable module and optimizer.
pub fn load_last<M: Module>(run: &RunDir, trainable: M, optimizer: ModuleOptimizer) -> Result<Resumed<M>, TrainError> {
    let pointer = read_last_pointer(&run.checkpoint_dir(), "cannot resume: no finished epoch was saved")?;

    let trainable = load_burnpack(trainable, &run.checkpoint_dir().join(&pointer.model_file), &pointer.model_md5)?;
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
    // Read back only: a resumed run saves its next epoch through a fresh `method_state_for`.
    let method = MethodState { dir: run.checkpoint_dir(), stem: String::new(), values: pointer.method_values, files: pointer.method_files };
    Ok(Resumed { trainable, optimizer, state: pointer.state, average, method })
}

/// The trainable module and the method's state of the last epoch set of a finished run in
/// `folder` (no optimizer): what the next round of a procedure carries over.
pub fn load_last_modules<M: Module>(folder: &Path, trainable: M) -> Result<(M, MethodState), TrainError> {
    let dir = folder.join("checkpoints");
    let pointer = read_last_pointer(&dir, "no finished epoch to carry over")?;
    let trainable = load_burnpack(trainable, &dir.join(&pointer.model_file), &pointer.model_md5)?;
    let method = MethodState { dir, stem: String::new(), values: pointer.method_values, files: pointer.method_files };
    Ok((trainable, method))
}

/// Saves the selected weights (torchvision names), what selected them and their MD5.
pub fn save_best(run: &RunDir, model: &Model, epoch: usize, metric: &str, value: f64) -> Result<(), TrainError> {
    let path = run.checkpoint("best", "safetensors");
    save_weights(model, &path)?;
    let bytes = fs::read(&path).map_err(|e| TrainError::io(&path, e))?;
    let record = BestRecord { epoch, metric: metric.into(), value, md5: Some(md5_hex(&bytes)) };
    run.write_json(&run.checkpoint("best", "json"), &record)
}

/// `best.safetensors` of `run`, checked against the MD5 in `best.json`, so a damaged or changed
/// file is refused rather than evaluated.
pub fn best_weights(run: &RunDir) -> Result<PathBuf, TrainError> {
    let path = run.checkpoint("best", "safetensors");
    let record_path = run.checkpoint("best", "json");
    let text = fs::read_to_string(&record_path).map_err(|e| TrainError::io(&record_path, e))?;
    let record: BestRecord = serde_json::from_str(&text).map_err(|e| checkpoint_error(&record_path, format!("unreadable: {e}")))?;
    if let Some(md5) = record.md5 {
        let bytes = fs::read(&path).map_err(|e| TrainError::io(&path, e))?;
        if md5_hex(&bytes) != md5 {
            return Err(checkpoint_error(
                &path,
                "content does not match best.json's MD5: the file was changed or damaged after training; restore it from a copy or train again",
            ));
        }
    }
    Ok(path)
}

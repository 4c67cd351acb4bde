//! Checkpoints. `best.safetensors` holds the selected weights under torchvision names (what
//! users, `eval` and `predict` load). Resume state is one consistent set of a finished epoch,
//! `epoch-NNNN.{bpk,optim}`, committed by atomically replacing `last.json`, which points to
//! it; older sets are deleted only after the commit, so a crash at any instant leaves the
//! last written epoch loadable (which epochs are written: [`CheckpointWriter`]). A method's own
//! resumable state (an EMA teacher, a loss term's running centre) travels in the same set
//! through [`MethodState`].

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use burn::module::Module;
use burn::optim::{ModuleOptimizer, OptimizerRecord};
use burn::store::{BurnpackStore, ModuleSnapshot};
use medkd_models::Model;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::TrainError;
use crate::checksum::{Hashing, file_checksum, matches};
use crate::run_dir::{RunDir, write_atomic_with};
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
    #[serde(alias = "model_md5")]
    model_checksum: String,
    optimizer_file: String,
    #[serde(alias = "optimizer_md5")]
    optimizer_checksum: String,
    /// The running weight average, when the run keeps one.
    #[serde(default)]
    average_file: Option<String>,
    #[serde(default, alias = "average_md5")]
    average_checksum: Option<String>,
    /// The method's state ([`MethodState`]); absent in runs of earlier binaries.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    method_values: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    method_files: BTreeMap<String, SavedFile>,
}

/// A file of the epoch set and its checksum when saved.
#[derive(Clone, Serialize, Deserialize)]
struct SavedFile {
    file: String,
    #[serde(alias = "md5")]
    checksum: String,
}

/// A method's resumable state beyond its trainable module and the optimizer: values (JSON) and
/// modules (Burnpack files of the epoch set), saved with every finished epoch and checked against
/// their checksums when a run resumes. See `Method::save_state`.
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
        let checksum = save_burnpack(module, &path)?;
        self.files.insert(key.into(), SavedFile { file: file_name(&path), checksum });
        Ok(())
    }

    /// Loads the module saved under `key` into `module`, checking the file against its checksum.
    pub fn get_module<M: Module>(&self, key: &str, module: M) -> Result<M, TrainError> {
        let saved = self.files.get(key).ok_or_else(|| checkpoint_error(&self.dir.join("last.json"), format!("holds no module `{key}`")))?;
        load_burnpack(module, &self.dir.join(&saved.file), &saved.checksum)
    }
}

/// `best.json`: what selected `best.safetensors`, and the file's checksum when it was written.
#[derive(Serialize, Deserialize)]
pub struct BestRecord {
    pub epoch: usize,
    pub metric: String,
    pub value: f64,
    /// Absent in runs of binaries before the checksum; their file is taken as it is.
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "md5")]
    pub checksum: Option<String>,
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
/// the file's checksum. valid() (which keeps the ids) syncs BatchNorm's running statistics of the
/// last training step: see save_weights.
fn save_burnpack<M: Module>(module: &M, path: &Path) -> Result<String, TrainError> {
    write_burnpack(&module.valid(), path)
}

/// Writes `module` as it is to `path`. burn's file writer streams it tensor by tensor into a
/// synced scratch file renamed into place, so no copy of the whole file is made in memory (those
/// copies, and clearing the fresh pages they took, were a fifth of the README demo's CPU time).
fn write_burnpack<M: Module>(module: &M, path: &Path) -> Result<String, TrainError> {
    let mut store = BurnpackStore::from_file(path).auto_extension(false).overwrite(true);
    module.save_into(&mut store).map_err(|e| checkpoint_error(path, e.to_string()))?;
    file_checksum(path)
}

fn load_burnpack<M: Module>(mut module: M, path: &Path, recorded: &str) -> Result<M, TrainError> {
    let bytes = fs::read(path).map_err(|e| TrainError::io(path, e))?;
    if !matches(&bytes, recorded) {
        return Err(checkpoint_error(path, "content does not match last.json's checksum (the file was changed after it was saved)"));
    }
    let mut store = BurnpackStore::from_file(path).auto_extension(false);
    module.load_from(&mut store).map_err(|e| checkpoint_error(path, e.to_string()))?;
    Ok(module)
}

/// Writes finished epochs' checkpoints on a thread of their own while the next epoch trains: the
/// best weights when they improved (`best.safetensors`, then `best.json`), then the resume set,
/// committed as `last`. Written on the training thread, the files and their checksums took a sixth
/// of the README demo's training time; beside it, they still took that share of its two cores (a
/// ResNet-18 epoch writes 135 MB of weights and Adam state in 1.4 s). So an epoch is taken (its
/// model, optimizer and average serialized or copied before `save` returns) and written only once
/// `train.checkpoint_every_seconds` have passed since the last write; otherwise it is held until
/// the next write, `finish`, or the writer is dropped (a Ctrl-C, an error), so a stopped run
/// still commits every epoch it finished, and only a kill loses the held ones (`--resume` trains
/// them again to the same result). One epoch's write at a time: the next write waits for it.
pub struct CheckpointWriter {
    run: RunDir,
    /// Least time between two writes.
    every: Duration,
    /// When the last write began (the writer's creation before the first).
    last_write: Instant,
    /// The latest finished epoch, taken but not written yet.
    held: Option<EpochFiles>,
    /// Epochs done in the last committed resume set.
    committed: usize,
    /// The epoch (1-based) whose files are being written, and the thread writing them.
    pending: Option<(usize, JoinHandle<Result<(), TrainError>>)>,
}

/// The selected weights' record in `best.json`, as `save` is given it.
pub struct BestChoice<'a> {
    pub model: &'a Model,
    pub epoch: usize,
    pub metric: &'a str,
    pub value: f64,
}

impl CheckpointWriter {
    /// A writer into `run`, whose committed set holds `committed` epochs, that writes at most once
    /// every `every_seconds` (0: after every epoch).
    pub fn new(run: &RunDir, committed: usize, every_seconds: f64) -> CheckpointWriter {
        let every = Duration::from_secs_f64(every_seconds);
        CheckpointWriter { run: run.clone(), every, last_write: Instant::now(), held: None, committed, pending: None }
    }

    /// Takes the epoch `state` finished (`best` when it improved) and, when a write is due, returns
    /// while its files are written; an error of the write before it is returned first.
    pub fn save<M: Module + 'static>(
        &mut self,
        best: Option<BestChoice>,
        trainable: &M,
        optimizer: &ModuleOptimizer,
        average: Option<&Model>,
        state: &TrainState,
        method: MethodState,
    ) -> Result<(), TrainError> {
        // A held epoch's best weights are still to be written unless these replace them.
        let held_best = self.held.take().and_then(|held| held.best);
        // Everything the files hold is taken here, before training goes on: valid() copies the
        // weights (and syncs BatchNorm's running statistics), to_record the optimizer's state.
        let model = trainable.valid();
        let best = best.map(|b| (b.model.valid(), BestRecord { epoch: b.epoch, metric: b.metric.into(), value: b.value, checksum: None }));
        self.held = Some(EpochFiles {
            best: best.or(held_best),
            model: Box::new(move |path| write_burnpack(&model, path)),
            optimizer: optimizer.to_record(),
            average: average.map(Model::valid),
            state: state.clone(),
            method,
        });
        if self.last_write.elapsed() >= self.every { self.write_held() } else { Ok(()) }
    }

    /// Starts writing the held epoch, once the write before it is done.
    fn write_held(&mut self) -> Result<(), TrainError> {
        self.wait()?;
        if let Some(files) = self.held.take() {
            let run = self.run.clone();
            self.last_write = Instant::now();
            self.pending = Some((files.state.epochs_done, std::thread::spawn(move || files.write(&run))));
        }
        Ok(())
    }

    /// Writes the held epoch, if any, and waits until every write is done.
    pub fn finish(&mut self) -> Result<(), TrainError> {
        self.write_held()?;
        self.wait()
    }

    /// Waits for the write in flight. Its error names the epoch and what is kept: each set is
    /// written beside the last one and committed by renaming last.json, so a failed write (a full
    /// disk) leaves the last committed set intact.
    pub fn wait(&mut self) -> Result<(), TrainError> {
        let Some((epoch, writing)) = self.pending.take() else { return Ok(()) };
        writing.join().expect("writing checkpoints does not panic").map_err(|e| TrainError::Checkpoint {
            path: self.run.checkpoint_dir(),
            message: format!(
                "saving epoch {epoch} failed: {e}. The resume set of epoch {} is kept: free space (or fix the folder) and continue with `--resume`",
                self.committed
            ),
        })?;
        self.committed = epoch;
        Ok(())
    }
}

impl Drop for CheckpointWriter {
    /// A run leaving on an error or a signal still commits the epoch it finished; a failed write
    /// is said.
    fn drop(&mut self) {
        if let Err(e) = self.finish() {
            eprintln!("{e}");
        }
    }
}

/// A file's writer, run on the writer thread; returns the file's checksum.
type WriteFile = Box<dyn FnOnce(&Path) -> Result<String, TrainError> + Send>;

/// One epoch's checkpoints, taken from training, written on the writer thread.
struct EpochFiles {
    best: Option<(Model, BestRecord)>,
    model: WriteFile,
    optimizer: OptimizerRecord,
    average: Option<Model>,
    state: TrainState,
    method: MethodState,
}

impl EpochFiles {
    fn write(self, run: &RunDir) -> Result<(), TrainError> {
        if let Some((model, mut record)) = self.best {
            record.checksum = Some(write_safetensors(&model, &run.checkpoint("best", "safetensors"))?);
            run.write_json(&run.checkpoint("best", "json"), &record)?;
        }
        let stem = epoch_stem(self.state.epochs_done);
        let model_path = run.checkpoint(&stem, "bpk");
        let optimizer_path = run.checkpoint(&stem, "optim");
        let average_path = run.checkpoint(&format!("{stem}.average"), "safetensors");
        // The files are written, synced and hashed side by side.
        let (model_checksum, optimizer_checksum, average_checksum) = std::thread::scope(|scope| {
            let optimizer = scope.spawn(|| {
                // Streamed to a synced scratch file renamed into place, as write_burnpack's.
                self.optimizer.save(&optimizer_path).map_err(|e| checkpoint_error(&optimizer_path, format!("{e:?}")))?;
                file_checksum(&optimizer_path)
            });
            let average = scope.spawn(|| self.average.as_ref().map(|model| write_safetensors(model, &average_path)).transpose());
            let model = (self.model)(&model_path);
            (model, optimizer.join().expect("writing does not panic"), average.join().expect("writing does not panic"))
        });
        let (average_file, average_checksum) = average_checksum?.map(|sum| (file_name(&average_path), sum)).unzip();
        let pointer = LastPointer {
            state: self.state,
            average_file,
            average_checksum,
            model_file: file_name(&model_path),
            model_checksum: model_checksum?,
            optimizer_file: file_name(&optimizer_path),
            optimizer_checksum: optimizer_checksum?,
            method_values: self.method.values,
            method_files: self.method.files,
        };
        run.write_json(&run.checkpoint("last", "json"), &pointer)?;
        remove_other_epoch_sets(run, &stem)
    }
}

/// Writes `model` atomically as `save_weights` does and returns the file's checksum, taken as
/// the bytes go out.
fn write_safetensors(model: &Model, path: &Path) -> Result<String, TrainError> {
    let mut checksum = String::new();
    write_atomic_with(path, |out| {
        let mut hashing = Hashing::new(out);
        medkd_models::write_safetensors(model, &[], &mut hashing, path)?;
        checksum = hashing.checksum();
        Ok(())
    })?;
    Ok(checksum)
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
    /// The saved weight average (torchvision names), checked against its checksum.
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

    let trainable = load_burnpack(trainable, &run.checkpoint_dir().join(&pointer.model_file), &pointer.model_checksum)?;
    let optimizer_path = run.checkpoint_dir().join(&pointer.optimizer_file);
    let optimizer_bytes = fs::read(&optimizer_path).map_err(|e| TrainError::io(&optimizer_path, e))?;
    if !matches(&optimizer_bytes, &pointer.optimizer_checksum) {
        return Err(checkpoint_error(&optimizer_path, "content does not match last.json's checksum"));
    }
    let optimizer = optimizer
        .from_bytes(burn::tensor::Bytes::from_bytes_vec(optimizer_bytes))
        .map_err(|e| checkpoint_error(&optimizer_path, format!("{e:?}")))?;
    let average = match (&pointer.average_file, &pointer.average_checksum) {
        (Some(file), Some(recorded)) => {
            let path = run.checkpoint_dir().join(file);
            let bytes = fs::read(&path).map_err(|e| TrainError::io(&path, e))?;
            if !matches(&bytes, recorded) {
                return Err(checkpoint_error(&path, "content does not match last.json's checksum"));
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
    let trainable = load_burnpack(trainable, &dir.join(&pointer.model_file), &pointer.model_checksum)?;
    let method = MethodState { dir, stem: String::new(), values: pointer.method_values, files: pointer.method_files };
    Ok((trainable, method))
}

/// `best.safetensors` of `run`, checked against the checksum in `best.json`, so a damaged or changed
/// file is refused rather than evaluated.
pub fn best_weights(run: &RunDir) -> Result<PathBuf, TrainError> {
    let path = run.checkpoint("best", "safetensors");
    let record_path = run.checkpoint("best", "json");
    let text = fs::read_to_string(&record_path).map_err(|e| TrainError::io(&record_path, e))?;
    let record: BestRecord = serde_json::from_str(&text).map_err(|e| checkpoint_error(&record_path, format!("unreadable: {e}")))?;
    if let Some(recorded) = record.checksum {
        let bytes = fs::read(&path).map_err(|e| TrainError::io(&path, e))?;
        if !matches(&bytes, &recorded) {
            return Err(checkpoint_error(
                &path,
                "content does not match best.json's checksum: the file was changed or damaged after training; restore it from a copy or train again",
            ));
        }
    }
    Ok(path)
}

//! The run folder contract: `config.toml` (resolved), `split.csv` (when medkd made the split),
//! `metrics.jsonl` (one line per epoch), `summary.json`, `checkpoints/{best,last}.*`.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::TrainError;

#[derive(Clone)]
pub struct RunDir {
    root: PathBuf,
}

/// `run.lock` held locked while a process trains in the folder: an OS file lock, released when
/// the process ends however it ends, so a lock left by a killed process never blocks a resume.
/// The file holds the holder's PID for the message a second process gets; it is emptied on a
/// normal exit.
pub struct RunLock {
    file: File,
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Best effort: a PID left behind only makes the next run print a note.
        let _ = self.file.set_len(0);
    }
}

impl RunDir {
    /// A new run folder; refuses one that already holds a run, so results are never mixed.
    pub fn create(root: &Path) -> Result<RunDir, TrainError> {
        let run = RunDir { root: root.to_path_buf() };
        if run.config_path().exists() {
            return Err(TrainError::RunFolder {
                path: root.to_path_buf(),
                message: "already holds a run (config.toml exists); continue it with `medkd train --resume DIR` or choose another --out"
                    .into(),
            });
        }
        fs::create_dir_all(run.checkpoint_dir()).map_err(|e| TrainError::io(&run.checkpoint_dir(), e))?;
        Ok(run)
    }

    /// An existing run folder (for resume, eval, predict).
    pub fn open(root: &Path) -> Result<RunDir, TrainError> {
        let run = RunDir { root: root.to_path_buf() };
        if !run.config_path().is_file() {
            // A staged run (`medkd roskd`, `medkd rskd`) holds its plan and a run folder per stage.
            let staged = ["roskd.toml", "rskd.toml"].iter().any(|plan| root.join(plan).is_file());
            let message = match staged {
                true => format!("is a staged run, not one run: its student is the run folder {}", root.join("student").display()),
                false => "is not a medkd run folder (no config.toml)".into(),
            };
            return Err(TrainError::RunFolder { path: root.to_path_buf(), message });
        }
        Ok(run)
    }

    /// Locks the folder for training; a second process is refused with the holder's PID.
    pub fn lock(&self) -> Result<RunLock, TrainError> {
        let path = self.root.join("run.lock");
        let io = |e| TrainError::io(&path, e);
        let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
        let mut holder = String::new();
        std::io::Read::read_to_string(&mut file, &mut holder).map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(TrainError::RunFolder {
                    path: self.root.clone(),
                    message: format!(
                        "is in use by another medkd process (pid {}, run.lock): wait for it to finish or stop it",
                        holder.trim()
                    ),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        if !holder.trim().is_empty() {
            eprintln!("note: {} names process {}, which ended without releasing it; taking over", path.display(), holder.trim());
        }
        file.set_len(0).map_err(io)?;
        std::io::Seek::rewind(&mut file).map_err(io)?;
        write!(file, "{}", std::process::id()).map_err(io)?;
        Ok(RunLock { file })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn config_path(&self) -> PathBuf {
        self.root.join("config.toml")
    }
    pub fn split_path(&self) -> PathBuf {
        self.root.join("split.csv")
    }
    pub fn metrics_path(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }
    pub fn summary_path(&self) -> PathBuf {
        self.root.join("summary.json")
    }
    /// `predictions/<split>.csv`: the best checkpoint's probabilities and true classes
    /// ([`crate::evaluate::Scored::write_csv`]).
    pub fn predictions_path(&self, split: &str) -> PathBuf {
        self.root.join("predictions").join(format!("{split}.csv"))
    }
    pub fn checkpoint_dir(&self) -> PathBuf {
        self.root.join("checkpoints")
    }
    /// `checkpoints/<stem>.<extension>`, e.g. `best.safetensors`.
    pub fn checkpoint(&self, stem: &str, extension: &str) -> PathBuf {
        self.checkpoint_dir().join(format!("{stem}.{extension}"))
    }

    /// Appends one JSON line; a crash can at worst leave a partial last line behind a
    /// complete earlier history.
    pub fn append_metrics<T: Serialize>(&self, record: &T) -> Result<(), TrainError> {
        let path = self.metrics_path();
        let mut line = serde_json::to_string(record).expect("metrics records serialize");
        line.push('\n');
        let mut file = OpenOptions::new().create(true).append(true).open(&path).map_err(|e| TrainError::io(&path, e))?;
        file.write_all(line.as_bytes()).map_err(|e| TrainError::io(&path, e))
    }

    /// Drops metric lines of epochs at or after `epoch` (written before a crash that lost
    /// their checkpoint), so a resumed run's history has each epoch once.
    pub fn truncate_metrics_from(&self, epoch: usize) -> Result<(), TrainError> {
        let path = self.metrics_path();
        let Ok(text) = fs::read_to_string(&path) else { return Ok(()) };
        let kept: String = text
            .lines()
            .filter(|line| {
                serde_json::from_str::<serde_json::Value>(line)
                    .ok()
                    .and_then(|v| v.get("epoch")?.as_u64())
                    .is_some_and(|e| (e as usize) < epoch)
            })
            .map(|line| format!("{line}\n"))
            .collect();
        write_atomic(&path, kept.as_bytes())
    }

    pub fn write_text(&self, path: &Path, text: &str) -> Result<(), TrainError> {
        write_atomic(path, text.as_bytes())
    }

    pub fn write_json<T: Serialize>(&self, path: &Path, value: &T) -> Result<(), TrainError> {
        let text = serde_json::to_string_pretty(value).expect("run records serialize");
        write_atomic(path, text.as_bytes())
    }
}

/// Writes to a temporary file beside `path`, syncs it, then renames it over `path`, so a
/// reader (or a crash) sees either the old or the new content, never a torn file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    write_atomic_with(path, |out| out.write_all(bytes).map_err(|e| TrainError::io(path, e)))
}

/// [`write_atomic`] with the content streamed by `write`.
pub fn write_atomic_with(path: &Path, write: impl FnOnce(&mut BufWriter<File>) -> Result<(), TrainError>) -> Result<(), TrainError> {
    let tmp = temp_path(path);
    let mut out = BufWriter::with_capacity(1 << 20, File::create(&tmp).map_err(|e| TrainError::io(&tmp, e))?);
    write(&mut out)?;
    let file = out.into_inner().map_err(|e| TrainError::io(&tmp, e.into_error()))?;
    file.sync_all().map_err(|e| TrainError::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| TrainError::io(path, e))
}

/// `dir/.name.tmp`, in the same folder so the rename stays on one filesystem.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn a_full_disk_fails_the_write_by_name_and_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("last.json");
        write_atomic(&path, b"old").unwrap();
        // Writes to /dev/full fail with ENOSPC: the temporary file is put on it.
        std::os::unix::fs::symlink("/dev/full", temp_path(&path)).unwrap();
        let error = write_atomic(&path, b"new").unwrap_err().to_string();
        assert!(error.contains("No space left on device") && error.contains(".last.json.tmp"), "{error}");
        assert_eq!(fs::read(&path).unwrap(), b"old");
    }
}

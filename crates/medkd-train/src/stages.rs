//! Procedures made of stages: RoS-KD's teachers and then its student today; rounds initialised
//! from the previous round's weights (`model.pretrained`) and per-subset teachers next. Every
//! stage is an ordinary run folder under the procedure's folder, trained to the end once: a
//! finished stage is kept, a started one resumed, a missing one created, so `--resume` continues
//! a procedure stage by stage.

use std::path::Path;

use crate::summary::Summary;
use crate::{Prepared, RunConfig, RunDir, TrainError, train};

/// Trains the stage in `folder` to the end and returns its summary; `label` names it in the log.
pub fn run_stage(config: &RunConfig, folder: &Path, label: &str, show_progress: bool) -> Result<Summary, TrainError> {
    let summary_path = folder.join("summary.json");
    if summary_path.is_file() {
        eprintln!("{label}: finished earlier ({})", folder.display());
    } else {
        let prepared = Prepared::new(config)?;
        let started = folder.join("config.toml").is_file();
        let run = if started { RunDir::open(folder)? } else { RunDir::create(folder)? };
        eprintln!("{label}: {} {}", if started { "resuming" } else { "training" }, folder.display());
        train(config, &prepared, &run, started, show_progress)?;
    }
    Summary::read(&summary_path)
}

/// Starts `config` from the weights the finished stage in `previous` selected
/// (`checkpoints/best.safetensors`, loaded whole): a round initialised from the round before it.
pub fn init_from_stage(config: &mut RunConfig, previous: &Path) -> Result<(), TrainError> {
    let weights = previous.join("checkpoints").join("best.safetensors");
    if !previous.join("summary.json").is_file() || !weights.is_file() {
        return Err(TrainError::RunFolder {
            path: previous.to_path_buf(),
            message: "has not finished (no summary.json and checkpoints/best.safetensors): a round starts from a finished stage".into(),
        });
    }
    config.model.pretrained = Some(weights);
    config.model.pretrained_skip.clear();
    Ok(())
}

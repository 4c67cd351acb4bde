//! DISTL's rounds (`medkd distl`, methods.md §2.1), initialised as the official code does: round
//! 0 trains on the labelled part alone; round 1 adds unlabelled fold 1 and starts student and
//! teacher from round 0's selected weights (a fresh DINO head); round r ≥ 2 adds fold r and
//! carries round r − 1's last student (with its DINO head), teacher and centre over
//! (`method.previous_round`). Beside them, `supervised<r>` learns with labels from the same images
//! as round r (round 0's recipe on the labelled part and folds 1..r): the paper's comparison. Each
//! stage is a run folder ([`crate::stages::run_stage`]), so `--resume` continues round by round.
//!
//! ```text
//! OUT/distl.toml          the config as given (overrides applied, paths absolute)
//! OUT/round0 .. roundR/   one run folder per round
//! OUT/supervised1 .. R/   the supervised baselines (`distl.baselines`)
//! OUT/distl.json          every stage's test metrics
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::config::parse_table;
use crate::methods::config::MethodConfig;
use crate::stages::{absolutize_tree_paths, create_plan_folder, init_from_stage, run_stage};
use crate::{Prepared, RunConfig, TrainError, build_info};

/// The `[distl]` table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoundsTable {
    /// Rounds after round 0 (default: every fold, `method.folds`).
    rounds: Option<usize>,
    /// Epochs of round 0 (default `train.epochs`).
    round0_epochs: Option<usize>,
    /// Epochs of each supervised baseline (default `round0_epochs`): with more labelled images
    /// than round 0, fewer epochs give it as many steps.
    baseline_epochs: Option<usize>,
    #[serde(default = "default_baselines")]
    baselines: bool,
}

fn default_baselines() -> bool {
    true
}

/// One stage: its folder name, run config, and the stage whose selected weights it starts from.
pub struct RoundStage {
    pub name: String,
    pub config: RunConfig,
    pub starts_from: Option<String>,
}

/// Every stage of a DISTL run, derived from one config.
pub struct Rounds {
    tree: toml::Table,
    pub stages: Vec<RoundStage>,
}

const TABLE: &str = "distl";

impl Rounds {
    /// Reads a DISTL config, applies `overrides` and derives each stage's config; relative
    /// paths are resolved against `base`.
    pub fn load(path: &Path, overrides: &[String], base: &Path) -> Result<Rounds, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        Self::parse(&text, overrides, base).map_err(|e| e.in_file(path))
    }

    pub fn parse(text: &str, overrides: &[String], base: &Path) -> Result<Rounds, TrainError> {
        let mut tree = parse_table(text, overrides)?;
        absolutize_tree_paths(&mut tree, base);
        let mut run_tree = tree.clone();
        let table = run_tree.remove(TABLE).unwrap_or_else(|| toml::Value::Table(toml::Table::new()));
        let table: RoundsTable = table.try_into().map_err(|e| TrainError::Config(format!("`distl`: {e}")))?;
        let config = RunConfig::from_table(run_tree)?;
        let MethodConfig::Distl(method) = &config.method else {
            return Err(TrainError::Config("`method`: `medkd distl` runs configs with [method] kind = \"distl\"".into()));
        };
        let rounds = table.rounds.unwrap_or(method.folds);
        if rounds == 0 || rounds > method.folds {
            return Err(TrainError::Config(format!("`distl.rounds`: must be in [1, method.folds = {}], got {rounds}", method.folds)));
        }
        for (key, epochs) in [("round0_epochs", table.round0_epochs), ("baseline_epochs", table.baseline_epochs)] {
            if epochs == Some(0) {
                return Err(TrainError::Config(format!("`distl.{key}`: must be at least 1")));
            }
        }
        let round0_epochs = table.round0_epochs.unwrap_or(config.train.epochs);
        let baseline_epochs = table.baseline_epochs.unwrap_or(round0_epochs);
        let stage = |r: usize, supervised: bool| {
            let mut config = config.clone();
            let MethodConfig::Distl(method) = &mut config.method else { unreachable!("checked above") };
            method.use_folds = r;
            method.labels_on_folds = supervised && r > 0;
            if r == 0 {
                config.train.epochs = round0_epochs;
            } else if supervised {
                config.train.epochs = baseline_epochs;
            }
            config
        };
        let mut stages = vec![RoundStage { name: "round0".into(), config: stage(0, false), starts_from: None }];
        for r in 1..=rounds {
            stages.push(RoundStage { name: format!("round{r}"), config: stage(r, false), starts_from: Some(format!("round{}", r - 1)) });
        }
        if table.baselines {
            for r in 1..=rounds {
                stages.push(RoundStage { name: format!("supervised{r}"), config: stage(r, true), starts_from: None });
            }
        }
        Ok(Rounds { tree, stages })
    }

    /// Checks every stage's data, split and settings before anything trains.
    pub fn check(&self) -> Result<(), TrainError> {
        for stage in &self.stages {
            Prepared::new(&stage.config).map_err(|e| match e {
                TrainError::Config(message) => TrainError::Config(format!("stage {}: {message}", stage.name)),
                other => TrainError::Config(format!("stage {}: {other}", stage.name)),
            })?;
        }
        Ok(())
    }

    /// Creates the output folder with `distl.toml`; refuses one that already holds a DISTL run.
    pub fn create(&self, out: &Path) -> Result<(), TrainError> {
        create_plan_folder(out, TABLE, "DISTL", &self.tree)
    }

    /// The DISTL run in `out` (its `distl.toml`).
    pub fn open(out: &Path) -> Result<Rounds, TrainError> {
        Rounds::load(&out.join(format!("{TABLE}.toml")), &[], out)
    }

    /// Trains every stage not yet finished under `out` (a started one is resumed), in order,
    /// then writes `distl.json`.
    pub fn run(&self, out: &Path, show_progress: bool) -> Result<Value, TrainError> {
        let mut reports = Vec::new();
        for stage in &self.stages {
            let mut config = stage.config.clone();
            config.absolutize_paths(out);
            let folder = out.join(&stage.name);
            // A finished stage is only read back, so what it started from need not be there (a
            // kept run without checkpoints still runs its remaining stages).
            let finished = folder.join("summary.json").is_file();
            if let Some(previous) = stage.starts_from.as_ref().filter(|_| !finished) {
                let previous = out.join(previous);
                match &mut config.method {
                    // A self-training round before: carried over whole.
                    MethodConfig::Distl(method) if method.use_folds > 1 => {
                        if !previous.join("summary.json").is_file() {
                            return Err(TrainError::RunFolder {
                                path: previous,
                                message: "has not finished: a round starts from a finished round".into(),
                            });
                        }
                        method.previous_round = Some(previous);
                    }
                    _ => init_from_stage(&mut config, &previous)?,
                }
            }
            let summary = run_stage(&config, &folder, &stage.name, show_progress)?;
            let MethodConfig::Distl(method) = &config.method else { unreachable!("every stage is a distl run") };
            reports.push(json!({
                "name": stage.name,
                "run": folder,
                "use_folds": method.use_folds,
                "labels_on_folds": method.labels_on_folds,
                "starts_from": stage.starts_from,
                "test": summary.test,
            }));
        }
        let report =
            Value::Object(Map::from_iter([("stages".to_string(), Value::Array(reports)), ("medkd".to_string(), build_info::json())]));
        let text = serde_json::to_string_pretty(&report).expect("JSON values serialize");
        crate::run_dir::write_atomic(&out.join(format!("{TABLE}.json")), text.as_bytes())?;
        Ok(report)
    }

    /// The folder of each round and of its baseline, `(round r, supervised r)` for r ≥ 1.
    pub fn pairs(&self, out: &Path) -> Vec<(PathBuf, PathBuf)> {
        let has = |name: &str| self.stages.iter().any(|s| s.name == name);
        (1..)
            .map_while(|r| has(&format!("round{r}")).then_some(r))
            .filter(|r| has(&format!("supervised{r}")))
            .map(|r| (out.join(format!("round{r}")), out.join(format!("supervised{r}"))))
            .collect()
    }
}

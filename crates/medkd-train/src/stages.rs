//! Procedures made of stages: teachers, then a student distilled from them (RoS-KD's teachers on
//! random subsets of the samples, relational subsets KD's teachers on subsets of the classes),
//! and rounds initialised from the previous round's weights. Every stage is an ordinary run
//! folder under the procedure's folder, trained to the end once: a finished stage is kept, a
//! started one resumed, a missing one created, so `--resume` continues a procedure stage by stage.
//!
//! ```text
//! OUT/<kind>.toml            the config as given (overrides applied, paths absolute)
//! OUT/teachers/<name>/       one run folder per teacher
//! OUT/student/               the distilled student
//! OUT/<kind>.json            every stage's test metrics
//! ```

use std::path::{Path, PathBuf};

use medkd_losses::TeacherFacts;
use medkd_models::Model;
use serde_json::{Map, Value, json};

use crate::config::{TeacherConfig, parse_table};
use crate::run_dir::write_atomic;
use crate::setup::build_objective;
use crate::summary::Summary;
use crate::{Prepared, RunConfig, RunDir, RunSetup, TrainError, build_info, roskd, rskd, train};

/// The procedures a config table asks for: `[roskd]` or `[rskd]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanKind {
    RosKd,
    Rskd,
}

impl PlanKind {
    /// The config table, and the stem of the plan file and report in the output folder.
    pub fn table(self) -> &'static str {
        match self {
            PlanKind::RosKd => "roskd",
            PlanKind::Rskd => "rskd",
        }
    }

    fn title(self) -> &'static str {
        match self {
            PlanKind::RosKd => "RoS-KD",
            PlanKind::Rskd => "relational subsets KD",
        }
    }
}

/// A teacher stage: its folder name under `teachers/`, its run config, and what the report says
/// of it beside its test metrics.
pub struct TeacherStage {
    pub name: String,
    pub config: RunConfig,
    pub about: Map<String, Value>,
}

/// What a procedure derives from its table: the teacher stages and what the report says of the
/// whole procedure.
pub struct Derived {
    pub teachers: Vec<TeacherStage>,
    pub about: Map<String, Value>,
}

/// A staged procedure: every stage's run config, derived from one file.
pub struct Plan {
    pub kind: PlanKind,
    /// The file's tree with overrides applied; written to `<kind>.toml`.
    pub tree: toml::Table,
    pub teachers: Vec<TeacherStage>,
    pub student: RunConfig,
    pub about: Map<String, Value>,
}

impl Plan {
    /// Reads a config of `kind`, applies `overrides` (to teachers and student alike) and derives
    /// each stage's config. Relative paths are resolved against `base`.
    pub fn load(kind: PlanKind, path: &Path, overrides: &[String], base: &Path) -> Result<Plan, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        Self::parse(kind, &text, overrides, base).map_err(|e| e.in_file(path))
    }

    pub fn parse(kind: PlanKind, text: &str, overrides: &[String], base: &Path) -> Result<Plan, TrainError> {
        let mut tree = parse_table(text, overrides)?;
        absolutize_tree_paths(&mut tree, base);
        let mut run_tree = tree.clone();
        let table = run_tree.remove(kind.table()).ok_or_else(|| {
            TrainError::Config(format!("a {} config needs a [{}] table (see configs/README.md)", kind.title(), kind.table()))
        })?;
        if run_tree.contains_key("teacher") {
            return Err(TrainError::Config(format!(
                "`teacher`: {} makes the student's teachers itself; remove the [[teacher]] entries",
                kind.title()
            )));
        }
        let mut student = RunConfig::from_table(run_tree.clone()).map_err(|e| TrainError::Config(format!("student: {e}")))?;
        let derived = match kind {
            PlanKind::RosKd => roskd::derive(table, &run_tree, student.seed)?,
            PlanKind::Rskd => rskd::derive(table, &run_tree, &student)?,
        };
        student.teachers = derived
            .teachers
            .iter()
            .map(|stage| TeacherConfig {
                run: Some(PathBuf::from("teachers").join(&stage.name)),
                arch: None,
                weights: None,
                small_input: false,
            })
            .collect();
        Ok(Plan { kind, tree, teachers: derived.teachers, student, about: derived.about })
    }

    /// Checks everything that can be checked before training: each teacher's data and loss
    /// terms, and the student's loss terms against teachers of the planned architectures and
    /// classes.
    pub fn check(&self) -> Result<(), TrainError> {
        let mut teachers = Vec::new();
        for stage in &self.teachers {
            let in_stage = |e: TrainError| TrainError::Config(format!("teacher {}: {e}", stage.name));
            let setup = Prepared::new(&stage.config).map_err(in_stage)?.setup;
            let layout = Model::new(&setup.spec, &setup.device).map_err(|e| in_stage(e.into()))?.layout();
            teachers.push(TeacherFacts { layout, class_names: setup.info.class_names });
        }
        let setup = RunSetup::new(&self.student)?;
        build_objective(&self.student, &setup, &teachers).map_err(|e| TrainError::Config(format!("student: {e}")))?;
        Ok(())
    }

    /// Creates the output folder with `<kind>.toml`; refuses one that already holds a plan.
    pub fn create(&self, out: &Path) -> Result<(), TrainError> {
        create_plan_folder(out, self.kind.table(), self.kind.title(), &self.tree)
    }

    /// The plan of the run of `kind` in `out` (its `<kind>.toml`).
    pub fn open(kind: PlanKind, out: &Path) -> Result<Plan, TrainError> {
        Plan::load(kind, &out.join(format!("{}.toml", kind.table())), &[], out)
    }

    /// Trains every stage not yet finished under `out` (a started one is resumed), then writes
    /// `<kind>.json`.
    pub fn run(&self, out: &Path, show_progress: bool) -> Result<Value, TrainError> {
        let mut teacher_reports = Vec::new();
        for stage in &self.teachers {
            let folder = out.join("teachers").join(&stage.name);
            let summary = run_stage(&stage.config, &folder, &format!("teacher {}", stage.name), show_progress)?;
            let mut entry = Map::from_iter([("name".to_string(), json!(stage.name))]);
            entry.extend(stage.about.clone());
            entry.insert("run".into(), json!(folder));
            entry.insert("test".into(), json!(summary.test));
            teacher_reports.push(Value::Object(entry));
        }
        let mut student = self.student.clone();
        student.absolutize_paths(out);
        let folder = out.join("student");
        let summary = run_stage(&student, &folder, "student", show_progress)?;
        let mut report = self.about.clone();
        report.insert("teachers".into(), Value::Array(teacher_reports));
        report.insert("student".into(), json!({ "run": folder, "test": summary.test }));
        report.insert("medkd".into(), build_info::json());
        let report = Value::Object(report);
        let text = serde_json::to_string_pretty(&report).expect("JSON values serialize");
        write_atomic(&out.join(format!("{}.json", self.kind.table())), text.as_bytes())?;
        Ok(report)
    }
}

/// Creates `out` with the procedure's config file `<table>.toml` (`tree`); refuses a folder that
/// already holds one, pointing to `medkd <table> --resume`.
pub(crate) fn create_plan_folder(out: &Path, table: &str, title: &str, tree: &toml::Table) -> Result<(), TrainError> {
    let path = out.join(format!("{table}.toml"));
    if path.exists() {
        return Err(TrainError::RunFolder {
            path: out.to_path_buf(),
            message: format!(
                "already holds a {title} run ({} exists); continue it with `medkd {table} --resume DIR`",
                path.file_name().expect("a file name").to_string_lossy()
            ),
        });
    }
    std::fs::create_dir_all(out).map_err(|e| TrainError::io(out, e))?;
    let text = toml::to_string_pretty(tree).expect("a TOML table serializes");
    write_atomic(&path, text.as_bytes())
}

/// Makes `data.path` and `model.pretrained` absolute against `base`, so the plan file and every
/// stage's config work from any folder.
pub(crate) fn absolutize_tree_paths(tree: &mut toml::Table, base: &Path) {
    for (table, key) in [("data", "path"), ("model", "pretrained")] {
        if let Some(toml::Value::String(path)) = tree.get_mut(table).and_then(|t| t.get_mut(key)) {
            if Path::new(path.as_str()).is_relative() && path != crate::pretrained::IMAGENET {
                *path = base.join(path.as_str()).to_string_lossy().into_owned();
            }
        }
    }
}

/// The student's config tree as a teacher stage starts from it: without the student's weight
/// averaging (a teacher gets it only through its overrides), with the procedure table's
/// `teacher_loss` terms, else one unweighted cross-entropy.
pub fn teacher_tree(run_tree: &toml::Table, teacher_loss: Option<toml::Value>) -> toml::Table {
    let mut tree = run_tree.clone();
    if let Some(toml::Value::Table(train)) = tree.get_mut("train") {
        train.remove("weight_averaging");
    }
    let loss = teacher_loss.unwrap_or_else(|| {
        let cross_entropy = toml::Table::from_iter([("kind".to_string(), toml::Value::String("cross_entropy".into()))]);
        toml::Value::Array(vec![toml::Value::Table(cross_entropy)])
    });
    tree.insert("loss".into(), loss);
    tree
}

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

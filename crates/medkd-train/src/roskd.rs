//! RoS-KD (methods.md §1): K teachers, each trained on its own seeded random subset (ratio ρ)
//! of the noisily labelled training split, then one student distilled from all of them. A RoS-KD
//! config is a student run config plus a `[roskd]` table; every stage is an ordinary run folder
//! under the output folder, so each can be evaluated, attacked or resumed on its own:
//!
//! ```text
//! OUT/roskd.toml             the config as given (overrides applied, paths absolute)
//! OUT/teachers/0-resnet50/   one run folder per teacher
//! OUT/student/               the distilled student
//! OUT/roskd.json             every stage's test metrics
//! ```

use std::path::{Path, PathBuf};

use medkd_models::{Arch, Model, ModelSpec};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::config::{TeacherConfig, apply_overrides, parse_table};
use crate::run_dir::write_atomic;
use crate::setup::build_objective;
use crate::stages::run_stage;
use crate::{Prepared, RunConfig, RunSetup, TrainError, build_info};

/// The `[roskd]` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RosKdSection {
    /// ρ: the fraction of the (noisy) training split each teacher trains on, in (0, 1].
    #[serde(default = "default_subset_ratio")]
    pub subset_ratio: f64,
    /// The teachers, in order; at least one.
    pub teacher: Vec<RosKdTeacher>,
    /// The teachers' loss terms (default: one unweighted cross-entropy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher_loss: Option<toml::Value>,
}

fn default_subset_ratio() -> f64 {
    0.7
}

/// A `[[roskd.teacher]]` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RosKdTeacher {
    pub arch: Arch,
    /// `key=value` overrides for this teacher's run config only, e.g. `["train.epochs=30"]`.
    #[serde(default)]
    pub set: Vec<String>,
}

/// A RoS-KD plan: every stage's run config, derived from one file.
pub struct RosKdPlan {
    /// The file's tree with overrides applied; written to `roskd.toml`.
    pub tree: toml::Table,
    pub section: RosKdSection,
    pub teachers: Vec<(String, RunConfig)>,
    pub student: RunConfig,
}

const SECTION: &str = "roskd";
const PLAN_FILE: &str = "roskd.toml";

impl RosKdPlan {
    /// Reads a RoS-KD config, applies `overrides` (to teachers and student alike) and derives
    /// each stage's config. Relative paths are resolved against `base`.
    pub fn load(path: &Path, overrides: &[String], base: &Path) -> Result<RosKdPlan, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        Self::parse(&text, overrides, base).map_err(|e| e.in_file(path))
    }

    pub fn parse(text: &str, overrides: &[String], base: &Path) -> Result<RosKdPlan, TrainError> {
        let mut tree = parse_table(text, overrides)?;
        absolutize_tree_paths(&mut tree, base);
        let mut run_tree = tree.clone();
        let section: RosKdSection = run_tree
            .remove(SECTION)
            .ok_or_else(|| TrainError::Config("a RoS-KD config needs a [roskd] table with [[roskd.teacher]] entries".into()))?
            .try_into()
            .map_err(|e: toml::de::Error| TrainError::Config(format!("`roskd`: {e}")))?;
        let ratio = section.subset_ratio;
        if !(ratio > 0.0 && ratio <= 1.0) {
            return Err(TrainError::Config(format!("`roskd.subset_ratio`: must be in (0, 1], got {ratio}")));
        }
        if section.teacher.is_empty() {
            return Err(TrainError::Config("`roskd.teacher`: needs at least one teacher (K >= 1), got 0".into()));
        }
        if run_tree.contains_key("teacher") {
            return Err(TrainError::Config("`teacher`: RoS-KD makes the student's teachers itself; remove the [[teacher]] entries".into()));
        }
        let has_subset = run_tree.get("data").and_then(|d| d.get("train_subset")).is_some();
        if has_subset {
            return Err(TrainError::Config(
                "`data.train_subset`: RoS-KD draws each teacher's subset from `roskd.subset_ratio`; remove it".into(),
            ));
        }
        let seed = match run_tree.get("seed") {
            None => 0,
            Some(value) => value
                .as_integer()
                .and_then(|s| u64::try_from(s).ok())
                .ok_or_else(|| TrainError::Config(format!("`seed`: must be a non-negative integer, got {value}")))?,
        };

        let mut teachers = Vec::new();
        for (k, teacher) in section.teacher.iter().enumerate() {
            let name = format!("{k}-{}", teacher.arch);
            let config = teacher_config(&run_tree, &section, k, seed).map_err(|e| TrainError::Config(format!("teacher {name}: {e}")))?;
            teachers.push((name, config));
        }
        let teacher_runs: Vec<TeacherConfig> = teachers
            .iter()
            .map(|(name, _)| TeacherConfig {
                run: Some(PathBuf::from("teachers").join(name)),
                arch: None,
                weights: None,
                small_input: false,
            })
            .collect();
        let mut student = RunConfig::from_table(run_tree).map_err(|e| TrainError::Config(format!("student: {e}")))?;
        student.teachers = teacher_runs;
        Ok(RosKdPlan { tree, section, teachers, student })
    }

    /// Checks everything that can be checked before training: each teacher's data and loss
    /// terms, and the student's loss terms against teachers of the planned architectures.
    pub fn check(&self) -> Result<(), TrainError> {
        for (name, config) in &self.teachers {
            Prepared::new(config).map_err(|e| TrainError::Config(format!("teacher {name}: {e}")))?;
        }
        let setup = RunSetup::new(&self.student)?;
        let teacher_layouts = self
            .teachers
            .iter()
            .map(|(_, config)| {
                let spec = ModelSpec { arch: config.model.arch, small_input: config.model.small_input, ..setup.spec.clone() };
                Ok(Model::new(&spec, &setup.device)?.layout())
            })
            .collect::<Result<Vec<_>, TrainError>>()?;
        build_objective(&self.student, &setup, &teacher_layouts).map_err(|e| TrainError::Config(format!("student: {e}")))?;
        Ok(())
    }

    /// Creates the output folder with `roskd.toml`; refuses one that already holds a RoS-KD run.
    pub fn create(&self, out: &Path) -> Result<(), TrainError> {
        let path = out.join(PLAN_FILE);
        if path.exists() {
            return Err(TrainError::RunFolder {
                path: out.to_path_buf(),
                message: "already holds a RoS-KD run (roskd.toml exists); continue it with `medkd roskd --resume DIR`".into(),
            });
        }
        std::fs::create_dir_all(out).map_err(|e| TrainError::io(out, e))?;
        let text = toml::to_string_pretty(&self.tree).expect("a TOML table serializes");
        write_atomic(&path, text.as_bytes())
    }

    /// The plan of the RoS-KD run in `out` (its `roskd.toml`).
    pub fn open(out: &Path) -> Result<RosKdPlan, TrainError> {
        RosKdPlan::load(&out.join(PLAN_FILE), &[], out)
    }

    /// Trains every stage not yet finished under `out` (a started one is resumed), then writes
    /// `roskd.json`.
    pub fn run(&self, out: &Path, show_progress: bool) -> Result<serde_json::Value, TrainError> {
        let mut teacher_reports = Vec::new();
        for ((name, config), teacher) in self.teachers.iter().zip(&self.section.teacher) {
            let folder = out.join("teachers").join(name);
            let summary = run_stage(config, &folder, &format!("teacher {name}"), show_progress)?;
            teacher_reports.push(json!({
                "name": name,
                "arch": teacher.arch.to_string(),
                "run": folder,
                "subset": config.data.train_subset,
                "test": summary.test,
            }));
        }
        let mut student = self.student.clone();
        student.absolutize_paths(out);
        let folder = out.join("student");
        let summary = run_stage(&student, &folder, "student", show_progress)?;
        let report = json!({
            "subset_ratio": self.section.subset_ratio,
            "teachers": teacher_reports,
            "student": { "run": folder, "test": summary.test },
            "medkd": build_info::json(),
        });
        let text = serde_json::to_string_pretty(&report).expect("JSON values serialize");
        write_atomic(&out.join("roskd.json"), text.as_bytes())?;
        Ok(report)
    }
}

/// A teacher's run config: the student's file with this teacher's architecture, loss terms,
/// subset (seed `seed + k`) and model-init seed (`seed + k`), without the student's weight
/// averaging, then its own overrides.
fn teacher_config(run_tree: &toml::Table, section: &RosKdSection, k: usize, seed: u64) -> Result<RunConfig, TrainError> {
    let stage_seed = (seed + k as u64).to_string();
    let mut tree = run_tree.clone();
    // Weight smoothing is the student's part of RoS-KD; a teacher gets it only through `set`.
    if let Some(toml::Value::Table(train)) = tree.get_mut("train") {
        train.remove("weight_averaging");
    }
    let cross_entropy = toml::Table::from_iter([("kind".to_string(), toml::Value::String("cross_entropy".into()))]);
    let loss = section.teacher_loss.clone().unwrap_or_else(|| toml::Value::Array(vec![toml::Value::Table(cross_entropy)]));
    tree.insert("loss".into(), loss);
    let mut derived = vec![
        format!("seed={stage_seed}"),
        format!("model.arch=\"{}\"", section.teacher[k].arch),
        format!("data.train_subset={{ ratio = {:?}, seed = {stage_seed} }}", section.subset_ratio),
    ];
    derived.extend(section.teacher[k].set.iter().cloned());
    apply_overrides(&mut tree, &derived)?;
    RunConfig::from_table(tree)
}

/// Makes `data.path` and `model.pretrained` absolute against `base`, so `roskd.toml` and every
/// stage's config work from any folder.
fn absolutize_tree_paths(tree: &mut toml::Table, base: &Path) {
    for (table, key) in [("data", "path"), ("model", "pretrained")] {
        if let Some(toml::Value::String(path)) = tree.get_mut(table).and_then(|t| t.get_mut(key)) {
            if Path::new(path.as_str()).is_relative() {
                *path = base.join(path.as_str()).to_string_lossy().into_owned();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
        seed = 5
        [data]
        format = "medmnist"
        path = "data/breastmnist.npz"
        label_noise = { kind = "symmetric", rate = 0.2, seed = 1 }
        [model]
        arch = "resnet18"
        [train]
        epochs = 4
        batch_size = 32
        optimizer = { kind = "adam", lr = 0.001 }
        weight_averaging = { kind = "ema", decay = 0.9 }
        [[loss]]
        kind = "cross_entropy"
        weight = 0.1
        [[loss]]
        kind = "kd"
        weight = 0.9
        temperature = 4.0
        teachers = "random"
        [roskd]
        subset_ratio = 0.6
        [[roskd.teacher]]
        arch = "resnet50"
        [[roskd.teacher]]
        arch = "mobilenetv2"
        set = ["train.epochs=2", "model.small_input=true"]
    "#;

    fn plan(overrides: &[&str]) -> Result<RosKdPlan, TrainError> {
        let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        RosKdPlan::parse(CONFIG, &overrides, Path::new("/base"))
    }

    #[test]
    fn teachers_get_their_arch_subset_seed_and_cross_entropy() {
        let plan = plan(&["train.epochs=6"]).unwrap();
        let names: Vec<&str> = plan.teachers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["0-resnet50", "1-mobilenetv2"]);
        for (k, (_, config)) in plan.teachers.iter().enumerate() {
            assert_eq!(config.seed, 5 + k as u64);
            let subset = config.data.train_subset.as_ref().unwrap();
            assert_eq!((subset.ratio, subset.seed), (0.6, 5 + k as u64));
            assert_eq!(config.losses.len(), 1);
            assert_eq!(config.train.weight_averaging, None, "weight smoothing is the student's");
            assert_eq!(config.data.label_noise, plan.student.data.label_noise, "same noisy labels");
            assert_eq!(config.data.path, Path::new("/base/data/breastmnist.npz"));
            assert!(config.teachers.is_empty());
        }
        let (resnet, mobilenet) = (&plan.teachers[0].1, &plan.teachers[1].1);
        assert_eq!((resnet.model.arch, resnet.train.epochs, resnet.model.small_input), (Arch::ResNet50, 6, false));
        assert_eq!((mobilenet.model.arch, mobilenet.train.epochs, mobilenet.model.small_input), (Arch::MobileNetV2, 2, true));

        let student = &plan.student;
        assert_eq!((student.seed, student.train.epochs, student.losses.len()), (5, 6, 2));
        assert!(student.train.weight_averaging.is_some() && student.data.train_subset.is_none());
        let runs: Vec<_> = student.teachers.iter().map(|t| t.run.clone().unwrap()).collect();
        assert_eq!(runs, [PathBuf::from("teachers/0-resnet50"), PathBuf::from("teachers/1-mobilenetv2")]);
    }

    #[test]
    fn bad_plans_name_the_value() {
        let error = |overrides: &[&str]| plan(overrides).err().expect("should be rejected").to_string();
        for ratio in ["0", "1.5", "-0.2"] {
            let e = error(&[&format!("roskd.subset_ratio={ratio}")]);
            assert!(e.contains("roskd.subset_ratio") && e.contains(&format!("got {ratio}")), "{e}");
        }
        let e = error(&["roskd.teacher=[]"]);
        assert!(e.contains("K >= 1"), "{e}");
        let e = error(&["roskd.teacher=[{ arch = \"vgg16\" }]"]);
        assert!(e.contains("roskd") && e.contains("vgg16"), "{e}");
        let e = error(&["data.train_subset={ ratio = 0.5 }"]);
        assert!(e.contains("data.train_subset"), "{e}");
        let e = error(&["teacher=[{ run = \"x\" }]"]);
        assert!(e.contains("`teacher`"), "{e}");
        let e = error(&["roskd.teacher=[{ arch = \"resnet18\", set = [\"train.epochs=0\"] }]"]);
        assert!(e.contains("teacher 0-resnet18") && e.contains("train.epochs"), "{e}");
        let e = RosKdPlan::parse("[data]\n", &[], Path::new("/")).err().unwrap().to_string();
        assert!(e.contains("[roskd]"), "{e}");
    }
}

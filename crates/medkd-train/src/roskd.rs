//! RoS-KD (methods.md §1): K teachers, each trained on its own seeded random subset (ratio ρ)
//! of the noisily labelled training split, then one student distilled from all of them. A RoS-KD
//! config is a student run config plus a `[roskd]` table; the stages run as a [`Plan`].

use medkd_models::Arch;
use serde::{Deserialize, Serialize};
use serde_json::{Map, json};

use crate::config::apply_overrides;
use crate::stages::{Derived, TeacherStage, teacher_tree};
use crate::{RunConfig, TrainError};

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

/// The teacher stages of a `[roskd]` table over the student's config tree `run_tree`.
pub fn derive(table: toml::Value, run_tree: &toml::Table, seed: u64) -> Result<Derived, TrainError> {
    let section: RosKdSection = table.try_into().map_err(|e: toml::de::Error| TrainError::Config(format!("`roskd`: {e}")))?;
    let ratio = section.subset_ratio;
    if !(ratio > 0.0 && ratio <= 1.0) {
        return Err(TrainError::Config(format!("`roskd.subset_ratio`: must be in (0, 1], got {ratio}")));
    }
    if section.teacher.is_empty() {
        return Err(TrainError::Config("`roskd.teacher`: needs at least one teacher (K >= 1), got 0".into()));
    }
    if run_tree.get("data").and_then(|d| d.get("train_subset")).is_some() {
        return Err(TrainError::Config(
            "`data.train_subset`: RoS-KD draws each teacher's subset from `roskd.subset_ratio`; remove it".into(),
        ));
    }
    let mut teachers = Vec::new();
    for (k, teacher) in section.teacher.iter().enumerate() {
        let name = format!("{k}-{}", teacher.arch);
        let config = teacher_config(run_tree, &section, k, seed).map_err(|e| TrainError::Config(format!("teacher {name}: {e}")))?;
        let about =
            Map::from_iter([("arch".to_string(), json!(teacher.arch.to_string())), ("subset".into(), json!(config.data.train_subset))]);
        teachers.push(TeacherStage { name, config, about });
    }
    Ok(Derived { teachers, about: Map::from_iter([("subset_ratio".to_string(), json!(ratio))]) })
}

/// A teacher's run config: the student's file with this teacher's architecture, loss terms,
/// subset (seed `seed + k`) and model-init seed (`seed + k`), without the student's weight
/// averaging, then its own overrides.
fn teacher_config(run_tree: &toml::Table, section: &RosKdSection, k: usize, seed: u64) -> Result<RunConfig, TrainError> {
    let stage_seed = (seed + k as u64).to_string();
    // Weight smoothing is the student's part of RoS-KD; a teacher gets it only through `set`.
    let mut tree = teacher_tree(run_tree, section.teacher_loss.clone());
    let mut derived = vec![
        format!("seed={stage_seed}"),
        format!("model.arch=\"{}\"", section.teacher[k].arch),
        format!("data.train_subset={{ ratio = {:?}, seed = {stage_seed} }}", section.subset_ratio),
    ];
    derived.extend(section.teacher[k].set.iter().cloned());
    apply_overrides(&mut tree, &derived)?;
    RunConfig::from_table(tree)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::stages::{Plan, PlanKind};

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

    fn plan(overrides: &[&str]) -> Result<Plan, TrainError> {
        let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        Plan::parse(PlanKind::RosKd, CONFIG, &overrides, Path::new("/base"))
    }

    #[test]
    fn teachers_get_their_arch_subset_seed_and_cross_entropy() {
        let plan = plan(&["train.epochs=6"]).unwrap();
        let names: Vec<&str> = plan.teachers.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["0-resnet50", "1-mobilenetv2"]);
        for (k, config) in plan.teachers.iter().map(|t| &t.config).enumerate() {
            assert_eq!(config.seed, 5 + k as u64);
            let subset = config.data.train_subset.as_ref().unwrap();
            assert_eq!((subset.ratio, subset.seed), (0.6, 5 + k as u64));
            assert_eq!(config.losses.len(), 1);
            assert_eq!(config.train.weight_averaging, None, "weight smoothing is the student's");
            assert_eq!(config.data.label_noise, plan.student.data.label_noise, "same noisy labels");
            assert_eq!(config.data.path, Path::new("/base/data/breastmnist.npz"));
            assert!(config.teachers.is_empty());
        }
        let (resnet, mobilenet) = (&plan.teachers[0].config, &plan.teachers[1].config);
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
        let e = Plan::parse(PlanKind::RosKd, "[data]\n", &[], Path::new("/")).err().unwrap().to_string();
        assert!(e.contains("[roskd]"), "{e}");
    }
}

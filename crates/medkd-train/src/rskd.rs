//! Relational subsets KD (Ju et al., MICCAI 2021; methods.md §3): the classes are split into
//! subsets by prior knowledge (overlap allowed), one teacher learns each subset in its own label
//! space (`data.only_classes`, optionally with an "other" class), and the student, on all
//! classes, learns from the labels and a `subset_kd` term in which each teacher supervises only
//! its classes' logits. An RSKD config is a student run config with a `subset_kd` loss term plus
//! an `[rskd]` table; the stages run as a [`crate::stages::Plan`]. Subsets come from one of:
//!
//! - `subsets = [{ name = "melanocytic", classes = ["mel", "nv"] }, ...]`: listed;
//! - `by_frequency = true`: the many-, medium- and few-shot classes of the training split by the
//!   config's `[shots]` thresholds, each non-empty group a subset;
//! - `mapping = { mel = ["melanocytic", "malignant"], nv = "melanocytic", ... }`: class to subset
//!   name(s); subsets in the order their first class has in the data.

use std::collections::BTreeMap;
use std::path::Path;

use medkd_data::{Task, class_counts, open_splits};
use medkd_eval::ShotThresholds;
use medkd_models::Arch;
use serde::{Deserialize, Serialize};
use serde_json::{Map, json};

use crate::config::apply_overrides;
use crate::stages::{Derived, TeacherStage, teacher_tree};
use crate::{RunConfig, TrainError};

/// The `[rskd]` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RskdSection {
    #[serde(default)]
    pub subsets: Vec<NamedSubset>,
    #[serde(default)]
    pub by_frequency: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapping: Option<BTreeMap<String, SubsetNames>>,
    /// Whether a class may be in no subset (then only the labels teach it).
    #[serde(default)]
    pub allow_uncovered: bool,
    /// Single-label data: each teacher also learns one "other" class for the samples of the
    /// classes outside its subset, instead of never seeing them.
    #[serde(default)]
    pub other_class: bool,
    /// The teachers' architecture (default: the student's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher_arch: Option<Arch>,
    /// `key=value` overrides for every teacher's run config, e.g. `["train.epochs=30"]`.
    #[serde(default)]
    pub teacher_set: Vec<String>,
    /// The teachers' loss terms (default: one unweighted cross-entropy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher_loss: Option<toml::Value>,
}

/// A named subset of classes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedSubset {
    pub name: String,
    pub classes: Vec<String>,
}

/// The subset(s) a class belongs to in `mapping`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SubsetNames {
    One(String),
    Many(Vec<String>),
}

/// The teacher stages of an `[rskd]` table, over the student's config (tree and parsed).
pub fn derive(table: toml::Value, run_tree: &toml::Table, student: &RunConfig) -> Result<Derived, TrainError> {
    let section: RskdSection = table.try_into().map_err(|e: toml::de::Error| TrainError::Config(format!("`rskd`: {e}")))?;
    if !student.losses.iter().any(|loss| loss.name() == "subset_kd") {
        return Err(TrainError::Config(
            "`loss`: the student of relational subsets KD learns from its teachers through a `subset_kd` term; add [[loss]] kind = \"subset_kd\"".into(),
        ));
    }
    if student.data.only_classes.is_some() {
        return Err(TrainError::Config(
            "`data.only_classes`: the student learns every class; the [rskd] subsets pick each teacher's".into(),
        ));
    }
    let splits = open_splits(&student.data, Path::new("."))?;
    let info = splits.train.info();
    let subsets = resolve_subsets(&section, &info.class_names, &class_counts(splits.train.as_ref()), student.shots, info.task)?;
    let rule = if section.by_frequency {
        "by_frequency"
    } else if section.mapping.is_some() {
        "mapping"
    } else {
        "subsets"
    };
    let arch = section.teacher_arch.unwrap_or(student.model.arch);
    let mut teachers = Vec::new();
    for (m, subset) in subsets.iter().enumerate() {
        let name = format!("{m}-{}", subset.name);
        let config = teacher_config(run_tree, &section, subset, arch).map_err(|e| TrainError::Config(format!("teacher {name}: {e}")))?;
        let about = Map::from_iter([
            ("subset".to_string(), json!(subset.name)),
            ("classes".into(), json!(subset.classes)),
            ("arch".into(), json!(arch.to_string())),
        ]);
        teachers.push(TeacherStage { name, config, about });
    }
    let about = Map::from_iter([
        ("rule".to_string(), json!(rule)),
        ("other_class".into(), json!(section.other_class)),
        ("subsets".into(), json!(subsets)),
    ]);
    Ok(Derived { teachers, about })
}

/// A teacher's run config: the student's with this subset's classes, the teachers' loss terms and
/// architecture, without the student's weight averaging, then `teacher_set`.
fn teacher_config(run_tree: &toml::Table, section: &RskdSection, subset: &NamedSubset, arch: Arch) -> Result<RunConfig, TrainError> {
    let mut tree = teacher_tree(run_tree, section.teacher_loss.clone());
    let classes = toml::Value::Array(subset.classes.iter().map(|c| toml::Value::String(c.clone())).collect());
    let mut derived = vec![format!("model.arch=\"{arch}\""), format!("data.only_classes={classes}")];
    if section.other_class {
        derived.push("data.other_class=true".into());
    }
    derived.extend(section.teacher_set.iter().cloned());
    apply_overrides(&mut tree, &derived)?;
    RunConfig::from_table(tree)
}

/// The subsets an `[rskd]` table names, checked against the data's classes (in the data's class
/// order within each subset).
pub fn resolve_subsets(
    section: &RskdSection,
    class_names: &[String],
    counts: &[usize],
    shots: ShotThresholds,
    task: Task,
) -> Result<Vec<NamedSubset>, TrainError> {
    let bad = |key: &str, message: String| TrainError::Config(format!("`rskd.{key}`: {message}"));
    let rules = [!section.subsets.is_empty(), section.by_frequency, section.mapping.is_some()];
    if rules.iter().filter(|r| **r).count() != 1 {
        return Err(TrainError::Config(
            "`rskd`: give exactly one of `subsets` (a list), `by_frequency = true` or `mapping` (class to subset names)".into(),
        ));
    }
    let index_of = |key: &str, class: &str| {
        class_names
            .iter()
            .position(|c| c == class)
            .ok_or_else(|| bad(key, format!("unknown class \"{class}\"; the data's classes are {class_names:?}")))
    };
    // Members as class indices, in the order subsets were named.
    let mut members: Vec<(String, Vec<usize>)> = Vec::new();
    if section.by_frequency {
        for (name, group) in ["many", "medium", "few"].into_iter().zip(shots.groups(counts)) {
            if !group.is_empty() {
                members.push((name.to_string(), group));
            }
        }
        if members.len() < 2 {
            return Err(bad(
                "by_frequency",
                format!(
                    "the training counts {counts:?} make only one group with `[shots]` many = {}, few = {}; adjust [shots] so that classes split",
                    shots.many, shots.few
                ),
            ));
        }
    } else if let Some(mapping) = &section.mapping {
        let mut by_class: Vec<(usize, Vec<String>)> = Vec::new();
        for (class, names) in mapping {
            let names = match names {
                SubsetNames::One(name) => vec![name.clone()],
                SubsetNames::Many(names) => names.clone(),
            };
            by_class.push((index_of(&format!("mapping.{class}"), class)?, names));
        }
        by_class.sort_by_key(|(class, _)| *class);
        for (class, names) in by_class {
            for name in names {
                match members.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, list)) => list.push(class),
                    None => members.push((name, vec![class])),
                }
            }
        }
    } else {
        for (i, subset) in section.subsets.iter().enumerate() {
            let key = format!("subsets[{i}]");
            if members.iter().any(|(n, _)| *n == subset.name) {
                return Err(bad(&key, format!("the name \"{}\" is used twice", subset.name)));
            }
            let mut list = Vec::new();
            for class in &subset.classes {
                let index = index_of(&format!("{key}.classes"), class)?;
                if list.contains(&index) {
                    return Err(bad(&format!("{key}.classes"), format!("\"{class}\" is listed twice")));
                }
                list.push(index);
            }
            members.push((subset.name.clone(), list));
        }
    }
    for (name, list) in &mut members {
        let folder_safe = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !folder_safe {
            return Err(bad(
                "subsets",
                format!("subset name \"{name}\" must be letters, digits, '_' or '-' (it names the teacher's folder)"),
            ));
        }
        if list.is_empty() {
            return Err(bad("subsets", format!("subset \"{name}\" is empty; list at least one class")));
        }
        if list.len() == 1 && task != Task::MultiLabel && !section.other_class {
            return Err(bad(
                "subsets",
                format!(
                    "subset \"{name}\" has one class, and a single-label teacher needs two: add classes or set `rskd.other_class = true`"
                ),
            ));
        }
        list.sort_unstable();
    }
    let uncovered: Vec<&String> =
        (0..class_names.len()).filter(|c| !members.iter().any(|(_, l)| l.contains(c))).map(|c| &class_names[c]).collect();
    if !uncovered.is_empty() && !section.allow_uncovered {
        return Err(bad(
            "subsets",
            format!(
                "classes {uncovered:?} are in no subset; add them to one, or set `rskd.allow_uncovered = true` to teach them by labels alone"
            ),
        ));
    }
    Ok(members
        .into_iter()
        .map(|(name, list)| NamedSubset { name, classes: list.into_iter().map(|c| class_names[c].clone()).collect() })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"].map(String::from).to_vec()
    }
    const COUNTS: [usize; 7] = [229, 360, 770, 81, 779, 2809, 100];

    fn section(toml: &str) -> RskdSection {
        toml::from_str(toml).unwrap()
    }

    fn resolve(toml: &str) -> Result<Vec<NamedSubset>, TrainError> {
        resolve_subsets(&section(toml), &names(), &COUNTS, ShotThresholds { many: 700, few: 150 }, Task::MultiClass)
    }

    fn subset(name: &str, classes: &[&str]) -> NamedSubset {
        NamedSubset { name: name.into(), classes: classes.iter().map(|c| c.to_string()).collect() }
    }

    #[test]
    fn the_three_rules_give_subsets_in_the_data_class_order() {
        let listed = resolve(
            r#"subsets = [{ name = "melanocytic", classes = ["nv", "mel"] },
                          { name = "non_melanocytic", classes = ["bkl", "bcc", "akiec", "df", "vasc"] },
                          { name = "malignant", classes = ["mel", "bcc", "akiec"] }]"#,
        )
        .unwrap();
        assert_eq!(
            listed,
            [
                subset("melanocytic", &["mel", "nv"]),
                subset("non_melanocytic", &["akiec", "bcc", "bkl", "df", "vasc"]),
                subset("malignant", &["akiec", "bcc", "mel"]),
            ]
        );
        let by_frequency = resolve("by_frequency = true").unwrap();
        assert_eq!(
            by_frequency,
            [subset("many", &["bkl", "mel", "nv"]), subset("medium", &["akiec", "bcc"]), subset("few", &["df", "vasc"])]
        );
        let mapping = resolve(
            r#"mapping = { akiec = ["keratinocytic", "malignant"], bcc = ["keratinocytic", "malignant"], bkl = "keratinocytic",
                           df = "other_benign", vasc = "other_benign", mel = ["melanocytic", "malignant"], nv = "melanocytic" }"#,
        )
        .unwrap();
        assert_eq!(
            mapping,
            [
                subset("keratinocytic", &["akiec", "bcc", "bkl"]),
                subset("malignant", &["akiec", "bcc", "mel"]),
                subset("other_benign", &["df", "vasc"]),
                subset("melanocytic", &["mel", "nv"]),
            ]
        );
    }

    #[test]
    fn bad_subsets_name_the_key_and_the_class() {
        let error = |toml: &str| resolve(toml).err().expect("should be rejected").to_string();
        let e = error(r#"subsets = [{ name = "a", classes = ["nv", "melanoma"] }]"#);
        assert!(e.contains("rskd.subsets[0].classes") && e.contains("\"melanoma\""), "{e}");
        let e = error(r#"subsets = [{ name = "a", classes = [] }]"#);
        assert!(e.contains("\"a\" is empty"), "{e}");
        let e = error(r#"subsets = [{ name = "a", classes = ["nv", "mel"] }]"#);
        assert!(e.contains("in no subset") && e.contains("allow_uncovered") && e.contains("\"vasc\""), "{e}");
        let ok = r#"allow_uncovered = true
                    subsets = [{ name = "a", classes = ["nv", "mel"] }]"#;
        assert_eq!(resolve(ok).unwrap(), [subset("a", &["mel", "nv"])]);
        let e = error(
            r#"subsets = [{ name = "a", classes = ["nv"] }, { name = "b", classes = ["akiec", "bcc", "bkl", "df", "mel", "vasc"] }]"#,
        );
        assert!(e.contains("one class") && e.contains("other_class"), "{e}");
        let e = error(r#"subsets = [{ name = "a", classes = ["nv", "nv"] }]"#);
        assert!(e.contains("listed twice"), "{e}");
        let e = error(r#"subsets = [{ name = "a/b", classes = ["nv", "mel"] }]"#);
        assert!(e.contains("a/b"), "{e}");
        let e = error(r#"mapping = { melanoma = "a" }"#);
        assert!(e.contains("rskd.mapping.melanoma"), "{e}");
        let e = error("by_frequency = true\nsubsets = [{ name = \"a\", classes = [\"nv\", \"mel\"] }]");
        assert!(e.contains("exactly one of"), "{e}");
        let e = error("");
        assert!(e.contains("exactly one of"), "{e}");
        let all_many =
            resolve_subsets(&section("by_frequency = true"), &names(), &COUNTS, ShotThresholds { many: 10, few: 5 }, Task::MultiClass);
        let e = all_many.err().unwrap().to_string();
        assert!(e.contains("rskd.by_frequency") && e.contains("only one group"), "{e}");
    }
}

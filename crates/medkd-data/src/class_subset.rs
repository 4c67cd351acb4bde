//! `data.only_classes`: a dataset restricted to some of its classes and relabelled in their own
//! label space, e.g. the per-subset teachers of relational subsets KD. Single-label samples of
//! other classes are dropped, or with `data.other_class` become one last class [`OTHER_CLASS`];
//! multi-label samples keep every image and only the chosen labels (an image with none of them
//! is a negative for all).

use std::sync::Arc;

use image::DynamicImage;

use crate::{DataError, DatasetInfo, ImageDataset, Target, Task};

/// The name of the class that collects every class left out with `data.other_class = true`.
pub const OTHER_CLASS: &str = "other";

pub struct ClassSubset {
    base: Arc<dyn ImageDataset>,
    /// Indices into `base` of the samples kept.
    indices: Vec<usize>,
    /// The new class of each of `base`'s classes (`None`: dropped).
    new_class: Vec<Option<usize>>,
    info: DatasetInfo,
}

impl ClassSubset {
    /// The samples of `base` in the label space of `classes` (names of `base`'s classes, in the
    /// order the new indices take), plus [`OTHER_CLASS`] last when `other` is set.
    pub fn new(base: Arc<dyn ImageDataset>, classes: &[String], other: bool) -> Result<ClassSubset, DataError> {
        let base_info = base.info();
        let error = |message: String| DataError::config(format!("`data.only_classes`: {message}"));
        let task = base_info.task;
        if task == Task::Localization {
            return Err(error("box targets (task = localization) cannot be restricted to classes".into()));
        }
        if other && task == Task::MultiLabel {
            return Err(error(
                "`other_class` applies to single-label data: a multi-label image keeps all its images and only the chosen labels".into(),
            ));
        }
        if other && base_info.class_names.iter().any(|c| c == OTHER_CLASS) {
            return Err(error(format!("the data already has a class named \"{OTHER_CLASS}\", so `other_class` would be ambiguous")));
        }
        let mut new_class = vec![None; base_info.num_classes()];
        for (index, name) in classes.iter().enumerate() {
            let Some(class) = base_info.class_names.iter().position(|c| c == name) else {
                return Err(error(format!("unknown class \"{name}\"; the data's classes are {:?}", base_info.class_names)));
            };
            new_class[class] = Some(index);
        }
        let mut class_names = classes.to_vec();
        if other {
            for slot in new_class.iter_mut().filter(|slot| slot.is_none()) {
                *slot = Some(classes.len());
            }
            class_names.push(OTHER_CLASS.to_string());
        }
        if task != Task::MultiLabel && class_names.len() < 2 {
            return Err(error(format!(
                "a single-label model needs at least 2 classes, got {class_names:?}; add classes or set `data.other_class = true`"
            )));
        }
        let indices = (0..base.len())
            .filter(|&i| match base.target(i) {
                Target::Class(c) => new_class[c].is_some(),
                _ => true,
            })
            .collect();
        // Two classes stay binary only if they were; "other" is no grade of an ordinal scale.
        let task = match task {
            Task::Binary if class_names.len() != 2 => Task::MultiClass,
            Task::Ordinal if other => Task::MultiClass,
            task => task,
        };
        let info = DatasetInfo { name: base_info.name.clone(), task, class_names, channels: base_info.channels };
        Ok(ClassSubset { base, indices, new_class, info })
    }
}

impl ImageDataset for ClassSubset {
    fn info(&self) -> &DatasetInfo {
        &self.info
    }
    fn len(&self) -> usize {
        self.indices.len()
    }
    fn image(&self, index: usize) -> Result<DynamicImage, DataError> {
        self.base.image(self.indices[index])
    }
    fn target(&self, index: usize) -> Target {
        match self.base.target(self.indices[index]) {
            Target::Class(c) => Target::Class(self.new_class[c].expect("only samples of kept classes are indexed")),
            Target::MultiHot(bits) => {
                let mut kept = vec![0; self.info.num_classes()];
                for (c, bit) in bits.into_iter().enumerate() {
                    if let Some(new) = self.new_class[c] {
                        kept[new] = bit;
                    }
                }
                Target::MultiHot(kept)
            }
            other => other,
        }
    }
    fn id(&self, index: usize) -> String {
        self.base.id(self.indices[index])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Five samples of classes a, b, c (single-label) or of multi-hot rows.
    struct Toy {
        info: DatasetInfo,
        targets: Vec<Target>,
    }

    impl ImageDataset for Toy {
        fn info(&self) -> &DatasetInfo {
            &self.info
        }
        fn len(&self) -> usize {
            self.targets.len()
        }
        fn image(&self, _: usize) -> Result<DynamicImage, DataError> {
            Ok(DynamicImage::new_luma8(1, 1))
        }
        fn target(&self, index: usize) -> Target {
            self.targets[index].clone()
        }
        fn id(&self, index: usize) -> String {
            format!("s{index}")
        }
    }

    fn toy(task: Task, targets: Vec<Target>) -> Arc<dyn ImageDataset> {
        let class_names = ["a", "b", "c"].map(String::from).to_vec();
        Arc::new(Toy { info: DatasetInfo { name: "toy".into(), task, class_names, channels: 1 }, targets })
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn view(ds: &ClassSubset) -> Vec<(String, Target)> {
        (0..ds.len()).map(|i| (ds.id(i), ds.target(i))).collect()
    }

    #[test]
    fn single_label_samples_are_kept_relabelled_or_collected_in_other() {
        let base = toy(Task::MultiClass, [0, 1, 2, 1, 0].map(Target::Class).to_vec());
        let kept = ClassSubset::new(base.clone(), &names(&["c", "a"]), false).unwrap();
        assert_eq!(kept.info().class_names, ["c", "a"]);
        let expected = [("s0", 1), ("s2", 0), ("s4", 1)].map(|(id, c)| (id.to_string(), Target::Class(c)));
        assert_eq!(view(&kept), expected);

        let with_other = ClassSubset::new(base, &names(&["b"]), true).unwrap();
        assert_eq!(with_other.info().class_names, ["b", "other"]);
        let classes: Vec<Target> = view(&with_other).into_iter().map(|(_, t)| t).collect();
        assert_eq!(classes, [1, 0, 1, 0, 1].map(Target::Class));
    }

    #[test]
    fn multi_label_images_all_stay_with_the_chosen_labels() {
        let rows = [[1, 0, 1], [0, 1, 0], [0, 0, 0]].map(|r| Target::MultiHot(r.to_vec())).to_vec();
        let kept = ClassSubset::new(toy(Task::MultiLabel, rows), &names(&["c"]), false).unwrap();
        let targets: Vec<Target> = view(&kept).into_iter().map(|(_, t)| t).collect();
        assert_eq!(targets, [[1], [0], [0]].map(|r| Target::MultiHot(r.to_vec())));
    }

    #[test]
    fn bad_subsets_name_the_problem() {
        let base = toy(Task::MultiClass, vec![Target::Class(0)]);
        let error = |classes: &[&str], other: bool| ClassSubset::new(base.clone(), &names(classes), other).err().unwrap().to_string();
        let e = error(&["a", "zz"], false);
        assert!(e.contains("`data.only_classes`") && e.contains("\"zz\"") && e.contains("[\"a\", \"b\", \"c\"]"), "{e}");
        assert!(error(&["a"], false).contains("at least 2 classes"));
        let multi = toy(Task::MultiLabel, vec![Target::MultiHot(vec![1, 0, 0])]);
        let e = ClassSubset::new(multi, &names(&["a"]), true).err().unwrap().to_string();
        assert!(e.contains("single-label"), "{e}");
    }
}

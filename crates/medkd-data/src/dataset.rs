//! The dataset abstraction shared by every format: what a sample is, what a dataset says about
//! itself, and an index view over another dataset.

use std::sync::Arc;

use image::DynamicImage;
use serde::{Deserialize, Serialize};

use crate::DataError;

/// The learning task a dataset's labels define.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    MultiClass,
    Binary,
    MultiLabel,
    /// Ordered grades (e.g. diabetic-retinopathy severity); targets are class indices.
    Ordinal,
    /// One bounding box per image ([`Target::Box`]), with a class when the data has labels.
    Localization,
}

impl std::fmt::Display for Task {
    /// The config spelling.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Task::MultiClass => "multiclass",
            Task::Binary => "binary",
            Task::MultiLabel => "multilabel",
            Task::Ordinal => "ordinal",
            Task::Localization => "localization",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetInfo {
    pub name: String,
    pub task: Task,
    pub class_names: Vec<String>,
    /// Native channels of the stored images: 1 (grayscale) or 3 (colour).
    pub channels: usize,
}

impl DatasetInfo {
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }
}

/// A sample's label: a class index (multi-class, binary, ordinal), one 0/1 per class
/// (multi-label), nothing (an unlabelled pool), or one bounding box (localization).
// Not `Eq`/`Hash`: box coordinates are f32.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Class(usize),
    MultiHot(Vec<u8>),
    /// No label: a sample of an unlabelled pool (e.g. DISTL's), see [`Unlabelled`].
    None,
    /// One box per image, normalized `[x0, y0, x1, y1]` in [0, 1] with `x1 > x0` and `y1 > y0`
    /// (x1/y1 exclusive edges as fractions of the width/height), so it survives a resize.
    Box {
        bbox: [f32; 4],
        class: Option<usize>,
    },
}

impl Target {
    /// Indices of the positive classes: none for an unlabelled sample or a box without a class.
    pub fn positives(&self) -> Vec<usize> {
        match self {
            Target::Class(c) | Target::Box { class: Some(c), .. } => vec![*c],
            Target::MultiHot(v) => v.iter().enumerate().filter(|(_, x)| **x != 0).map(|(i, _)| i).collect(),
            Target::None | Target::Box { class: None, .. } => Vec::new(),
        }
    }
}

/// A labelled image collection. Implementations keep only what they need to find an image
/// (paths, or small in-memory arrays) and decode on demand, so memory does not grow with the
/// number of images.
pub trait ImageDataset: Send + Sync {
    fn info(&self) -> &DatasetInfo;
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The decoded original image (no transform applied).
    fn image(&self, index: usize) -> Result<DynamicImage, DataError>;
    fn target(&self, index: usize) -> Target;
    /// A stable identifier: the file name relative to the image root for image sets, the row index
    /// for npz splits.
    fn id(&self, index: usize) -> String;
}

/// An [`ImageDataset`] view over another one, restricted to (and reordered by) a list of indices.
pub struct Subset {
    base: Arc<dyn ImageDataset>,
    indices: Vec<usize>,
}

impl Subset {
    /// # Panics
    /// If an index is out of range for `base`: subsets are built by code, not from user input.
    pub fn new(base: Arc<dyn ImageDataset>, indices: Vec<usize>) -> Self {
        let len = base.len();
        if let Some(bad) = indices.iter().find(|&&i| i >= len) {
            panic!("Subset index {bad} out of range for a dataset of {len} samples");
        }
        Subset { base, indices }
    }
}

impl ImageDataset for Subset {
    fn info(&self) -> &DatasetInfo {
        self.base.info()
    }
    fn len(&self) -> usize {
        self.indices.len()
    }
    fn image(&self, index: usize) -> Result<DynamicImage, DataError> {
        self.base.image(self.indices[index])
    }
    fn target(&self, index: usize) -> Target {
        self.base.target(self.indices[index])
    }
    fn id(&self, index: usize) -> String {
        self.base.id(self.indices[index])
    }
}

/// The same images, ids and info as another dataset, every target [`Target::None`]: the unlabelled
/// pool of semi-supervised methods (DISTL), so labels cannot leak into a step that must not see
/// them.
pub struct Unlabelled {
    base: Arc<dyn ImageDataset>,
}

impl Unlabelled {
    pub fn new(base: Arc<dyn ImageDataset>) -> Self {
        Unlabelled { base }
    }
}

impl ImageDataset for Unlabelled {
    fn info(&self) -> &DatasetInfo {
        self.base.info()
    }
    fn len(&self) -> usize {
        self.base.len()
    }
    fn image(&self, index: usize) -> Result<DynamicImage, DataError> {
        self.base.image(index)
    }
    fn target(&self, _index: usize) -> Target {
        Target::None
    }
    fn id(&self, index: usize) -> String {
        self.base.id(index)
    }
}

/// Two datasets one after the other (indices `0..first.len()` are `first`'s), e.g. a labelled set
/// followed by an [`Unlabelled`] pool. Ids and info are each part's own.
pub struct Concat {
    first: Arc<dyn ImageDataset>,
    second: Arc<dyn ImageDataset>,
}

impl Concat {
    pub fn new(first: Arc<dyn ImageDataset>, second: Arc<dyn ImageDataset>) -> Self {
        Concat { first, second }
    }

    fn part(&self, index: usize) -> (&dyn ImageDataset, usize) {
        match index.checked_sub(self.first.len()) {
            Some(i) => (self.second.as_ref(), i),
            None => (self.first.as_ref(), index),
        }
    }
}

impl ImageDataset for Concat {
    fn info(&self) -> &DatasetInfo {
        self.first.info()
    }
    fn len(&self) -> usize {
        self.first.len() + self.second.len()
    }
    fn image(&self, index: usize) -> Result<DynamicImage, DataError> {
        let (part, i) = self.part(index);
        part.image(i)
    }
    fn target(&self, index: usize) -> Target {
        let (part, i) = self.part(index);
        part.target(i)
    }
    fn id(&self, index: usize) -> String {
        let (part, i) = self.part(index);
        part.id(i)
    }
}

/// Samples per class; for multi-label data, positives per class.
pub fn class_counts(ds: &dyn ImageDataset) -> Vec<usize> {
    let mut counts = vec![0; ds.info().num_classes()];
    for i in 0..ds.len() {
        for c in ds.target(i).positives() {
            counts[c] += 1;
        }
    }
    counts
}

/// The task a dataset is trained as: `requested` if given and compatible with the labels, else
/// the one the labels imply.
pub(crate) fn resolve_task(inferred: Task, requested: Option<Task>, num_classes: usize) -> Result<Task, DataError> {
    let Some(task) = requested else {
        return Ok(inferred);
    };
    if (task == Task::Localization) != (inferred == Task::Localization) {
        return Err(DataError::config(if task == Task::Localization {
            "task = localization needs box targets (`box_columns`, csv only)".to_string()
        } else {
            format!("task = {task} does not fit box targets (`box_columns`); box data is task = localization")
        }));
    }
    if (task == Task::MultiLabel) != (inferred == Task::MultiLabel) {
        return Err(DataError::config(format!(
            "task = {task} does not fit labels that are {}",
            if inferred == Task::MultiLabel { "multi-label" } else { "one class per image" }
        )));
    }
    if task == Task::Binary && num_classes != 2 {
        return Err(DataError::config(format!("task = binary needs 2 classes, the data has {num_classes}")));
    }
    Ok(task)
}

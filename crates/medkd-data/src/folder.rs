//! Image-folder layout: `root/<class>/<image>`, one sub-folder per class.

use std::fs;
use std::path::{Path, PathBuf};

use crate::dataset::resolve_task;
use crate::file_dataset::{FileDataset, has_image_extension};
use crate::{DataError, Target, Task};

fn sorted_entries(dir: &Path) -> Result<Vec<(String, PathBuf)>, DataError> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let path = entry.map_err(|e| DataError::io(dir, e))?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| DataError::Dataset { path: path.clone(), message: "file name is not valid UTF-8".into() })?
            .to_string();
        entries.push((name, path));
    }
    entries.sort();
    Ok(entries)
}

/// Classes are the sub-folder names, sorted, unless `classes` fixes their order (then every
/// sub-folder must be listed and every listed class must have a sub-folder). Files with an image
/// extension are taken in name order; anything else is ignored.
pub(crate) fn open_folder(root: &Path, classes: Option<&[String]>, task: Option<Task>) -> Result<FileDataset, DataError> {
    let folders: Vec<(String, PathBuf)> =
        sorted_entries(root)?.into_iter().filter(|(name, path)| path.is_dir() && !name.starts_with('.')).collect();
    let found: Vec<String> = folders.iter().map(|(name, _)| name.clone()).collect();
    let class_names = match classes {
        Some(list) => {
            let dataset_error = |message| DataError::Dataset { path: root.to_path_buf(), message };
            if let Some(extra) = found.iter().find(|f| !list.contains(f)) {
                return Err(dataset_error(format!("sub-folder `{extra}` is not in `classes` {list:?}")));
            }
            if let Some(missing) = list.iter().find(|c| !found.contains(c)) {
                return Err(dataset_error(format!("class `{missing}` has no sub-folder; sub-folders found: {found:?}")));
            }
            list.to_vec()
        }
        None => found,
    };
    if class_names.len() < 2 {
        return Err(DataError::Dataset {
            path: root.to_path_buf(),
            message: format!("an image folder needs at least 2 class sub-folders, found {class_names:?}"),
        });
    }
    let mut entries = Vec::new();
    for (class, name) in class_names.iter().enumerate() {
        for (file, path) in sorted_entries(&root.join(name))? {
            if path.is_file() && has_image_extension(&file) {
                entries.push((format!("{name}/{file}"), Target::Class(class), None));
            }
        }
    }
    let inferred = if class_names.len() == 2 { Task::Binary } else { Task::MultiClass };
    let name = root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let task = resolve_task(inferred, task, class_names.len())?;
    FileDataset::new(name, task, class_names, root.to_path_buf(), entries)
}

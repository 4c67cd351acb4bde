//! A dataset of image files on disk: only relative names and targets are kept in memory, images are
//! decoded on each access. Shared by the folder and CSV layouts.

use std::collections::HashSet;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageDecoder, ImageReader};

use crate::dicom::{DicomWindow, has_dicom_magic, is_dicom_name, open_dicom};
use crate::image_check::{BadImage, BadImages, check_files};
use crate::{DataError, DatasetInfo, ImageDataset, Target, Task};

/// File extensions recognised as images (lowercase).
pub(crate) const IMAGE_EXTENSIONS: [&str; 8] = ["png", "jpg", "jpeg", "bmp", "tif", "tiff", "dcm", "dicom"];

/// Whether `name` ends in an image file extension medkd reads (png, jpg, ..., dcm).
pub fn has_image_extension(name: &str) -> bool {
    Path::new(name).extension().and_then(|e| e.to_str()).is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

pub(crate) struct FileDataset {
    info: DatasetInfo,
    root: PathBuf,
    /// (path relative to `root`, target, 1-based CSV data row)
    entries: Vec<(String, Target, Option<usize>)>,
    /// `data.dicom_window` for DICOM files.
    dicom_window: Option<DicomWindow>,
}

impl FileDataset {
    /// The native channel count is read from the first image's header.
    pub(crate) fn new(
        name: String,
        task: Task,
        class_names: Vec<String>,
        root: PathBuf,
        entries: Vec<(String, Target, Option<usize>)>,
    ) -> Result<Self, DataError> {
        let Some((first, ..)) = entries.first() else {
            return Err(DataError::Dataset { path: root, message: "no images found".into() });
        };
        let info = DatasetInfo { name, task, class_names, channels: native_channels(&root.join(first))? };
        Ok(FileDataset { info, root, entries, dicom_window: None })
    }

    pub(crate) fn with_dicom_window(self, dicom_window: Option<DicomWindow>) -> Self {
        FileDataset { dicom_window, ..self }
    }

    /// Decodes every image once (`data.bad_images`, [`crate::image_check`]): an error listing all
    /// that fail with `BadImages::Error`, else the dataset without them and their list.
    pub(crate) fn checked(mut self, rule: BadImages) -> Result<(FileDataset, Vec<BadImage>), DataError> {
        let files: Vec<_> = self.entries.iter().map(|(name, _, row)| (self.root.join(name), name.clone(), *row)).collect();
        let bad = check_files(&files);
        if bad.is_empty() {
            return Ok((self, bad));
        }
        if rule == BadImages::Error {
            let list: Vec<String> = bad.iter().map(|b| format!("  {b}")).collect();
            return Err(DataError::Dataset {
                path: self.root,
                message: format!(
                    "{} of {} images do not decode; fix or remove them, or set `data.bad_images = \"skip\"` to train without them:\n{}",
                    bad.len(),
                    files.len(),
                    list.join("\n")
                ),
            });
        }
        let skipped: HashSet<&str> = bad.iter().map(|b| b.id.as_str()).collect();
        self.entries.retain(|(name, ..)| !skipped.contains(name.as_str()));
        if self.entries.is_empty() {
            return Err(DataError::Dataset { path: self.root, message: "no image decodes".into() });
        }
        Ok((self, bad))
    }
}

fn open_reader(path: &Path) -> Result<ImageReader<BufReader<File>>, DataError> {
    // Guess the format from the content: medical archives often mislabel extensions.
    ImageReader::open(path).and_then(|r| r.with_guessed_format()).map_err(|e| DataError::io(path, e))
}

/// Decodes one image file, the format guessed from its content (DICOM with its own window);
/// errors name the file.
pub fn open_image(path: &Path) -> Result<DynamicImage, DataError> {
    open_image_with(path, None)
}

/// As [`open_image`], a DICOM file read with `dicom_window` when given.
pub fn open_image_with(path: &Path, dicom_window: Option<DicomWindow>) -> Result<DynamicImage, DataError> {
    with_dicom_fallback(path, dicom_window, |reader| reader.decode(), Ok)
}

/// `read` on the image file, or, for a DICOM file (by name, or by its magic once the image
/// formats fail), `from_dicom` on the decoded DICOM image; errors name the file.
fn with_dicom_fallback<T>(
    path: &Path,
    dicom_window: Option<DicomWindow>,
    read: impl FnOnce(ImageReader<BufReader<File>>) -> image::ImageResult<T>,
    from_dicom: impl FnOnce(DynamicImage) -> Result<T, DataError>,
) -> Result<T, DataError> {
    if is_dicom_name(path) {
        return from_dicom(open_dicom(path, dicom_window)?);
    }
    match read(open_reader(path)?) {
        Ok(value) => Ok(value),
        Err(_) if has_dicom_magic(path) => from_dicom(open_dicom(path, dicom_window)?),
        Err(source) => Err(DataError::Image { path: path.to_path_buf(), source }),
    }
}

/// `(width, height)` from the file header only: reading box sizes must not decode every image
/// (a DICOM file is decoded).
pub(crate) fn image_dimensions(path: &Path) -> Result<(u32, u32), DataError> {
    with_dicom_fallback(path, None, |reader| reader.into_dimensions(), |image| Ok((image.width(), image.height())))
}

/// 3 for colour images, 1 for grayscale, from the file header only (a DICOM file is decoded).
fn native_channels(path: &Path) -> Result<usize, DataError> {
    let colour = with_dicom_fallback(
        path,
        None,
        |reader| Ok(reader.into_decoder()?.color_type().has_color()),
        |image| Ok(image.color().has_color()),
    )?;
    Ok(if colour { 3 } else { 1 })
}

impl ImageDataset for FileDataset {
    fn info(&self) -> &DatasetInfo {
        &self.info
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    fn image(&self, index: usize) -> Result<DynamicImage, DataError> {
        open_image_with(&self.root.join(&self.entries[index].0), self.dicom_window)
    }

    fn target(&self, index: usize) -> Target {
        self.entries[index].1.clone()
    }

    fn id(&self, index: usize) -> String {
        self.entries[index].0.clone()
    }
}

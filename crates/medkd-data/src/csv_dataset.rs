//! CSV layout: one row per image, with labels as a class-name column (HAM10000 `dx`), one-hot
//! columns (ISIC 2019 GroundTruth.csv) or a separator-joined multi-label column (NIH ChestX-ray14
//! "Finding Labels"), optionally with one bounding box per image (`box_columns`), or boxes alone.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use crate::bbox::normalize_box;
use crate::config::{BoxUnits, DataConfig, resolve};
use crate::dataset::resolve_task;
use crate::file_dataset::{FileDataset, has_image_extension, image_dimensions};
use crate::{DataError, Target, Task};

enum Layout<'a> {
    ClassName(&'a str),
    OneHot(&'a [String]),
    MultiLabel {
        column: &'a str,
        separator: &'a str,
        no_finding: &'a str,
    },
    /// No label columns: boxes without classes.
    BoxesOnly,
}

impl Layout<'_> {
    /// The column holding class names (empty for one-hot columns, which hold none).
    fn name_column(&self) -> &str {
        match self {
            Layout::ClassName(c) | Layout::MultiLabel { column: c, .. } => c,
            Layout::OneHot(_) | Layout::BoxesOnly => "",
        }
    }
}

/// A row's label before class names are mapped to indices.
enum RawLabel {
    Name(String),
    Index(usize),
    Names(Vec<String>),
    /// A row of a box-only CSV.
    Unlabelled,
}

/// One data row: the image name, its label and its normalized box (with `box_columns`).
struct RawRow {
    name: String,
    label: RawLabel,
    bbox: Option<[f32; 4]>,
}

struct CsvRows<'a> {
    path: &'a Path,
    headers: Vec<String>,
}

impl CsvRows<'_> {
    fn column(&self, name: &str) -> Result<usize, DataError> {
        self.headers.iter().position(|h| h == name).ok_or_else(|| DataError::MissingColumn {
            path: self.path.to_path_buf(),
            column: name.to_string(),
            found: self.headers.clone(),
        })
    }

    fn value_error(&self, row: usize, column: &str, message: String) -> DataError {
        DataError::CsvValue { path: self.path.to_path_buf(), row, column: column.to_string(), message }
    }

    /// The trimmed, non-empty value of `column` in `record`.
    fn field<'r>(&self, record: &'r csv::StringRecord, index: usize, row: usize) -> Result<&'r str, DataError> {
        let value = record.get(index).unwrap_or_default().trim();
        if value.is_empty() {
            return Err(self.value_error(row, &self.headers[index], "empty value".into()));
        }
        Ok(value)
    }
}

pub(crate) fn open_csv(cfg: &DataConfig, csv_path: &Path) -> Result<FileDataset, DataError> {
    let csv_dir = csv_path.parent().unwrap_or(Path::new("."));
    let image_root = match &cfg.image_dir {
        Some(dir) => resolve(csv_dir, dir),
        None => csv_dir.to_path_buf(),
    };
    let layout = if let Some(col) = &cfg.label_column {
        Layout::ClassName(col)
    } else if let Some(cols) = &cfg.label_columns {
        Layout::OneHot(cols)
    } else if let Some(column) = &cfg.multilabel_column {
        Layout::MultiLabel {
            column,
            separator: cfg.multilabel_separator.as_deref().unwrap_or("|"),
            no_finding: cfg.no_finding.as_deref().unwrap_or("No Finding"),
        }
    } else {
        Layout::BoxesOnly
    };
    let (rows, raw) = read_rows(cfg, csv_path, &image_root, &layout)?;

    let class_names: Vec<String> = match (&layout, &cfg.classes) {
        (Layout::OneHot(cols), _) => cols.to_vec(),
        (_, Some(fixed)) => fixed.clone(),
        (_, None) => {
            let mut unique = BTreeSet::new();
            for RawRow { label, .. } in &raw {
                match label {
                    RawLabel::Name(n) => {
                        unique.insert(n.as_str());
                    }
                    RawLabel::Names(ns) => unique.extend(ns.iter().map(String::as_str)),
                    RawLabel::Index(_) | RawLabel::Unlabelled => {}
                }
            }
            unique.into_iter().map(String::from).collect()
        }
    };
    let index_of = |name: &str, row: usize| {
        class_names
            .iter()
            .position(|c| c == name)
            .ok_or_else(|| rows.value_error(row, layout.name_column(), format!("unknown class `{name}`; expected one of {class_names:?}")))
    };
    let mut entries = Vec::with_capacity(raw.len());
    for (i, RawRow { name, label, bbox }) in raw.into_iter().enumerate() {
        let class = match &label {
            RawLabel::Index(c) => Some(*c),
            RawLabel::Name(n) => Some(index_of(n, i + 1)?),
            RawLabel::Names(_) | RawLabel::Unlabelled => None,
        };
        let target = match (label, bbox) {
            // validate() rejects `box_columns` with a multi-label column.
            (RawLabel::Names(ns), _) => {
                let mut hot = vec![0u8; class_names.len()];
                for n in &ns {
                    hot[index_of(n, i + 1)?] = 1;
                }
                Target::MultiHot(hot)
            }
            (_, Some(bbox)) => Target::Box { bbox, class },
            (_, None) => match class {
                Some(c) => Target::Class(c),
                None => return Err(DataError::config("format = \"csv\" without label columns needs `box_columns`")),
            },
        };
        entries.push((name, target, Some(i + 1)));
    }

    let inferred = match (&layout, class_names.len()) {
        _ if cfg.box_columns.is_some() => Task::Localization,
        (Layout::MultiLabel { .. }, _) => Task::MultiLabel,
        (_, 2) => Task::Binary,
        _ => Task::MultiClass,
    };
    // Box data needs no classes: a box-only CSV has none.
    let min_classes = match inferred {
        Task::Localization => 0,
        Task::MultiLabel => 1,
        _ => 2,
    };
    if class_names.len() < min_classes {
        return Err(DataError::Dataset {
            path: csv_path.to_path_buf(),
            message: format!("found only the classes {class_names:?}; need at least {min_classes}"),
        });
    }
    let name = csv_path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let task = resolve_task(inferred, cfg.task, class_names.len())?;
    FileDataset::new(name, task, class_names, image_root, entries)
}

/// Every data row's image name (extension added, file checked to exist), raw label and box.
fn read_rows<'p>(
    cfg: &DataConfig,
    csv_path: &'p Path,
    image_root: &Path,
    layout: &Layout,
) -> Result<(CsvRows<'p>, Vec<RawRow>), DataError> {
    let file = File::open(csv_path).map_err(|e| DataError::io(csv_path, e))?;
    let mut reader = csv::Reader::from_reader(BufReader::new(file));
    let headers = reader
        .headers()
        .map_err(|source| DataError::CsvFile { path: csv_path.to_path_buf(), source })?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let rows = CsvRows { path: csv_path, headers };
    let image_column = cfg.image_column.as_deref().unwrap_or_default();
    let image_col = rows.column(image_column)?;
    let label_cols: Vec<usize> = match layout {
        Layout::ClassName(c) | Layout::MultiLabel { column: c, .. } => vec![rows.column(c)?],
        Layout::OneHot(cols) => cols.iter().map(|c| rows.column(c)).collect::<Result<_, _>>()?,
        Layout::BoxesOnly => Vec::new(),
    };
    let box_cols: Option<[usize; 4]> = match &cfg.box_columns {
        Some(names) => {
            let [x0, y0, x1, y1] = names;
            Some([rows.column(x0)?, rows.column(y0)?, rows.column(x1)?, rows.column(y1)?])
        }
        None => None,
    };

    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut raw = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let row = i + 1;
        let record = record.map_err(|source| DataError::Csv { path: csv_path.to_path_buf(), row, source })?;
        let mut name = rows.field(&record, image_col, row)?.to_string();
        if let (false, Some(ext)) = (has_image_extension(&name), &cfg.image_ext) {
            name = format!("{name}.{}", ext.trim_start_matches('.'));
        }
        if let Some(first) = seen.insert(name.clone(), row) {
            return Err(rows.value_error(row, image_column, format!("image `{name}` is already listed in data row {first}")));
        }
        let path = image_root.join(&name);
        if !path.is_file() {
            return Err(DataError::MissingImage { path, listed_in: csv_path.to_path_buf(), row });
        }
        let label = match layout {
            Layout::ClassName(_) => RawLabel::Name(rows.field(&record, label_cols[0], row)?.into()),
            Layout::OneHot(cols) => RawLabel::Index(one_hot_index(&rows, &record, &label_cols, cols, row)?),
            Layout::MultiLabel { separator, no_finding, .. } => RawLabel::Names(
                rows.field(&record, label_cols[0], row)?
                    .split(*separator)
                    .map(str::trim)
                    .filter(|n| !n.is_empty() && n != no_finding)
                    .map(String::from)
                    .collect(),
            ),
            Layout::BoxesOnly => RawLabel::Unlabelled,
        };
        let bbox = match box_cols {
            Some(cols) => Some(read_box(cfg, &rows, &record, cols, row, &path)?),
            None => None,
        };
        raw.push(RawRow { name, label, bbox });
    }
    Ok((rows, raw))
}

/// The row's box, normalized; pixel boxes by the image's size from its file header.
fn read_box(
    cfg: &DataConfig,
    rows: &CsvRows,
    record: &csv::StringRecord,
    cols: [usize; 4],
    row: usize,
    image: &Path,
) -> Result<[f32; 4], DataError> {
    let mut values = [0.0; 4];
    for (value, &col) in values.iter_mut().zip(&cols) {
        let text = rows.field(record, col, row)?;
        *value = match text.parse::<f64>() {
            Ok(v) if v.is_finite() => v,
            _ => return Err(rows.value_error(row, &rows.headers[col], format!("expected a number, found `{text}`"))),
        };
    }
    let units = cfg.box_units.unwrap_or_default();
    let size = match units {
        BoxUnits::Pixels => image_dimensions(image)?,
        BoxUnits::Normalized => (1, 1),
    };
    normalize_box(values, units, size).map_err(|e| {
        let column = &rows.headers[cols[e.coord]];
        rows.value_error(row, column, e.message)
    })
}

/// The class whose one-hot column holds 1 (ISIC writes "1.0"); any other value than 0 or 1, or
/// not exactly one 1, is an error.
fn one_hot_index(rows: &CsvRows, record: &csv::StringRecord, indices: &[usize], names: &[String], row: usize) -> Result<usize, DataError> {
    let mut hot = Vec::new();
    for (class, (&index, name)) in indices.iter().zip(names).enumerate() {
        let text = rows.field(record, index, row)?;
        match text.parse::<f64>() {
            Ok(1.0) => hot.push(class),
            Ok(0.0) => {}
            _ => {
                return Err(rows.value_error(row, name, format!("expected 0 or 1, found `{text}`")));
            }
        }
    }
    match hot[..] {
        [class] => Ok(class),
        _ => Err(rows.value_error(row, &names.join(","), format!("expected exactly one 1 among the one-hot columns, found {}", hot.len()))),
    }
}

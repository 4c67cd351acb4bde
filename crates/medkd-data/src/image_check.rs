//! The data check before training (`data.bad_images`): every image file of a folder or CSV
//! dataset is decoded once, in parallel, before a run folder is made, so a corrupt file is named
//! at the start rather than when (or whether) the loader reaches it. Files that decoded are
//! remembered by path, size and modification time in a user cache, so checking again is a stat
//! per file.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Instant, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::DataError;
use crate::file_dataset::open_image;

/// What to do with images that do not decode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BadImages {
    /// Stop before training, listing every bad file.
    #[default]
    Error,
    /// Train without them; the run folder lists them (`skipped_images.csv`, summary.json).
    Skip,
}

/// An image file that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadImage {
    /// The dataset id (file name relative to the image root).
    pub id: String,
    /// The 1-based data row of the CSV that lists it; `None` for an image folder.
    pub row: Option<usize>,
    pub cause: String,
}

impl std::fmt::Display for BadImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.row {
            Some(row) => write!(f, "data row {row}: {}: {}", self.id, self.cause),
            None => write!(f, "{}: {}", self.id, self.cause),
        }
    }
}

/// Decoded files by absolute path, size and modification time (ns), in a tab-separated file.
struct DecodedCache {
    path: Option<PathBuf>,
    known: HashSet<(PathBuf, u64, u128)>,
}

/// medkd's cache folder (decoded-image list, downloaded weights): `$MEDKD_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/medkd`, else `~/.cache/medkd`.
pub fn cache_dir() -> Option<PathBuf> {
    let env = |key: &str| std::env::var_os(key).filter(|v| !v.is_empty()).map(PathBuf::from);
    env("MEDKD_CACHE_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("medkd")))
        .or_else(|| env("HOME").map(|d| d.join(".cache").join("medkd")))
}

const CACHE_FILE: &str = "decoded-images.tsv";

impl DecodedCache {
    fn open() -> DecodedCache {
        let path = cache_dir().map(|dir| dir.join(CACHE_FILE));
        let text = path.as_deref().and_then(|p| std::fs::read_to_string(p).ok()).unwrap_or_default();
        // A line that does not parse (a cache from elsewhere, a torn write) is only a miss.
        let known = text
            .lines()
            .filter_map(|line| {
                let mut fields = line.splitn(3, '\t');
                let size = fields.next()?.parse().ok()?;
                let mtime = fields.next()?.parse().ok()?;
                Some((PathBuf::from(fields.next()?), size, mtime))
            })
            .collect();
        DecodedCache { path, known }
    }

    /// Adds `decoded` and rewrites the file (a temporary file renamed, so a reader never sees half
    /// of it). A cache that cannot be written costs only time: said once, not an error.
    fn save(&mut self, decoded: Vec<(PathBuf, u64, u128)>) {
        let Some(path) = &self.path else { return };
        self.known.extend(decoded);
        let mut text = String::new();
        for (file, size, mtime) in &self.known {
            text.push_str(&format!("{size}\t{mtime}\t{}\n", file.display()));
        }
        // One temporary name per process and save, so concurrent writers never share a file.
        static SAVES: AtomicUsize = AtomicUsize::new(0);
        let temporary = path.with_extension(format!("tsv.{}.{}", std::process::id(), SAVES.fetch_add(1, Ordering::Relaxed)));
        let written = std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))
            .and_then(|()| std::fs::File::create(&temporary))
            .and_then(|mut file| file.write_all(text.as_bytes()))
            .and_then(|()| std::fs::rename(&temporary, path));
        if let Err(e) = written {
            eprintln!("note: could not update the image check cache {} ({e}); the next run checks again", path.display());
        }
    }
}

/// The size and modification time of a file, the cache key beside its path.
fn stamp(path: &Path) -> Option<(u64, u128)> {
    let meta = std::fs::metadata(path).ok()?;
    let mtime = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?.as_nanos();
    Some((meta.len(), mtime))
}

/// Decodes every file of `files` (`(absolute path, id, CSV row)`) that the cache does not know,
/// and returns the ones that fail, in the given order.
pub(crate) fn check_files(files: &[(PathBuf, String, Option<usize>)]) -> Vec<BadImage> {
    let mut cache = DecodedCache::open();
    let unknown: Vec<usize> = (0..files.len())
        .filter(|&i| stamp(&files[i].0).is_none_or(|(size, mtime)| !cache.known.contains(&(files[i].0.clone(), size, mtime))))
        .collect();
    if unknown.is_empty() {
        return Vec::new();
    }
    let started = Instant::now();
    let bar = ProgressBar::new(unknown.len() as u64)
        .with_style(ProgressStyle::with_template("checking images {bar:30} {pos}/{len} ({elapsed})").expect("a valid progress template"));
    let results: Vec<Result<(PathBuf, u64, u128), BadImage>> = unknown
        .par_iter()
        .map(|&i| {
            let (path, id, row) = &files[i];
            let checked = match (stamp(path), open_image(path)) {
                (Some((size, mtime)), Ok(_)) => Ok((path.clone(), size, mtime)),
                (None, Ok(_)) => Err("cannot read its size and modification time".to_string()),
                (_, Err(DataError::Image { source, .. })) => Err(source.to_string()),
                (_, Err(e)) => Err(e.to_string()),
            };
            bar.inc(1);
            checked.map_err(|cause| BadImage { id: id.clone(), row: *row, cause: cause.trim().to_string() })
        })
        .collect();
    bar.finish_and_clear();
    let (decoded, bad): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
    eprintln!("checked {} image files in {:.1} s ({} do not decode)", unknown.len(), started.elapsed().as_secs_f64(), bad.len());
    cache.save(decoded.into_iter().map(|r| r.expect("partitioned")).collect());
    bad.into_iter().map(|r| r.expect_err("partitioned")).collect()
}

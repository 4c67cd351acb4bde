//! Resumable, MD5-verified download of the official MedMNIST npz files.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use md5::{Digest, Md5};

use crate::DataError;
use crate::medmnist::medmnist_info;

/// Downloads `name` at `size` (28, 64, 128 or 224) into `dest_dir` and returns the file's path.
///
/// The file is fetched from the official Zenodo URL, or from `{base_url_override}/{file_name}`,
/// into `<file>.part`; an existing `.part` is resumed with a Range request. The result must match
/// the official MD5 before it is renamed into place; a file already in place with the right MD5 is
/// kept as is. `progress(bytes_done, total_bytes)` is called as data arrives.
pub fn download_medmnist(
    name: &str,
    size: usize,
    dest_dir: &Path,
    base_url_override: Option<&str>,
    mut progress: impl FnMut(u64, Option<u64>),
) -> Result<PathBuf, DataError> {
    let info = medmnist_info(&name.to_ascii_lowercase())?;
    let file_name = info.file_name(size)?;
    let expected = info.md5(size)?;
    let url = match base_url_override {
        Some(base) => format!("{}/{file_name}", base.trim_end_matches('/')),
        None => info.url(size)?,
    };
    let dest = dest_dir.join(&file_name);
    if dest.is_file() && file_md5(&dest)? == expected {
        return Ok(dest);
    }
    fs::create_dir_all(dest_dir).map_err(|e| DataError::io(dest_dir, e))?;
    let part = dest_dir.join(format!("{file_name}.part"));

    fetch_resuming(&url, &part, &mut progress)?;

    let actual = file_md5(&part)?;
    if actual != expected {
        fs::remove_file(&part).map_err(|e| DataError::io(&part, e))?;
        return Err(DataError::Md5Mismatch { path: dest, expected: expected.to_string(), actual });
    }
    // Same directory, so the rename is atomic: readers see either no file or the whole file.
    fs::rename(&part, &dest).map_err(|e| DataError::io(&dest, e))?;
    Ok(dest)
}

/// Completes `part` from `url`, continuing after its current length when the server honours Range.
fn fetch_resuming(url: &str, part: &Path, progress: &mut impl FnMut(u64, Option<u64>)) -> Result<(), DataError> {
    let fail = |message: String| DataError::Download { url: url.to_string(), message };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .build()
        .into();
    let mut offset = fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    let mut request = agent.get(url);
    if offset > 0 {
        request = request.header("Range", format!("bytes={offset}-"));
    }
    let mut response = request.call().map_err(|e| fail(e.to_string()))?;
    let status = response.status().as_u16();
    let length = response.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let append = match status {
        206 if offset > 0 => true,
        // A server that ignores Range sends the whole file: start over.
        200 => false,
        // Range past the end: the .part is already complete (its MD5 decides).
        416 if offset > 0 => return Ok(()),
        _ => return Err(fail(format!("HTTP status {status}"))),
    };
    if !append {
        offset = 0;
    }
    let total = length.map(|l| l + offset);
    let mut file =
        OpenOptions::new().create(true).write(true).append(append).truncate(!append).open(part).map_err(|e| DataError::io(part, e))?;
    let mut body = response.body_mut().as_reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut done = offset;
    progress(done, total);
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(fail(format!("connection lost after {done} bytes: {e}"))),
        };
        file.write_all(&buf[..n]).map_err(|e| DataError::io(part, e))?;
        done += n as u64;
        progress(done, total);
    }
    file.sync_all().map_err(|e| DataError::io(part, e))
}

/// Lowercase hex MD5 of a file, read in chunks.
fn file_md5(path: &Path) -> Result<String, DataError> {
    let mut file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(DataError::io(path, e)),
        }
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

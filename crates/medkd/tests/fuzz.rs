//! Fuzzing on the stable toolchain (proptest): every reader of untrusted input gets real files
//! with random byte edits, insertions and truncations (and random `--set` strings), and must
//! return a value or an error, never panic. Each test runs `PROPTEST_CASES` cases (64 by default,
//! seconds in CI); `tools/fuzz.sh MINUTES` soaks them. A panic found becomes a named test here
//! with its minimal input.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use medkd_data::{DataConfig, open_image, open_splits};
use medkd_models::{Arch, Model, ModelSpec, load_weights, save_weights};
use medkd_train::{RunConfig, RunDir, Summary, checkpoint::best_weights};
use proptest::prelude::*;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64);
    // No persistence file: a failure is turned into a named regression case by hand.
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// One change to a file: overwrite a byte, insert bytes, or cut the file at a position (each
/// position taken modulo the current length).
#[derive(Clone, Debug)]
enum Edit {
    Set(usize, u8),
    Insert(usize, Vec<u8>),
    Cut(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        6 => (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Edit::Set(at, byte)),
        2 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16)).prop_map(|(at, bytes)| Edit::Insert(at, bytes)),
        1 => any::<usize>().prop_map(Edit::Cut),
    ]
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    prop::collection::vec(edit(), 1..6)
}

/// `seed` with `edits` applied, positions limited to the first `window` bytes (the headers of
/// large files, where the parsing is).
fn mutate(seed: &[u8], edits: &[Edit], window: usize) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for edit in edits {
        let span = bytes.len().min(window).max(1);
        match edit {
            Edit::Set(at, byte) if !bytes.is_empty() => {
                let at = at % span.min(bytes.len());
                bytes[at] = *byte;
            }
            Edit::Set(..) => {}
            Edit::Insert(at, inserted) => {
                let at = at % (span + 1).min(bytes.len() + 1);
                bytes.splice(at..at, inserted.iter().copied());
            }
            Edit::Cut(at) => bytes.truncate(at % (bytes.len() + 1)),
        }
    }
    bytes
}

static BREASTMNIST: LazyLock<Vec<u8>> = LazyLock::new(|| std::fs::read(repo_root().join("data/breastmnist.npz")).unwrap());
static HAM_ROWS: LazyLock<Vec<(String, String)>> = LazyLock::new(|| {
    let text = std::fs::read_to_string(repo_root().join("../shared/data/ham10000/labels.csv")).unwrap();
    text.lines()
        .skip(1)
        .take(12)
        .map(|l| l.split(',').map(String::from).collect::<Vec<_>>())
        .map(|f| (f[0].clone(), f[1].clone()))
        .collect()
});
static JPEG: LazyLock<Vec<u8>> =
    LazyLock::new(|| std::fs::read(repo_root().join(format!("../shared/data/ham10000/images/{}.jpg", HAM_ROWS[0].0))).unwrap());
static PNG: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let image = image::load_from_memory(&JPEG).unwrap().resize(32, 32, image::imageops::FilterType::Triangle);
    let mut bytes = std::io::Cursor::new(Vec::new());
    image.write_to(&mut bytes, image::ImageFormat::Png).unwrap();
    bytes.into_inner()
});
static SAFETENSORS: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    save_weights(&mobilenet(), &path).unwrap();
    std::fs::read(path).unwrap()
});
static PTH: LazyLock<Vec<u8>> =
    LazyLock::new(|| std::fs::read(repo_root().join("crates/medkd-models/tests/golden/resnet18_stem_bare.pth")).unwrap());
static DEMO_CONFIG: LazyLock<String> =
    LazyLock::new(|| std::fs::read_to_string(repo_root().join("configs/demo/breastmnist.toml")).unwrap());
static SUMMARY: LazyLock<Vec<u8>> = LazyLock::new(|| std::fs::read(repo_root().join("results/demo/breastmnist_s0/summary.json")).unwrap());

fn mobilenet() -> Model {
    Model::new(&ModelSpec { small_input: true, ..ModelSpec::new(Arch::MobileNetV2, 2) }, &medkd_models::test_device()).unwrap()
}

fn written(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A HAM10000 CSV set of 12 images in `dir`, with `labels` as its labels.csv.
fn csv_set(dir: &Path, labels: &[u8]) -> DataConfig {
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    for (id, _) in HAM_ROWS.iter() {
        let target = images.join(format!("{id}.jpg"));
        if !target.exists() {
            std::fs::copy(repo_root().join(format!("../shared/data/ham10000/images/{id}.jpg")), target).unwrap();
        }
    }
    let path = written(dir, "labels.csv", labels);
    let text = format!(
        "format = \"csv\"\npath = {:?}\nimage_dir = \"images\"\nimage_column = \"image_id\"\nimage_ext = \"jpg\"\nlabel_column = \"dx\"\n",
        path.display().to_string()
    );
    toml::from_str(&text).unwrap()
}

fn valid_labels() -> Vec<u8> {
    let mut text = "image_id,dx\n".to_string();
    for (id, dx) in HAM_ROWS.iter() {
        text.push_str(&format!("{id},{dx}\n"));
    }
    text.into_bytes()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn npz_reader_never_panics(edits in edits()) {
        let dir = tempfile::tempdir().unwrap();
        // Edits near the end hit the zip directory; near the start, the first member's header.
        let tail = BREASTMNIST.len().saturating_sub(4096);
        let mut bytes = BREASTMNIST.clone();
        let end = mutate(&bytes[tail..], &edits, usize::MAX);
        bytes.truncate(tail);
        bytes.extend(end);
        let bytes = mutate(&bytes, &edits[..1], 4096);
        let path = written(dir.path(), "breastmnist.npz", &bytes);
        let config: DataConfig = toml::from_str(&format!("format = \"medmnist\"\npath = {:?}", path.display().to_string())).unwrap();
        let _ = open_splits(&config, dir.path());
    }

    #[test]
    fn image_decoding_never_panics(edits in edits(), png in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let (seed, name) = if png { (&*PNG, "x.png") } else { (&*JPEG, "x.jpg") };
        let _ = open_image(&written(dir.path(), name, &mutate(seed, &edits, usize::MAX)));
    }

    #[test]
    fn csv_datasets_never_panic(edits in edits()) {
        let dir = tempfile::tempdir().unwrap();
        let config = csv_set(dir.path(), &mutate(&valid_labels(), &edits, usize::MAX));
        if let Ok(splits) = open_splits(&config, dir.path()) {
            for i in 0..splits.train.len() {
                let _ = (splits.train.image(i), splits.train.target(i), splits.train.id(i));
            }
        }
    }

    #[test]
    fn config_parsing_with_overrides_never_panics(
        edits in edits(),
        overrides in prop::collection::vec("[a-z_.]{0,24}=[ -~]{0,24}", 0..4),
    ) {
        let text = String::from_utf8_lossy(&mutate(DEMO_CONFIG.as_bytes(), &edits, usize::MAX)).into_owned();
        let _ = RunConfig::parse(&text, &overrides);
        let _ = RunConfig::parse(&DEMO_CONFIG, &overrides);
    }

    #[test]
    fn weight_loading_never_panics(edits in edits(), pth in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let path = if pth {
            written(dir.path(), "w.pth", &mutate(&PTH, &edits, usize::MAX))
        } else {
            written(dir.path(), "w.safetensors", &mutate(&SAFETENSORS, &edits, 4096))
        };
        let _ = load_weights(mobilenet(), &path);
    }

    #[test]
    fn run_folder_json_readers_never_panic(edits in edits()) {
        let dir = tempfile::tempdir().unwrap();
        let _ = Summary::read(&written(dir.path(), "summary.json", &mutate(&SUMMARY, &edits, usize::MAX)));
        // best.json beside a checkpoint: the reader checks it before the weights are used.
        let run = dir.path().join("run");
        std::fs::create_dir_all(run.join("checkpoints")).unwrap();
        std::fs::write(run.join("config.toml"), DEMO_CONFIG.as_bytes()).unwrap();
        std::fs::write(run.join("checkpoints/best.safetensors"), b"weights").unwrap();
        let best = br#"{"epoch": 3, "metric": "auc", "value": 0.91, "md5": "0123456789abcdef0123456789abcdef"}"#;
        std::fs::write(run.join("checkpoints/best.json"), mutate(best, &edits, usize::MAX)).unwrap();
        let _ = best_weights(&RunDir::open(&run).unwrap());
    }
}

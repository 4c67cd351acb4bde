//! Every `[data]` section of the repository's configs/ parses, validates and, where its data is
//! present, opens and builds its pipelines.

use std::path::{Path, PathBuf};

use medkd_data::{DataConfig, build_pipelines, open_splits};
use rand::SeedableRng;

#[derive(serde::Deserialize)]
struct DataSection {
    data: DataConfig,
}

fn toml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            toml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "toml") {
            out.push(path);
        }
    }
}

#[test]
fn repository_configs_open() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    toml_files(&repo.join("configs"), &mut files);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let cfg = toml::from_str::<DataSection>(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display())).data;
        cfg.validate().unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        // Config paths are relative to the repository root.
        if !repo.join(&cfg.path).exists() {
            continue;
        }
        let splits = open_splits(&cfg, &repo).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let pipelines = build_pipelines(&cfg, splits.train.as_ref()).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let img = splits.val.image(0).unwrap();
        let (_, [c, _, _]) = pipelines.train.apply_with_shape(&img, &mut rng).unwrap();
        assert_eq!(c, cfg.output_channels(splits.train.info().channels), "{}", file.display());
    }
}

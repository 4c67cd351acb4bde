//! Which medkd made a run: the package version and the git commit it was built from (build.rs),
//! recorded in summary.json, every metrics.jsonl line (a resumed run may finish on another
//! binary), roskd.json and attack.json, so that a result names the code behind it.

use serde_json::{Value, json};

/// The commit the binary was built from, `-dirty` when its sources had uncommitted changes;
/// `None` for a build outside a git checkout.
pub const COMMIT: Option<&str> = option_env!("MEDKD_GIT_COMMIT");

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `{"version": ..., "commit": ...}` for a run's JSON files.
pub fn json() -> Value {
    json!({ "version": VERSION, "commit": COMMIT })
}

//! Sets `MEDKD_GIT_COMMIT` to the commit this crate is built from (`-dirty` when the workspace's
//! sources differ from it), which run folders record (src/build_info.rs). Two git calls do it;
//! a crate for that would add more than it saves. No git, or no checkout: no variable.
use std::path::Path;
use std::process::Command;

/// What decides the binary, relative to this crate: every workspace crate and the manifests.
const SOURCES: [&str; 3] = ["..", "../../Cargo.toml", "../../Cargo.lock"];

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

fn main() {
    for source in SOURCES {
        println!("cargo:rerun-if-changed={source}");
    }
    let Some(git_dir) = git(&["rev-parse", "--absolute-git-dir"]) else { return };
    // A commit moves HEAD or a branch ref (loose, or packed after `git gc`).
    for reference in ["HEAD", "refs/heads", "packed-refs"] {
        let path = Path::new(&git_dir).join(reference);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    let Some(commit) = git(&["rev-parse", "--short=12", "HEAD"]) else { return };
    // `git diff --quiet` fails when the sources differ from HEAD.
    let clean = git(&[&["diff", "--quiet", "HEAD", "--"][..], &SOURCES].concat()).is_some();
    println!("cargo:rustc-env=MEDKD_GIT_COMMIT={commit}{}", if clean { "" } else { "-dirty" });
}

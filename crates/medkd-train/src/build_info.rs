//! Which medkd made a run, and on which CPU. The package version and the git commit it was built
//! from (build.rs) go into summary.json, roskd.json, attack.json and every metrics.jsonl line (a
//! resumed run may finish on another binary), so that a result names the code behind it. The CPU
//! (`machine()`) goes into the three JSON files only, because the same binary, seed and data
//! train different weights on two CPU kinds (BENCHMARKS.md, SSD-KD ablations).

use serde_json::{Value, json};

/// The commit the binary was built from, `-dirty` when its sources had uncommitted changes;
/// `None` for a build outside a git checkout.
pub const COMMIT: Option<&str> = option_env!("MEDKD_GIT_COMMIT");

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `{"version": ..., "commit": ..., "machine": ...}` for a run's JSON files.
pub fn json() -> Value {
    json!({ "version": VERSION, "commit": COMMIT, "machine": machine() })
}

/// The CPU kind and thread count a run computes with: `/proc/cpuinfo`'s name, family and model
/// (Linux; null elsewhere), the widest vector instructions the CPU offers, and rayon's threads.
pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    // The first processor's block names the CPU; every core of a machine is the same kind.
    let field = |name: &str| {
        cpuinfo
            .lines()
            .take_while(|line| !line.trim().is_empty())
            .filter_map(|line| line.split_once(':'))
            .find(|(key, _)| key.trim() == name)
            .map(|(_, value)| value.trim().to_string())
    };
    json!({
        "cpu_model": field("model name"),
        "cpu_family": field("cpu family"),
        "cpu_model_number": field("model"),
        "simd": simd(),
        "threads": rayon::current_num_threads(),
        "cores": std::thread::available_parallelism().map(|n| n.get()).ok(),
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
    })
}

/// The widest vector instruction set the CPU offers, as run-time kernel selection sees it: gemm
/// (every matrix product and convolution) runs its AVX-512 kernels on `avx512f` (where they are
/// built in, medkd-models' `avx512` feature), its AVX2+FMA ones on `avx2+fma`, so this is the
/// kernel path a run took.
#[cfg(target_arch = "x86_64")]
fn simd() -> &'static str {
    if medkd_models::AVX512_KERNELS && std::arch::is_x86_feature_detected!("avx512f") {
        "avx512f"
    } else if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        "avx2+fma"
    } else {
        "sse2"
    }
}

#[cfg(target_arch = "aarch64")]
fn simd() -> &'static str {
    "neon"
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn simd() -> &'static str {
    "none"
}

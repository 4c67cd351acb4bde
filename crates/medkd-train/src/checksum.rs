//! Checksums of the checkpoint files medkd writes, checked when they are read back so that a
//! changed or damaged file is refused. XXH3-128: MD5 took 8% of the README demo's CPU time
//! (its checkpoints are large beside its training), XXH3 hashes the same bytes at memory speed.
//! Runs written before carry bare MD5 hex strings, which are checked as MD5.

use md5::{Digest, Md5};
use xxhash_rust::xxh3::xxh3_128;

const XXH3: &str = "xxh3-128:";

/// The checksum recorded for `bytes`.
pub fn checksum(bytes: &[u8]) -> String {
    format!("{XXH3}{:032x}", xxh3_128(bytes))
}

/// Whether `bytes` are what `recorded` (a [`checksum`], or an older run's MD5) was taken of.
pub fn matches(bytes: &[u8], recorded: &str) -> bool {
    if recorded.starts_with(XXH3) { checksum(bytes) == recorded } else { md5_hex(bytes) == recorded.trim() }
}

/// MD5 as lowercase hex, for older runs and the teacher heads' `.md5` sidecars.
pub fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// XXH3-128 and MD5 of "abc" as the reference implementations give them (python-xxhash 4.1.0
    /// on libxxhash 0.8.4, `md5sum`); a recorded value matches its own bytes only.
    #[test]
    fn checksums_are_the_reference_values_and_match_only_their_bytes() {
        assert_eq!(checksum(b"abc"), "xxh3-128:06b05ab6733a618578af5f94892f3950");
        assert_eq!(md5_hex(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
        assert!(matches(b"abc", &checksum(b"abc")) && !matches(b"abd", &checksum(b"abc")));
        assert!(matches(b"abc", "900150983cd24fb0d6963f7d28e17f72") && !matches(b"abd", "900150983cd24fb0d6963f7d28e17f72"));
    }
}

//! Checksums of the checkpoint files medkd writes, checked when they are read back so that a
//! changed or damaged file is refused. XXH3-128: MD5 took 8% of the README demo's CPU time
//! (its checkpoints are large beside its training), XXH3 hashes the same bytes at memory speed.
//! Runs written before carry bare MD5 hex strings, which are checked as MD5.

use std::fs::File;
use std::io::{BufReader, Write};
use std::path::Path;

use md5::{Digest, Md5};
use xxhash_rust::xxh3::{Xxh3, xxh3_128};

use crate::TrainError;

const XXH3: &str = "xxh3-128:";

/// The checksum recorded for `bytes`.
pub fn checksum(bytes: &[u8]) -> String {
    named(xxh3_128(bytes))
}

fn named(digest: u128) -> String {
    format!("{XXH3}{digest:032x}")
}

/// A writer that passes bytes on to `inner` and takes their [`checksum`] on the way.
pub struct Hashing<W> {
    inner: W,
    hasher: Xxh3,
}

impl<W: Write> Hashing<W> {
    pub fn new(inner: W) -> Hashing<W> {
        Hashing { inner, hasher: Xxh3::new() }
    }

    /// The checksum of every byte written so far.
    pub fn checksum(&self) -> String {
        named(self.hasher.digest128())
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(bytes)?;
        self.hasher.update(&bytes[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The [`checksum`] of the file at `path`, read a slice at a time (a file just written is read
/// from the page cache).
pub fn file_checksum(path: &Path) -> Result<String, TrainError> {
    let mut file = BufReader::with_capacity(1 << 20, File::open(path).map_err(|e| TrainError::io(path, e))?);
    let mut hashing = Hashing::new(std::io::sink());
    std::io::copy(&mut file, &mut hashing).map_err(|e| TrainError::io(path, e))?;
    Ok(hashing.checksum())
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

    #[test]
    fn files_read_and_bytes_written_in_slices_have_the_checksum_of_their_bytes() {
        // Longer than the read buffer and not a multiple of it, so the last slice is partial.
        let bytes: Vec<u8> = (0..(3 << 20) + 12345).map(|i: u32| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file.bin");
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(file_checksum(&path).unwrap(), checksum(&bytes));
        assert!(file_checksum(&dir.path().join("missing")).is_err());
        let mut hashing = Hashing::new(Vec::new());
        for chunk in bytes.chunks(1000) {
            hashing.write_all(chunk).unwrap();
        }
        assert_eq!(hashing.checksum(), checksum(&bytes));
        assert_eq!(hashing.inner, bytes);
    }
}

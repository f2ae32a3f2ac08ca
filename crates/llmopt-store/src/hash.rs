//! SHA-256 of model files, read in 1 MiB pieces. The store caches results by (path, size,
//! modification time) — see [`crate::Store::file_sha256`] — because hashing a multi-gigabyte model
//! takes seconds.

use std::{fs::File, io::Read, path::Path, time::UNIX_EPOCH};

use sha2::{Digest, Sha256};

/// A file's hash and the stamp it was taken at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileHash {
    /// Lowercase hex SHA-256.
    pub sha256: String,
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch (negative before it).
    pub mtime_ns: i64,
    /// Whether the hash came from the store's cache instead of reading the file.
    pub cached: bool,
}

/// Size and modification time: when either changes, a cached hash is stale.
pub(crate) fn stamp(path: &Path) -> std::io::Result<(u64, i64)> {
    let meta = std::fs::metadata(path)?;
    let mtime = meta.modified()?;
    let ns = match mtime.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
    };
    Ok((meta.len(), ns))
}

/// Lowercase hex SHA-256 of the file's bytes, read now ([`crate::Store::file_sha256`] caches it).
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        let dir = std::env::temp_dir().join(format!("llmopt-store-hash-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("abc");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(
            sha256_file(&p).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // Longer than two read buffers (the digest from Python's hashlib).
        std::fs::write(&p, vec![b'a'; 3_000_000]).unwrap();
        assert_eq!(
            sha256_file(&p).unwrap(),
            "2a152c894398719c0570f83fac34ac03a0f6e8e474b995c2403aa5434f7b9dd4"
        );
        assert_eq!(stamp(&p).unwrap().0, 3_000_000);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

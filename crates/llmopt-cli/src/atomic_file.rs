//! Files that appear whole or not at all: written under a temporary name beside the destination
//! and renamed over it once complete. Dropped before [`AtomicFile::commit`] (an error on the way),
//! the temporary file is removed, and the destination is untouched.

use std::{
    fs::File,
    io::BufWriter,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};

/// A file being written to a temporary name beside its destination.
#[derive(Debug)]
pub struct AtomicFile {
    tmp: PathBuf,
    dest: PathBuf,
    out: Option<BufWriter<File>>,
}

impl AtomicFile {
    /// Creates `.NAME.llmopt-tmp-PID` in `dest`'s directory (so the rename stays on one file
    /// system). Fails at once when that directory cannot be written or `dest` is a directory.
    pub fn create(dest: &Path) -> Result<Self> {
        if dest.is_dir() {
            anyhow::bail!("cannot write {}: it is a directory", dest.display());
        }
        let name = dest
            .file_name()
            .with_context(|| format!("cannot write {}: no file name", dest.display()))?;
        let dir = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let tmp =
            dir.join(format!(".{}.llmopt-tmp-{}", name.to_string_lossy(), std::process::id()));
        let file = File::create(&tmp)
            .with_context(|| format!("cannot create {} (for {})", tmp.display(), dest.display()))?;
        let out = Some(BufWriter::with_capacity(1 << 20, file));
        Ok(Self { tmp, dest: dest.to_path_buf(), out })
    }

    /// The writer (buffered).
    pub fn writer(&mut self) -> &mut BufWriter<File> {
        self.out.as_mut().expect("an AtomicFile is writable until it is committed")
    }

    /// The temporary file's path.
    pub fn temp_path(&self) -> &Path {
        &self.tmp
    }

    /// Flushes, syncs to disk and renames the file to its destination.
    pub fn commit(mut self) -> Result<()> {
        let out = self.out.take().expect("committed once");
        let what = || format!("cannot write {}", self.tmp.display());
        let file = out.into_inner().map_err(|e| e.into_error()).with_context(what)?;
        file.sync_all().with_context(what)?;
        drop(file);
        std::fs::rename(&self.tmp, &self.dest).with_context(|| {
            format!("cannot rename {} to {}", self.tmp.display(), self.dest.display())
        })?;
        self.tmp = PathBuf::new();
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            self.out = None;
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn appears_on_commit_and_leaves_nothing_when_dropped() {
        let dir = std::env::temp_dir().join(format!("llmopt-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let dest = dir.join("out.bin");
        std::fs::write(&dest, b"old").unwrap();

        let mut f = AtomicFile::create(&dest).unwrap();
        f.writer().write_all(b"half").unwrap();
        let tmp = f.temp_path().to_path_buf();
        assert!(tmp.exists());
        drop(f);
        assert!(!tmp.exists());
        assert_eq!(std::fs::read(&dest).unwrap(), b"old");

        let mut f = AtomicFile::create(&dest).unwrap();
        f.writer().write_all(b"new").unwrap();
        f.commit().unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "no temporary file left");

        assert!(AtomicFile::create(&dir).is_err(), "a directory");
        assert!(AtomicFile::create(&dir.join("missing/out.bin")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

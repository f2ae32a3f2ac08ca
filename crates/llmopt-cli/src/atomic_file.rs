//! Files that appear whole or not at all: written under a temporary name beside the destination
//! and renamed over it once complete. Dropped before [`AtomicFile::commit`] (an error on the way),
//! the temporary file is removed, and the destination is untouched; on Ctrl-C (SIGINT, SIGTERM)
//! a signal handler removes it before the process ends as the signal says.

use std::{
    fs::File,
    io::{BufWriter, Write},
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
        // Registered first, so no signal can come between the file's creation and its handler.
        interrupt::remove_on_signal(&tmp);
        let file = File::create(&tmp).map_err(|e| {
            interrupt::keep(&tmp);
            anyhow::Error::new(e).context(format!(
                "cannot create {} (for {})",
                tmp.display(),
                dest.display()
            ))
        })?;
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
        interrupt::keep(&self.tmp);
        self.tmp = PathBuf::new();
        Ok(())
    }
}

/// Writes `bytes` to `path` whole or not at all (an [`AtomicFile`] written and committed).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = AtomicFile::create(path)?;
    f.writer().write_all(bytes).with_context(|| format!("cannot write {}", path.display()))?;
    f.commit()
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            self.out = None;
            let _ = std::fs::remove_file(&self.tmp);
            interrupt::keep(&self.tmp);
        }
    }
}

/// Removing temporary files when the process is interrupted. The handler may only call
/// async-signal-safe functions: it reads the registered paths from atomics and `unlink`s them,
/// then restores the default action and raises the signal again (so the exit status is the
/// signal's). Registered paths are leaked C strings, never freed, so the handler can never read
/// freed memory; a run registers a few.
#[cfg(unix)]
mod interrupt {
    use std::{
        ffi::CString,
        os::unix::ffi::OsStrExt,
        path::Path,
        ptr::null_mut,
        sync::{
            atomic::{AtomicPtr, Ordering},
            Once,
        },
    };

    const SLOTS: usize = 8;
    static PATHS: [AtomicPtr<libc::c_char>; SLOTS] = [const { AtomicPtr::new(null_mut()) }; SLOTS];
    static INSTALL: Once = Once::new();

    extern "C" fn on_signal(sig: libc::c_int) {
        for slot in &PATHS {
            let p = slot.load(Ordering::Acquire);
            if !p.is_null() {
                // SAFETY: a non-null slot holds a leaked, NUL-terminated C string (never freed).
                unsafe { libc::unlink(p) };
            }
        }
        // SAFETY: signal and raise are async-signal-safe; the default action ends the process.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::raise(sig);
        }
    }

    /// Registers `path` for removal on SIGINT/SIGTERM (best effort: with every slot taken it is
    /// left to the caller's error path).
    pub fn remove_on_signal(path: &Path) {
        INSTALL.call_once(|| {
            for sig in [libc::SIGINT, libc::SIGTERM] {
                let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
                // SAFETY: installs a handler that only calls async-signal-safe functions.
                unsafe { libc::signal(sig, handler) };
            }
        });
        let Ok(c) = CString::new(path.as_os_str().as_bytes()) else { return };
        let p = c.into_raw();
        if !PATHS
            .iter()
            .any(|s| s.compare_exchange(null_mut(), p, Ordering::AcqRel, Ordering::Acquire).is_ok())
        {
            // No free slot: nothing else holds `p`, so it can be freed.
            // SAFETY: `p` came from `CString::into_raw` just above and was never shared.
            drop(unsafe { CString::from_raw(p) });
        }
    }

    /// Forgets `path` (renamed into place, or already removed).
    pub fn keep(path: &Path) {
        let bytes = path.as_os_str().as_bytes();
        for slot in &PATHS {
            let p = slot.load(Ordering::Acquire);
            // SAFETY: a non-null slot holds a leaked, NUL-terminated C string (never freed).
            if !p.is_null() && unsafe { std::ffi::CStr::from_ptr(p) }.to_bytes() == bytes {
                // Leaked on purpose: the handler may be reading it right now.
                slot.store(null_mut(), Ordering::Release);
            }
        }
    }
}

#[cfg(not(unix))]
mod interrupt {
    pub fn remove_on_signal(_: &std::path::Path) {}
    pub fn keep(_: &std::path::Path) {}
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

    #[test]
    fn write_atomic_replaces_the_file_and_leaves_nothing_else() {
        let dir = std::env::temp_dir().join(format!("llmopt-write-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("r.html");
        std::fs::write(&path, "old").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        let err = write_atomic(&dir.join("missing/r.html"), b"x").unwrap_err();
        assert!(format!("{err:#}").contains("cannot create"), "{err:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

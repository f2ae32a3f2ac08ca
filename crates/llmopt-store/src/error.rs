//! Errors of the run store; each names the store file it concerns. The underlying SQLite or I/O
//! error is part of the message (as `cause`, not as a `source`), so a report that prints the whole
//! chain does not say it twice.

use std::path::PathBuf;

/// What can go wrong opening, migrating, reading or writing a run store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `open_existing` on a path where no file is.
    #[error("no run store at {path}")]
    Missing { path: PathBuf },
    /// The file exists but is not an SQLite database.
    #[error("{path} is not a run store (not an SQLite database)")]
    NotADatabase { path: PathBuf },
    /// The store was written by a newer llmopt whose schema this one does not know.
    #[error(
        "the run store {path} has schema version {found}, newer than the {supported} this llmopt knows"
    )]
    TooNew { path: PathBuf, found: u32, supported: u32 },
    /// A migration failed; the store is left at the version before it.
    #[error("cannot migrate the run store {path} to schema version {version}: {cause}")]
    Migration { path: PathBuf, version: u32, cause: rusqlite::Error },
    /// Any other SQLite failure (locked, read-only, disk full, ...).
    #[error("run store {path}: {cause}")]
    Sql { path: PathBuf, cause: rusqlite::Error },
    /// No run has this id.
    #[error("no run with id {id} in {path}")]
    UnknownRun { id: i64, path: PathBuf },
    /// A stored value that this version cannot read (e.g. an unknown status word).
    #[error("run store {path}: run {id} has an invalid {field}: {value:?}")]
    Corrupt { path: PathBuf, id: i64, field: &'static str, value: String },
    /// Reading a file to hash it, or creating the store's folder.
    #[error("cannot access {path}: {cause}")]
    Io { path: PathBuf, cause: std::io::Error },
}

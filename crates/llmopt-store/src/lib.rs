//! The run store: every measuring run (bench, profile, eval, quantize) recorded with what makes it
//! reproducible and comparable — the command line, the model file's SHA-256, the host, the llmopt
//! version and commit, timestamps, typed metrics and the run's full JSON report — in one embedded
//! SQLite file.
//!
//! Key design choices:
//! - **The schema is versioned** by SQLite's `PRAGMA user_version` and moved forward by an
//!   append-only list of migrations ([`SCHEMA_VERSION`] is its length). A store written by any older
//!   version opens (and is migrated); one written by a newer version is refused with
//!   [`StoreError::TooNew`] instead of being misread.
//! - **Metrics carry their own comparison rule**: a value, an optional standard error, a unit and
//!   which direction is better, so [`Comparison`] can say better / worse / within noise without
//!   knowing what a metric means.
//! - **Hashing is cached**: a model file's SHA-256 is kept by (path, size, modification time), so a
//!   multi-gigabyte model is read once, not on every run.
//! - The library takes paths and values; where the store lives and whether a failure to record may
//!   stop a run are the caller's decisions (the CLI warns and goes on).

mod compare;
mod csv;
mod error;
mod hash;
mod host;
mod run;
mod schema;
mod store;
mod time;

pub use compare::{Comparison, MetricComparison, Verdict};
pub use csv::write_csv;
pub use error::StoreError;
pub use hash::{sha256_file, FileHash};
pub use host::Host;
pub use run::{Better, Metric, ModelFile, Run, RunRecord, Status};
pub use schema::SCHEMA_VERSION;
pub use store::{RunFilter, Store};
pub use time::rfc3339_utc;

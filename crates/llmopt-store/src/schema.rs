//! The store's schema, as an append-only list of migrations. `PRAGMA user_version` holds how many
//! have run; opening applies the missing ones in one transaction, and refuses a store whose
//! version is past the end of the list (written by a newer llmopt).
//!
//! Never edit a migration that has shipped: add one at the end (e.g. `ALTER TABLE runs ADD COLUMN
//! ...`), so every older store reaches the same schema by the same steps.

use std::path::Path;

use rusqlite::{Connection, ErrorCode, TransactionBehavior};

use crate::StoreError;

/// Migration `i` moves the schema from version `i` to `i + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[V1];

/// The schema version this llmopt writes: the number of migrations.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Version 1: runs, their metrics, and the file-hash cache.
const V1: &str = "
CREATE TABLE runs (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    kind                TEXT    NOT NULL,
    argv                TEXT    NOT NULL,  -- JSON array of strings
    model_path          TEXT,
    model_sha256        TEXT,
    model_size          INTEGER,
    host_cpu            TEXT    NOT NULL,
    host_logical_cores  INTEGER NOT NULL,
    host_physical_cores INTEGER NOT NULL,
    host_memory_bytes   INTEGER NOT NULL,
    host_os             TEXT    NOT NULL,
    host_cpu_features   TEXT    NOT NULL,  -- space-separated
    llmopt_version      TEXT    NOT NULL,
    llmopt_commit       TEXT    NOT NULL,
    started_at          TEXT    NOT NULL,  -- RFC 3339, UTC
    finished_at         TEXT    NOT NULL,
    status              TEXT    NOT NULL,  -- ok | failed
    report              TEXT               -- the run's JSON report
);
CREATE INDEX runs_kind ON runs (kind);
CREATE TABLE metrics (
    run_id   INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,             -- order within the run
    name     TEXT    NOT NULL,
    value    REAL,                         -- NULL when the run produced no finite value
    stderr   REAL,
    unit     TEXT    NOT NULL,
    better   TEXT    NOT NULL CHECK (better IN ('higher', 'lower', 'none')),
    PRIMARY KEY (run_id, name)
);
CREATE TABLE file_hashes (
    path      TEXT    PRIMARY KEY,         -- canonical path
    size      INTEGER NOT NULL,
    mtime_ns  INTEGER NOT NULL,
    sha256    TEXT    NOT NULL
);
";

fn user_version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
}

/// Brings the store at `path` up to `migrations.len()`, returning the version it was at.
pub(crate) fn migrate(
    conn: &mut Connection,
    path: &Path,
    migrations: &[&str],
) -> Result<u32, StoreError> {
    let supported = migrations.len() as u32;
    let sql = |cause| StoreError::Sql { path: path.to_path_buf(), cause };
    let found = user_version(conn).map_err(|e| match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => StoreError::NotADatabase { path: path.to_path_buf() },
        _ => sql(e),
    })?;
    let too_new = |found| StoreError::TooNew { path: path.to_path_buf(), found, supported };
    if found > supported {
        return Err(too_new(found));
    }
    if found == supported {
        return Ok(found);
    }
    // Take the write lock before reading the version again, so two processes opening a new store
    // at once do not both run migration 1.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql)?;
    let current = user_version(&tx).map_err(sql)?;
    if current > supported {
        return Err(too_new(current));
    }
    for (i, step) in migrations.iter().enumerate().skip(current as usize) {
        let version = i as u32 + 1;
        let failed = |cause| StoreError::Migration { path: path.to_path_buf(), version, cause };
        tx.execute_batch(step).map_err(failed)?;
        tx.pragma_update(None, "user_version", version).map_err(failed)?;
    }
    tx.commit().map_err(sql)?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use llmopt_testdata::TempDir;

    use super::*;
    use crate::{Better, Host, Metric, RunRecord, Status, Store};

    fn record() -> RunRecord {
        RunRecord {
            kind: "bench".into(),
            argv: vec!["llmopt".into(), "bench".into()],
            model: None,
            host: Host::detect(),
            llmopt_version: "0.1.0".into(),
            llmopt_commit: "abc1234".into(),
            started_at: "2025-01-01T00:00:00Z".into(),
            finished_at: "2025-01-01T00:00:05Z".into(),
            status: Status::Ok,
            metrics: vec![Metric::new("pp16", 100.0, "t/s", Better::Higher)],
            report: Some("{}".into()),
        }
    }

    fn version_on_disk(path: &Path) -> u32 {
        user_version(&Connection::open(path).unwrap()).unwrap()
    }

    #[test]
    fn an_empty_file_is_migrated_and_reopens() {
        let tmp = TempDir::new("store-empty");
        let path = tmp.path().join("runs.sqlite");
        std::fs::write(&path, b"").unwrap();
        let mut store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        let id = store.insert(&record()).unwrap();
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(store.get(id).unwrap().record.metrics, record().metrics);
        // A missing file in a missing folder is created.
        let nested = tmp.path().join("a/b/runs.sqlite");
        Store::open(&nested).unwrap();
        assert_eq!(version_on_disk(&nested), SCHEMA_VERSION);
    }

    #[test]
    fn a_store_from_a_newer_llmopt_is_refused() {
        let tmp = TempDir::new("store-newer");
        let path = tmp.path().join("runs.sqlite");
        Store::open(&path).unwrap();
        Connection::open(&path).unwrap().pragma_update(None, "user_version", 99).unwrap();
        let err = Store::open(&path).unwrap_err();
        assert!(
            matches!(err, StoreError::TooNew { found: 99, supported: SCHEMA_VERSION, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("newer"), "{err}");
        assert_eq!(version_on_disk(&path), 99, "a refused store is left as it was");
    }

    #[test]
    fn an_older_store_opens_after_a_new_migration() {
        let tmp = TempDir::new("store-migrate");
        let path = tmp.path().join("runs.sqlite");
        let id = Store::open(&path).unwrap().insert(&record()).unwrap();
        let mut next: Vec<&str> = MIGRATIONS.to_vec();
        next.push("ALTER TABLE runs ADD COLUMN note TEXT NOT NULL DEFAULT 'none';");
        let store = Store::open_with(&path, &next).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION + 1);
        assert_eq!(store.get(id).unwrap().record.kind, "bench", "old rows survive");
        let note: String = store
            .conn
            .query_row("SELECT note FROM runs WHERE id = ?1", [id], |r| r.get(0))
            .unwrap();
        assert_eq!(note, "none");
        drop(store);
        // This build, which lacks that migration, now refuses the store instead of misreading it.
        assert!(matches!(Store::open(&path), Err(StoreError::TooNew { .. })));
    }

    #[test]
    fn a_failed_migration_changes_nothing() {
        let tmp = TempDir::new("store-badmig");
        let path = tmp.path().join("runs.sqlite");
        Store::open(&path).unwrap();
        let mut next: Vec<&str> = MIGRATIONS.to_vec();
        next.push("CREATE TABLE extra (x INTEGER); THIS IS NOT SQL;");
        let err = Store::open_with(&path, &next).unwrap_err();
        assert!(
            matches!(err, StoreError::Migration { version, .. } if version == SCHEMA_VERSION + 1)
        );
        assert_eq!(version_on_disk(&path), SCHEMA_VERSION);
        let extra: i64 = Connection::open(&path)
            .unwrap()
            .query_row("SELECT count(*) FROM sqlite_master WHERE name = 'extra'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(extra, 0, "the failed migration's first statement was rolled back");
    }

    #[test]
    fn a_file_that_is_not_sqlite_is_named() {
        let tmp = TempDir::new("store-notdb");
        let path = tmp.path().join("runs.sqlite");
        std::fs::write(&path, vec![b'x'; 4096]).unwrap();
        let err = Store::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::NotADatabase { .. }), "{err}");
        let missing = tmp.path().join("none.sqlite");
        assert!(matches!(Store::open_existing(&missing), Err(StoreError::Missing { .. })));
        assert!(!missing.exists(), "open_existing creates nothing");
    }
}

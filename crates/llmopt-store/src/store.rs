//! [`Store`]: one SQLite connection to a run store file, and the queries on it.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::{
    hash::{self, FileHash},
    schema::{self, MIGRATIONS},
    Better, Host, Metric, ModelFile, Run, RunRecord, Status, StoreError,
};

/// How long a writer waits for another process that holds the store's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Which runs [`Store::list`] returns.
#[derive(Clone, Debug, Default)]
pub struct RunFilter {
    /// Only runs whose model path contains this text.
    pub model: Option<String>,
    /// Only runs of this kind, or of its sub-kinds (`eval` matches `eval.tasks`).
    pub kind: Option<String>,
    /// At most this many, newest first.
    pub limit: Option<usize>,
}

/// An open run store.
#[derive(Debug)]
pub struct Store {
    pub(crate) conn: Connection,
    path: PathBuf,
}

const RUN_COLUMNS: &str = "id, kind, argv, model_path, model_sha256, model_size, host_cpu, \
    host_logical_cores, host_physical_cores, host_memory_bytes, host_os, host_cpu_features, \
    llmopt_version, llmopt_commit, started_at, finished_at, status";

impl Store {
    /// Opens the store at `path`, creating it (and its folder) when missing and migrating it when
    /// an older llmopt wrote it.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path.as_ref(), MIGRATIONS)
    }

    /// Opens a store that must already exist ([`StoreError::Missing`] otherwise), for commands that
    /// only read.
    pub fn open_existing(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        if !path.is_file() {
            return Err(StoreError::Missing { path: path.to_path_buf() });
        }
        Self::open_with(path, MIGRATIONS)
    }

    pub(crate) fn open_with(path: &Path, migrations: &[&str]) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
            std::fs::create_dir_all(dir)
                .map_err(|cause| StoreError::Io { path: dir.to_path_buf(), cause })?;
        }
        let sql = |cause| StoreError::Sql { path: path.to_path_buf(), cause };
        let mut conn = Connection::open(path).map_err(sql)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
        conn.pragma_update(None, "foreign_keys", true).map_err(sql)?;
        schema::migrate(&mut conn, path, migrations)?;
        Ok(Self { conn, path: path.to_path_buf() })
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sql(&self, cause: rusqlite::Error) -> StoreError {
        StoreError::Sql { path: self.path.clone(), cause }
    }

    /// The schema version of the open store (after migration, [`crate::SCHEMA_VERSION`]).
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        self.conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(|e| self.sql(e))
    }

    /// Stores a run with its metrics (all or nothing) and returns its id. Metric names must be
    /// unique within the run.
    pub fn insert(&mut self, run: &RunRecord) -> Result<i64, StoreError> {
        let path = self.path.clone();
        let sql = |cause| StoreError::Sql { path: path.clone(), cause };
        let tx = self.conn.transaction().map_err(sql)?;
        let argv = serde_json::Value::from(run.argv.clone()).to_string();
        let model = run.model.as_ref();
        tx.execute(
            "INSERT INTO runs (kind, argv, model_path, model_sha256, model_size, host_cpu, \
             host_logical_cores, host_physical_cores, host_memory_bytes, host_os, \
             host_cpu_features, llmopt_version, llmopt_commit, started_at, finished_at, status, \
             report) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, \
             ?16, ?17)",
            params![
                run.kind,
                argv,
                model.map(|m| &m.path),
                model.map(|m| &m.sha256),
                model.map(|m| to_i64(m.size)),
                run.host.cpu,
                run.host.logical_cores,
                run.host.physical_cores,
                to_i64(run.host.memory_bytes),
                run.host.os,
                run.host.cpu_features.join(" "),
                run.llmopt_version,
                run.llmopt_commit,
                run.started_at,
                run.finished_at,
                run.status.as_str(),
                run.report,
            ],
        )
        .map_err(sql)?;
        let id = tx.last_insert_rowid();
        {
            let mut insert = tx
                .prepare(
                    "INSERT INTO metrics (run_id, position, name, value, stderr, unit, better) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(sql)?;
            for (i, m) in run.metrics.iter().enumerate() {
                let value = (!m.value.is_nan()).then_some(m.value);
                insert
                    .execute(params![id, i, m.name, value, m.stderr, m.unit, m.better.as_str()])
                    .map_err(sql)?;
            }
        }
        tx.commit().map_err(sql)?;
        Ok(id)
    }

    /// The run with this id, its report included.
    pub fn get(&self, id: i64) -> Result<Run, StoreError> {
        let q = format!("SELECT {RUN_COLUMNS}, report FROM runs WHERE id = ?1");
        let row = self
            .conn
            .query_row(&q, [id], |r| Ok((RawRun::from_row(r)?, r.get::<_, Option<String>>(17)?)))
            .optional()
            .map_err(|e| self.sql(e))?;
        let Some((raw, report)) = row else {
            return Err(StoreError::UnknownRun { id, path: self.path.clone() });
        };
        let mut run = self.finish(raw)?;
        run.record.report = report;
        Ok(run)
    }

    /// Runs that match `filter`, newest first, with their metrics but without their reports
    /// (`report` is `None`; [`Store::get`] loads it).
    pub fn list(&self, filter: &RunFilter) -> Result<Vec<Run>, StoreError> {
        let q = format!(
            "SELECT {RUN_COLUMNS} FROM runs \
             WHERE (?1 IS NULL OR instr(model_path, ?1) > 0) \
               AND (?2 IS NULL OR kind = ?2 OR substr(kind, 1, length(?2) + 1) = ?2 || '.') \
             ORDER BY id DESC LIMIT ?3"
        );
        let limit = filter.limit.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
        let raws = {
            let mut stmt = self.conn.prepare(&q).map_err(|e| self.sql(e))?;
            let rows = stmt
                .query_map(params![filter.model, filter.kind, limit], RawRun::from_row)
                .map_err(|e| self.sql(e))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.sql(e))?
        };
        raws.into_iter().map(|raw| self.finish(raw)).collect()
    }

    /// Decodes the stored words and loads the metrics of a run row.
    fn finish(&self, raw: RawRun) -> Result<Run, StoreError> {
        let corrupt = |field, value: &str| StoreError::Corrupt {
            path: self.path.clone(),
            id: raw.id,
            field,
            value: value.to_string(),
        };
        let argv: Vec<String> =
            serde_json::from_str(&raw.argv).map_err(|_| corrupt("argv", &raw.argv))?;
        let status = Status::parse(&raw.status).ok_or_else(|| corrupt("status", &raw.status))?;
        let mut stmt = self
            .conn
            .prepare(
                "SELECT name, value, stderr, unit, better FROM metrics WHERE run_id = ?1 \
                 ORDER BY position",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([raw.id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<f64>>(1)?,
                    r.get::<_, Option<f64>>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })
            .map_err(|e| self.sql(e))?;
        let mut metrics = Vec::new();
        for row in rows {
            let (name, value, stderr, unit, better) = row.map_err(|e| self.sql(e))?;
            let better =
                Better::parse(&better).ok_or_else(|| corrupt("metric direction", &better))?;
            metrics.push(Metric { name, value: value.unwrap_or(f64::NAN), stderr, unit, better });
        }
        Ok(Run {
            id: raw.id,
            record: RunRecord {
                kind: raw.kind,
                argv,
                model: raw.model,
                host: raw.host,
                llmopt_version: raw.llmopt_version,
                llmopt_commit: raw.llmopt_commit,
                started_at: raw.started_at,
                finished_at: raw.finished_at,
                status,
                metrics,
                report: None,
            },
        })
    }

    /// SHA-256 of the file at `path`, from the cache when its size and modification time are the
    /// ones the cached hash was taken at, else read (and cached, if the file did not change while
    /// it was read).
    pub fn file_sha256(&mut self, path: &Path) -> Result<FileHash, StoreError> {
        let io = |cause| StoreError::Io { path: path.to_path_buf(), cause };
        let canonical = std::fs::canonicalize(path).map_err(io)?;
        let key = canonical.to_string_lossy().into_owned();
        let (size, mtime_ns) = hash::stamp(&canonical).map_err(io)?;
        let cached: Option<String> = self
            .conn
            .query_row(
                "SELECT sha256 FROM file_hashes WHERE path = ?1 AND size = ?2 AND mtime_ns = ?3",
                params![key, to_i64(size), mtime_ns],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.sql(e))?;
        if let Some(sha256) = cached {
            return Ok(FileHash { sha256, size, mtime_ns, cached: true });
        }
        let sha256 = hash::sha256_file(&canonical).map_err(io)?;
        if hash::stamp(&canonical).map_err(io)? == (size, mtime_ns) {
            self.conn
                .execute(
                    "INSERT OR REPLACE INTO file_hashes (path, size, mtime_ns, sha256) \
                     VALUES (?1, ?2, ?3, ?4)",
                    params![key, to_i64(size), mtime_ns, sha256],
                )
                .map_err(|e| self.sql(e))?;
        }
        Ok(FileHash { sha256, size, mtime_ns, cached: false })
    }

    /// The [`ModelFile`] of a run: `path` as given, with its (cached) hash and size.
    pub fn model_file(&mut self, path: &Path) -> Result<ModelFile, StoreError> {
        let h = self.file_sha256(path)?;
        Ok(ModelFile { path: path.display().to_string(), sha256: h.sha256, size: h.size })
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A `runs` row before its words are decoded.
struct RawRun {
    id: i64,
    kind: String,
    argv: String,
    model: Option<ModelFile>,
    host: Host,
    llmopt_version: String,
    llmopt_commit: String,
    started_at: String,
    finished_at: String,
    status: String,
}

impl RawRun {
    /// Reads the columns of `RUN_COLUMNS`, in order.
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        let model_path: Option<String> = r.get(3)?;
        let model = match model_path {
            Some(path) => Some(ModelFile {
                path,
                sha256: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
                size: r.get::<_, Option<i64>>(5)?.map_or(0, |s| s.max(0) as u64),
            }),
            None => None,
        };
        let features: String = r.get(11)?;
        Ok(Self {
            id: r.get(0)?,
            kind: r.get(1)?,
            argv: r.get(2)?,
            model,
            host: Host {
                cpu: r.get(6)?,
                logical_cores: r.get(7)?,
                physical_cores: r.get(8)?,
                memory_bytes: r.get::<_, i64>(9)?.max(0) as u64,
                os: r.get(10)?,
                cpu_features: features.split_whitespace().map(str::to_string).collect(),
            },
            llmopt_version: r.get(12)?,
            llmopt_commit: r.get(13)?,
            started_at: r.get(14)?,
            finished_at: r.get(15)?,
            status: r.get(16)?,
        })
    }
}

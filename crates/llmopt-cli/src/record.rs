//! Recording runs in the run store, for every command that measures: [`RunDraft::start`] when the
//! work begins, [`RunDraft::record`] when it has succeeded. Recording adds the model's SHA-256
//! (cached by the store), the host's facts and this build's version and commit. A run never fails
//! because of its store: any problem is one `warning:` line on stderr.

use std::{
    path::{Path, PathBuf},
    time::SystemTime,
};

use anyhow::{Context, Result};
use llmopt_store::{rfc3339_utc, Host, Metric, RunRecord, Status, Store};

use crate::cli::StoreArgs;

/// The commit this binary was built from (`build.rs`), `unknown` outside a git checkout.
pub const GIT_COMMIT: &str = env!("LLMOPT_GIT_COMMIT");

/// The store's default place: `$XDG_DATA_HOME/llmopt/runs.sqlite` when that variable holds an
/// absolute path, else `~/.local/share/llmopt/runs.sqlite`; `None` without a home directory.
pub fn default_store_path() -> Option<PathBuf> {
    let xdg = std::env::var_os("XDG_DATA_HOME").map(PathBuf::from).filter(|p| p.is_absolute());
    let base = xdg.or_else(|| {
        let home = std::env::var_os("HOME").map(PathBuf::from).filter(|p| p.is_absolute())?;
        Some(home.join(".local/share"))
    })?;
    Some(base.join("llmopt").join("runs.sqlite"))
}

/// `--store PATH`, else the default place.
pub fn store_path(explicit: Option<&Path>) -> Result<PathBuf> {
    explicit.map(Path::to_path_buf).or_else(default_store_path).context(
        "no place for the run store: neither XDG_DATA_HOME nor HOME is set; pass --store PATH",
    )
}

/// `path`'s SHA-256: from the run store's cache (which the run's record then reuses) unless
/// `--no-store`, else read now; a store that cannot be opened only costs the cache.
pub fn file_sha256(path: &Path, args: &StoreArgs) -> Result<String> {
    if !args.no_store {
        let cached = store_path(args.store.as_deref())
            .and_then(|p| Ok(Store::open(p)?.file_sha256(path)?.sha256));
        if let Ok(h) = cached {
            return Ok(h);
        }
    }
    llmopt_store::sha256_file(path).with_context(|| format!("cannot read {}", path.display()))
}

/// A run in progress: what it is, its command line and when it started.
#[derive(Debug)]
pub struct RunDraft {
    kind: String,
    argv: Vec<String>,
    model: Option<PathBuf>,
    started: SystemTime,
}

impl RunDraft {
    /// Starts a run of `kind` (`bench`, `eval.perplexity`, `eval.tasks`, `eval.compare`, ...) on
    /// `model` now, with this process's command line.
    pub fn start(kind: &str, model: Option<&Path>) -> Self {
        Self {
            kind: kind.to_string(),
            argv: std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect(),
            model: model.map(Path::to_path_buf),
            started: SystemTime::now(),
        }
    }

    /// Stores the finished run with its metrics and JSON report, as `--store`/`--no-store` say.
    /// Returns the run's id, or `None` when recording is off or failed (after a warning on stderr).
    #[allow(clippy::print_stderr)]
    pub fn record(
        self,
        args: &StoreArgs,
        metrics: Vec<Metric>,
        report: &serde_json::Value,
    ) -> Option<i64> {
        if args.no_store {
            return None;
        }
        let stored = store_path(args.store.as_deref())
            .and_then(|path| Ok((self.write(&path, metrics, report)?, path)));
        match stored {
            Ok((id, path)) => {
                eprintln!("stored as run {id} in {}", path.display());
                Some(id)
            }
            Err(e) => {
                eprintln!("warning: the run was not stored: {e:#} (--no-store skips storing)");
                None
            }
        }
    }

    fn write(self, path: &Path, metrics: Vec<Metric>, report: &serde_json::Value) -> Result<i64> {
        let finished = SystemTime::now();
        let mut store = Store::open(path)?;
        let model = match &self.model {
            Some(m) => Some(store.model_file(m)?),
            None => None,
        };
        let run = RunRecord {
            kind: self.kind,
            argv: self.argv,
            model,
            host: Host::detect(),
            llmopt_version: env!("CARGO_PKG_VERSION").to_string(),
            llmopt_commit: GIT_COMMIT.to_string(),
            started_at: rfc3339_utc(self.started),
            finished_at: rfc3339_utc(finished),
            status: Status::Ok,
            metrics,
            report: Some(report.to_string()),
        };
        Ok(store.insert(&run)?)
    }
}

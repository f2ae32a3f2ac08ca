//! Load tests for OpenAI-compatible servers (ours, llama-server, any other): closed-loop clients
//! streaming chat completions at several concurrency levels, with TTFT, inter-token and end-to-end
//! latency percentiles, output tokens/s and errors per level ([`LoadReport`], JSON schema
//! `llmopt.loadtest/1`).
//!
//! Speed figures are only meaningful as ratios between servers measured side by side on one machine
//! (`scripts/serve-vs-llamacpp`); this crate measures, it never judges.

mod client;
mod prompts;
mod run;
mod sse;
mod stats;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

pub use client::{RequestRecord, RequestTemplate};
pub use prompts::{parse_jsonl, parse_lines, read_prompts};
pub use run::{run_level, LevelDone, LevelReport, Stop};
pub use sse::{classify, Payload, SseParser};
pub use stats::Summary;

/// Sees each finished request with its level's index (progress bars, live logs).
pub type OnDone = Arc<dyn Fn(usize, &RequestRecord) + Send + Sync>;

/// The JSON schema name of [`LoadReport`].
pub const SCHEMA: &str = "llmopt.loadtest/1";

/// Errors that stop a load test before it starts.
#[derive(thiserror::Error, Debug)]
pub enum LoadError {
    /// The prompt file is unreadable or holds no prompt.
    #[error("cannot use prompts from {path}: {reason}")]
    Prompts {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The server did not answer `GET /v1/models`.
    #[error("cannot reach {url}: {reason}")]
    Unreachable {
        /// What was asked.
        url: String,
        /// Why it failed.
        reason: String,
    },
    /// A setting that cannot work.
    #[error("{0}")]
    Invalid(String),
}

/// A whole test: one level per concurrency.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The server's base URL (`http://127.0.0.1:8080`; a trailing `/v1` is accepted).
    pub url: String,
    /// The `model` field; `None` asks `GET /v1/models` and takes the first.
    pub model: Option<String>,
    /// Concurrency levels, run in order.
    pub concurrency: Vec<usize>,
    /// When each level ends.
    pub stop: Stop,
    /// Requests sent one at a time before the first level, not counted.
    pub warmup: usize,
    /// `max_tokens` of every request.
    pub max_tokens: usize,
    /// `temperature` of every request.
    pub temperature: f64,
    /// A system message put before every prompt (a shared prefix).
    pub system: Option<String>,
    /// Bearer key.
    pub api_key: Option<String>,
    /// Limit of one request.
    pub timeout: Duration,
}

impl LoadConfig {
    /// The base URL without a trailing `/` or `/v1`.
    pub fn base(&self) -> &str {
        let u = self.url.trim_end_matches('/');
        u.strip_suffix("/v1").unwrap_or(u)
    }

    /// Checks the settings before any request.
    pub fn validate(&self) -> Result<(), LoadError> {
        let base = self.base();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(LoadError::Invalid(format!(
                "invalid --url {}: give http://HOST:PORT",
                self.url
            )));
        }
        if self.concurrency.is_empty() || self.concurrency.contains(&0) {
            return Err(LoadError::Invalid("every --concurrency level must be at least 1".into()));
        }
        match self.stop {
            Stop::Requests(0) | Stop::PerClient(0) => {
                Err(LoadError::Invalid("--requests must be at least 1".into()))
            }
            Stop::Duration(d) if d.is_zero() => {
                Err(LoadError::Invalid("--duration must be more than 0 s".into()))
            }
            _ if self.max_tokens == 0 => {
                Err(LoadError::Invalid("--max-tokens must be at least 1".into()))
            }
            _ if !(self.temperature.is_finite() && self.temperature >= 0.0) => {
                Err(LoadError::Invalid("--temperature must be a number >= 0".into()))
            }
            _ => Ok(()),
        }
    }
}

/// The result of a test, as `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// [`SCHEMA`].
    pub schema: &'static str,
    /// The server's base URL.
    pub url: String,
    /// The model asked for.
    pub model: String,
    /// `max_tokens` of every request.
    pub max_tokens: usize,
    /// Prompts in rotation.
    pub prompts: usize,
    /// Whether every prompt carried the system message.
    pub system_prompt: bool,
    /// One per concurrency level, in the order run.
    pub levels: Vec<LevelReport>,
}

/// The model a server serves first (`GET /v1/models`).
pub async fn discover_model(
    client: &reqwest::Client,
    base: &str,
    api_key: Option<&str>,
) -> Result<String, LoadError> {
    let url = format!("{base}/v1/models");
    let unreachable = |reason: String| LoadError::Unreachable { url: url.clone(), reason };
    let mut req = client.get(&url);
    if let Some(k) = api_key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.map_err(|e| unreachable(e.to_string()))?;
    let status = resp.status();
    let body: serde_json::Value = resp
        .json()
        .await
        .map_err(|e| unreachable(format!("HTTP {status}, body is not JSON ({e})")))?;
    if !status.is_success() {
        return Err(unreachable(format!("HTTP {status}: {body}")));
    }
    body.pointer("/data/0/id")
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .ok_or_else(|| unreachable("the answer lists no model".into()))
}

/// Runs every level of `cfg` over `prompts`; `on_done(level, record)` sees each finished request
/// (for progress); `cancel` set to true ends the test, keeping what finished. Levels after the
/// cancel are not run.
pub async fn run(
    cfg: &LoadConfig,
    prompts: Vec<String>,
    cancel: watch::Receiver<bool>,
    on_done: OnDone,
) -> Result<LoadReport, LoadError> {
    cfg.validate()?;
    if prompts.is_empty() {
        return Err(LoadError::Invalid("no prompts to send".into()));
    }
    // One connection per request: servers such as llama-server close a kept-alive connection
    // after a few requests, which a pooling client meets as a failed request (a race no real
    // load would blame on the server). A loopback connect costs well under a millisecond.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .tcp_nodelay(true)
        .build()
        .map_err(|e| LoadError::Invalid(format!("cannot build the HTTP client: {e}")))?;
    let base = cfg.base().to_string();
    let model = match &cfg.model {
        Some(m) => m.clone(),
        None => discover_model(&client, &base, cfg.api_key.as_deref()).await?,
    };
    let tpl = RequestTemplate {
        endpoint: format!("{base}/v1/chat/completions"),
        model: model.clone(),
        max_tokens: cfg.max_tokens,
        temperature: cfg.temperature,
        system: cfg.system.clone(),
        api_key: cfg.api_key.clone(),
        timeout: cfg.timeout,
    };
    let prompts = Arc::new(prompts);
    let mut report = LoadReport {
        schema: SCHEMA,
        url: base,
        model,
        max_tokens: cfg.max_tokens,
        prompts: prompts.len(),
        system_prompt: cfg.system.is_some(),
        levels: Vec::new(),
    };
    if cfg.warmup > 0 {
        let quiet: LevelDone = Arc::new(|_| {});
        let stop = Stop::Requests(cfg.warmup);
        let w = run_level(&client, &tpl, prompts.clone(), 0, 1, stop, cancel.clone(), quiet).await;
        if let Some((msg, _)) = w.error_samples.first() {
            return Err(LoadError::Unreachable {
                url: tpl.endpoint.clone(),
                reason: format!("the warm-up request failed: {msg}"),
            });
        }
    }
    // Each level starts where the last one's prompts ended, so levels do not replay one prefix.
    let mut offset = cfg.warmup;
    for (li, &c) in cfg.concurrency.iter().enumerate() {
        if *cancel.borrow() {
            break;
        }
        let cb = on_done.clone();
        let level_cb: LevelDone = Arc::new(move |r| cb(li, r));
        let prompts = prompts.clone();
        let level =
            run_level(&client, &tpl, prompts, offset, c, cfg.stop, cancel.clone(), level_cb).await;
        offset += level.requests.len();
        report.levels.push(level);
    }
    Ok(report)
}

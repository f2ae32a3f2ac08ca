//! OpenAI-compatible HTTP serving (axum) over any [`Generate`] engine: chat and text
//! completions with SSE streaming, `/v1/models`, `/health` and Prometheus `/metrics`.
//!
//! The server knows JSON and text, never the engine's insides: requests are validated at the edge
//! (`llmopt_api::openai`), prompts rendered and encoded here ([`ModelText`]), and the engine only
//! sees token ids and settings through the [`Generate`] trait. Every failure is one OpenAI error
//! body; a request id follows each request through its response header and log lines.

mod app;
mod chat;
mod completions;
mod generation;
mod metrics;
mod sse;
mod stop;
mod text;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use llmopt_api::Generate;
use tokio::net::TcpListener;

pub use text::ModelText;

/// Default largest request body: 4 MiB (a full context of text is far smaller).
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 << 20;

/// How the server presents itself and whom it lets in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// The model's name in requests (`model`) and in `/v1/models`.
    pub model_name: String,
    /// Keys accepted as `Authorization: Bearer KEY` on `/v1/*`; empty: no key needed.
    /// `/health` and `/metrics` stay open, for probes and scrapers.
    pub api_keys: Vec<String>,
    /// Larger bodies are refused with 413.
    pub max_body_bytes: usize,
}

impl ServerConfig {
    /// Serves `model_name` without keys, with the default body limit.
    pub fn new(model_name: impl Into<String>) -> Self {
        Self {
            model_name: model_name.into(),
            api_keys: Vec::new(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

/// An HTTP server over one engine and model.
#[derive(Debug)]
pub struct Server {
    state: Arc<app::AppState>,
}

impl Server {
    pub fn new(engine: Arc<dyn Generate>, text: ModelText, cfg: ServerConfig) -> Self {
        let state = app::AppState {
            engine,
            text,
            cfg,
            metrics: metrics::ServerMetrics::new(),
            draining: Default::default(),
            created: app::unix_now(),
        };
        Self { state: Arc::new(state) }
    }

    /// Serves on `listener` until `shutdown` completes, then drains: no new connections or
    /// requests (503), the running and queued requests finish and their responses are sent, the
    /// engine stops. Returns once all of that is done.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let state = self.state;
        let ticker = {
            let s = state.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(Duration::from_secs(1));
                loop {
                    every.tick().await;
                    s.metrics.tick(&s.engine.metrics());
                }
            })
        };
        let (drain_tx, drain_rx) = tokio::sync::oneshot::channel();
        let signal = {
            let s = state.clone();
            async move {
                shutdown.await;
                s.draining.store(true, Ordering::Release);
                tracing::info!("shutting down: new requests are refused, running ones finish");
                let engine = s.engine.clone();
                let _ = drain_tx.send(tokio::task::spawn_blocking(move || engine.drain()));
            }
        };
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(address = %addr, model = %state.cfg.model_name, "listening");
        }
        // Streamed tokens are small writes: without TCP_NODELAY, Nagle's algorithm holds each one
        // until the client's delayed ACK (up to 40 ms on Linux), which shows as inter-token latency.
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::warn!(error = %e, "cannot set TCP_NODELAY on a connection");
            }
        });
        let result =
            axum::serve(listener, app::router(state.clone())).with_graceful_shutdown(signal).await;
        if let Ok(drain) = drain_rx.await {
            let _ = drain.await;
        }
        ticker.abort();
        tracing::info!("server stopped");
        result
    }
}

/// Completes on SIGTERM or SIGINT (Ctrl-C). The handlers are installed now, so a signal that
/// comes before the future is polled is not lost. Needs a Tokio runtime.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

/// Logs as JSON lines on stderr: this crate's and the HTTP layer's events from `info` up, other
/// crates' warnings. Each line of a request carries its `request_id`. For the binary to call once.
pub fn init_json_logs() -> Result<(), tracing_subscriber::util::TryInitError> {
    let level = tracing::Level::INFO;
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let filter = Targets::new()
        .with_default(LevelFilter::WARN)
        .with_target("llmopt", level)
        .with_target("tower_http", level);
    let json = tracing_subscriber::fmt::layer()
        .json()
        .with_writer(std::io::stderr)
        .with_current_span(true)
        .with_span_list(false);
    tracing_subscriber::registry().with(json).with(filter).try_init()
}

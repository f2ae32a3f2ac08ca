//! Prometheus metrics through the `metrics` crate: a recorder owned by each server (no global, so
//! servers in one process never mix their series), latency histograms recorded as requests run,
//! and the engine's gauges copied from its snapshot every second and at each scrape.

use std::sync::Mutex;
use std::time::Instant;

use llmopt_api::EngineMetrics;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

static META: Metadata<'static> = Metadata::new("llmopt_server", Level::INFO, None);

/// Latency buckets in seconds: 1 ms to 2 minutes.
const LATENCY_BUCKETS: [f64; 18] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
    30.0, 60.0, 120.0,
];

/// The engine's series, as `/metrics` names them.
struct EngineSeries {
    queued: Gauge,
    running: Gauge,
    kv_used: Gauge,
    kv_free: Gauge,
    prefix_blocks: Gauge,
    prefix_hit_rate: Gauge,
    batch_tokens: Gauge,
    batch_seqs: Gauge,
    token_budget: Gauge,
    step_seconds: Gauge,
    tokens_per_second: Gauge,
    generated: Counter,
    prompt_computed: Counter,
    preemptions: Counter,
}

/// A server's metrics.
pub(crate) struct ServerMetrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    ttft: Histogram,
    inter_token: Histogram,
    e2e: Histogram,
    engine: EngineSeries,
    /// Generated-token count and time of the previous tick, for tokens/s.
    last_tick: Mutex<Option<(u64, Instant)>>,
}

impl std::fmt::Debug for ServerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerMetrics").finish_non_exhaustive()
    }
}

impl ServerMetrics {
    pub(crate) fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&LATENCY_BUCKETS)
            .expect("the bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        let r = &recorder;
        let counter = |name: &'static str, help: &'static str| {
            r.describe_counter(KeyName::from_const_str(name), None, help.into());
            r.register_counter(&Key::from_static_name(name), &META)
        };
        let gauge = |name: &'static str, unit: Option<Unit>, help: &'static str| {
            r.describe_gauge(KeyName::from_const_str(name), unit, help.into());
            r.register_gauge(&Key::from_static_name(name), &META)
        };
        let histogram = |name: &'static str, help: &'static str| {
            r.describe_histogram(KeyName::from_const_str(name), Some(Unit::Seconds), help.into());
            r.register_histogram(&Key::from_static_name(name), &META)
        };
        r.describe_counter(
            KeyName::from_const_str("llmopt_requests_total"),
            None,
            "HTTP requests by endpoint and status code".into(),
        );
        let engine = EngineSeries {
            queued: gauge("llmopt_queue_length", None, "Requests waiting for admission"),
            running: gauge("llmopt_running_sequences", None, "Sequences prefilling or decoding"),
            kv_used: gauge("llmopt_kv_blocks_used", None, "KV blocks held (prefix cache included)"),
            kv_free: gauge("llmopt_kv_blocks_free", None, "KV blocks on the free list"),
            prefix_blocks: gauge(
                "llmopt_prefix_cache_blocks",
                None,
                "KV blocks the prefix cache holds",
            ),
            prefix_hit_rate: gauge(
                "llmopt_prefix_cache_hit_rate",
                None,
                "Share of looked-up prompt tokens found in the prefix cache",
            ),
            batch_tokens: gauge("llmopt_batch_tokens", None, "Tokens in the latest engine step"),
            batch_seqs: gauge(
                "llmopt_batch_sequences",
                None,
                "Sequences in the latest engine step",
            ),
            token_budget: gauge(
                "llmopt_token_budget",
                None,
                "Token budget the adaptive policy gave the latest step",
            ),
            step_seconds: gauge("llmopt_step_seconds", Some(Unit::Seconds), "Latest engine step"),
            tokens_per_second: gauge(
                "llmopt_generation_tokens_per_second",
                None,
                "Generated tokens per second over the last second",
            ),
            generated: counter("llmopt_generated_tokens_total", "Tokens generated"),
            prompt_computed: counter(
                "llmopt_prompt_tokens_computed_total",
                "Prompt tokens prefilled (prefix-cache hits excluded)",
            ),
            preemptions: counter("llmopt_preemptions_total", "Sequences preempted for KV blocks"),
        };
        Self {
            ttft: histogram("llmopt_time_to_first_token_seconds", "Request start to first token"),
            inter_token: histogram(
                "llmopt_inter_token_latency_seconds",
                "Time between consecutive tokens of a choice",
            ),
            e2e: histogram("llmopt_request_duration_seconds", "Request start to last token"),
            engine,
            recorder,
            handle,
            last_tick: Mutex::new(None),
        }
    }

    /// Counts a finished HTTP request.
    pub(crate) fn request(&self, endpoint: &'static str, status: u16) {
        let labels =
            vec![Label::new("endpoint", endpoint), Label::new("status", status.to_string())];
        let key = Key::from_parts("llmopt_requests_total", labels);
        self.recorder.register_counter(&key, &META).increment(1);
    }

    pub(crate) fn time_to_first_token(&self, seconds: f64) {
        self.ttft.record(seconds);
    }

    pub(crate) fn inter_token(&self, seconds: f64) {
        self.inter_token.record(seconds);
    }

    pub(crate) fn request_duration(&self, seconds: f64) {
        self.e2e.record(seconds);
    }

    /// Copies the engine's snapshot into the gauges and counters.
    pub(crate) fn observe(&self, m: &EngineMetrics) {
        let e = &self.engine;
        e.queued.set(m.queued as f64);
        e.running.set(m.running as f64);
        e.kv_used.set(m.kv_blocks_used as f64);
        e.kv_free.set(m.kv_blocks_total.saturating_sub(m.kv_blocks_used) as f64);
        e.prefix_blocks.set(m.prefix_cache_blocks as f64);
        e.prefix_hit_rate.set(m.prefix_hit_rate());
        e.batch_tokens.set(m.last_batch_tokens as f64);
        e.batch_seqs.set(m.last_batch_seqs as f64);
        e.token_budget.set(m.token_budget as f64);
        e.step_seconds.set(m.last_step_s);
        e.generated.absolute(m.generated_tokens);
        e.prompt_computed.absolute(m.prompt_tokens_computed);
        e.preemptions.absolute(m.preemptions);
    }

    /// The once-a-second update: the snapshot, and tokens/s since the previous tick.
    pub(crate) fn tick(&self, m: &EngineMetrics) {
        self.observe(m);
        let now = Instant::now();
        let mut last = self.last_tick.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((tokens, at)) = *last {
            let secs = now.duration_since(at).as_secs_f64();
            if secs > 0.0 {
                let rate = m.generated_tokens.saturating_sub(tokens) as f64 / secs;
                self.engine.tokens_per_second.set(rate);
            }
        }
        *last = Some((m.generated_tokens, now));
        self.handle.run_upkeep();
    }

    /// The Prometheus text exposition of every series, after a fresh engine snapshot.
    pub(crate) fn render(&self, m: &EngineMetrics) -> String {
        self.observe(m);
        self.handle.render()
    }
}

//! The data of a `profile` run, shared by the measurement, the `--json` output (schema
//! `llmopt.profile/1`, documented in `docs/json-schema.md`) and the HTML report.

use serde::{Deserialize, Serialize};

/// Version tag of [`ProfileReport`]'s JSON form; bumped on any incompatible change.
pub const PROFILE_SCHEMA: &str = "llmopt.profile/1";

/// Everything one `llmopt profile` run measured.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ProfileReport {
    /// Always [`PROFILE_SCHEMA`].
    pub schema: String,
    pub model: ModelInfo,
    /// Worker threads of the pool that ran the model.
    pub threads: usize,
    /// The instruction set the kernels picked (`avx512vnni`, `avx2`, `scalar`).
    pub isa: String,
    /// One entry per (context length, batch size), in the order measured.
    pub cells: Vec<Cell>,
    pub memory: Memory,
    /// How energy was measured or estimated (the same for every cell).
    pub energy_source: EnergySource,
    /// The prices and grid intensity that turned time and energy into money and CO2.
    pub prices: Prices,
}

/// The model profiled.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ModelInfo {
    pub path: String,
    pub architecture: String,
    pub parameters: u64,
    /// Bytes of all tensors in the file.
    pub weight_bytes: u64,
    pub n_layer: usize,
    pub context_length: usize,
}

/// One measured point: `batch` sequences of `ctx` prompt tokens each, prefilled together, then
/// `gen` decode steps of one token per sequence.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Cell {
    pub ctx: usize,
    pub batch: usize,
    pub gen: usize,
    /// Prompt tokens (all sequences) per second of prefill.
    pub prefill_tokens_per_s: f64,
    /// Generated tokens (all sequences) per second of decode.
    pub decode_tokens_per_s: f64,
    /// From the start of prefill to the first sampled token of every sequence, in seconds.
    pub ttft_s: f64,
    /// Seconds of each decode step (one token for every sequence), in order.
    pub step_latencies_s: Vec<f64>,
    pub step_latency: Percentiles,
    /// Where prefill's time went.
    pub prefill_time: TimeShare,
    /// Where decode's time went.
    pub decode_time: TimeShare,
    /// Prefill plus decode, per layer, in layer order.
    pub layers: Vec<LayerTime>,
    /// KV-cache bytes the batch held at its longest (`batch × (ctx + gen)` positions).
    pub kv_bytes: u64,
    pub energy: Energy,
    pub cost: Cost,
}

/// p50/p90/p99 of a latency sample, in seconds (nearest-rank).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

/// Seconds spent by step kind, as the forward's observer saw them.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct TimeShare {
    /// Q, K, V and output projections.
    pub attention_proj_s: f64,
    /// Rope, the KV-cache write, scores, softmax and value sums.
    pub attention_core_s: f64,
    /// Gate/up, activation and down.
    pub mlp_s: f64,
    /// RMSNorms and residual adds.
    pub norms_s: f64,
    /// Token embedding lookup, the final norm and the vocabulary projection.
    pub embedding_output_s: f64,
    /// Turning logits into tokens (penalties, top-k/top-p, softmax, draw).
    pub sampling_s: f64,
    /// Wall time not inside any of the above (validation, cache bookkeeping, the timer itself).
    pub other_s: f64,
}

impl TimeShare {
    /// All seconds.
    pub fn total_s(&self) -> f64 {
        self.attention_proj_s
            + self.attention_core_s
            + self.mlp_s
            + self.norms_s
            + self.embedding_output_s
            + self.sampling_s
            + self.other_s
    }

    /// The attention block (projections and core) as a share of the total, 0..1.
    pub fn attention_share(&self) -> f64 {
        let t = self.total_s();
        if t > 0.0 {
            (self.attention_proj_s + self.attention_core_s) / t
        } else {
            0.0
        }
    }

    /// `(label, seconds)` pairs in display order.
    pub fn parts(&self) -> [(&'static str, f64); 7] {
        [
            ("attention (proj)", self.attention_proj_s),
            ("attention (core)", self.attention_core_s),
            ("mlp", self.mlp_s),
            ("norms", self.norms_s),
            ("embedding + output", self.embedding_output_s),
            ("sampling", self.sampling_s),
            ("other", self.other_s),
        ]
    }
}

/// One layer's seconds, prefill and decode together.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct LayerTime {
    pub layer: usize,
    pub attention_s: f64,
    pub mlp_s: f64,
    pub norms_s: f64,
}

/// Memory of the process and the model.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Memory {
    /// Peak resident set of the process over the whole run (`VmHWM`); `None` off Linux.
    pub peak_rss_bytes: Option<u64>,
    /// Tensor bytes grouped by storage format, largest first.
    pub weights_by_format: Vec<FormatBytes>,
    /// KV-cache bytes one token position takes (all layers, K and V).
    pub kv_bytes_per_token: u64,
}

/// Bytes of the tensors stored in one format.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FormatBytes {
    /// ggml's name (`q4_K`, `f32`, ...).
    pub format: String,
    pub tensors: usize,
    pub bytes: u64,
}

/// Where the joules came from.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EnergySource {
    /// `rapl` (Linux powercap counters, package domain), `nvml`, or `estimate`.
    pub kind: String,
    /// In words: what was read, or the estimate's formula and assumptions.
    pub detail: String,
}

/// Energy of one cell.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Energy {
    /// Joules over prefill and decode together.
    pub joules: f64,
    /// Watt-hours per 1000 tokens (prompt and generated).
    pub wh_per_1k_tokens: f64,
}

/// Money and CO2 of one cell, from [`Prices`].
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Cost {
    /// Machine time plus electricity per million tokens (prompt and generated).
    pub usd_per_1m_tokens: f64,
    /// One query: one sequence's `ctx` prompt and `gen` generated tokens, its share of the batch.
    pub usd_per_query: f64,
    /// Grams of CO2 per 1000 tokens.
    pub gco2_per_1k_tokens: f64,
}

/// The price profile (`--price FILE` or flags).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Prices {
    /// Machine rental, dollars per hour.
    pub usd_per_hour: f64,
    /// Electricity, dollars per kWh.
    pub usd_per_kwh: f64,
    /// Grid carbon intensity, grams of CO2 per kWh.
    pub grid_gco2_per_kwh: f64,
}

/// One model variant on the size / accuracy / speed trade-off (the Pareto chart of several runs).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ParetoPoint {
    /// What the reader sees next to the point (a run id and model file name).
    pub label: String,
    /// File size in bytes.
    pub size_bytes: u64,
    /// Mean KL divergence against the baseline; `None` for the baseline itself.
    pub kld: Option<f64>,
    /// A speed (decode or prefill tokens/s, named in the chart) when one was measured.
    pub tokens_per_s: Option<f64>,
}

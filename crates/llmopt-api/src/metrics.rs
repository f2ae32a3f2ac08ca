//! The engine's counters and gauges as a snapshot: what a server shows on `/metrics` and what a
//! scheduler knows about its queue, its sequences and its KV blocks.

/// Counters and gauges after the engine's latest step.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EngineMetrics {
    /// Requests waiting for admission (and preempted sequences waiting to resume).
    pub queued: usize,
    /// Sequences admitted (prefilling or decoding).
    pub running: usize,
    pub kv_blocks_total: usize,
    /// Blocks held by sequences or the prefix cache.
    pub kv_blocks_used: usize,
    /// Blocks the prefix cache holds (evictable when nothing else does).
    pub prefix_cache_blocks: usize,
    pub prefix_queried_tokens: u64,
    pub prefix_hit_tokens: u64,
    pub prompt_tokens_computed: u64,
    pub generated_tokens: u64,
    pub steps: u64,
    pub preemptions: u64,
    /// Tokens and sequences of the latest step.
    pub last_batch_tokens: usize,
    pub last_batch_seqs: usize,
    /// The token budget the policy gave the latest step.
    pub token_budget: usize,
    /// Seconds of the latest step.
    pub last_step_s: f64,
}

impl EngineMetrics {
    /// Share of looked-up prompt tokens found in the prefix cache (0 before any lookup).
    pub fn prefix_hit_rate(&self) -> f64 {
        if self.prefix_queried_tokens == 0 {
            0.0
        } else {
            self.prefix_hit_tokens as f64 / self.prefix_queried_tokens as f64
        }
    }
}

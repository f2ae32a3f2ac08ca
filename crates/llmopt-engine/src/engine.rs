//! The serving engine's core: continuous batching over the paged KV cache. Each [`Engine::step`]
//! is one forward call that mixes one decode token per running sequence with prefill chunks of
//! admitted prompts under a token budget; sequences join and leave between steps.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

pub use llmopt_api::EngineMetrics;
use llmopt_kernels::ThreadPool;
use llmopt_model::{KvCache, Logits, Model, SeqId, SeqInput, Workspace};

use crate::{
    policy::BudgetPolicy,
    prefix_cache::PrefixCache,
    request::{Event, FinishReason, Request, RequestError, RequestId, Sink, MAX_TOP_LOGPROBS},
    Sampler,
};

/// How the engine schedules and how much it may hold.
#[derive(Clone, Debug, PartialEq)]
pub struct EngineConfig {
    /// Most tokens (decode and prefill together) in one forward call.
    pub max_batch_tokens: usize,
    /// KV-cache capacity in tokens, shared by all sequences.
    pub kv_cache_tokens: usize,
    /// Token slots per KV block.
    pub block_size: usize,
    /// Most sequences (choices) generating at once.
    pub max_running: usize,
    /// Keep full blocks after their sequence ends and reuse them for equal prefixes.
    pub prefix_caching: bool,
    /// Target seconds per decode step while prompts wait; `None` always fills the budget.
    pub step_latency_target: Option<f64>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_batch_tokens: 512,
            kv_cache_tokens: 16384,
            block_size: llmopt_model::DEFAULT_BLOCK_SIZE,
            max_running: 64,
            prefix_caching: true,
            step_latency_target: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Prefill,
    Decode,
}

/// One choice of one request.
pub(crate) struct Seq {
    pub req: RequestId,
    pub choice: usize,
    /// `None` while preempted (its KV dropped; it resumes by recomputing).
    pub kv: Option<SeqId>,
    /// Prompt and generated tokens.
    pub tokens: Vec<u32>,
    pub prompt_len: usize,
    /// Tokens whose keys and values are in the cache.
    pub computed: usize,
    pub phase: Phase,
    pub sampler: Sampler,
    /// Order of admission (preemption takes the newest).
    pub arrival: u64,
    /// Ended (stop token, length, or its receiver is gone); removed after the step.
    pub finished: bool,
}

impl Seq {
    pub fn generated(&self) -> usize {
        self.tokens.len() - self.prompt_len
    }
}

pub(crate) struct RequestState {
    pub sink: Sink,
    pub request: Arc<Request>,
    /// Choices not finished yet.
    pub open: usize,
    /// Which choices have sent their `Finished` event.
    pub finished: Vec<bool>,
}

/// A request waiting for admission.
pub(crate) struct Pending {
    pub id: RequestId,
    pub arrival: u64,
}

/// The engine: owns the model's cache and the scheduling state; driven by `step`.
pub struct Engine {
    pub(crate) model: Arc<Model>,
    pub(crate) pool: ThreadPool,
    pub(crate) kv: KvCache,
    pub(crate) ws: Workspace,
    pub(crate) cfg: EngineConfig,
    pub(crate) prefix: PrefixCache,
    pub(crate) waiting: VecDeque<Pending>,
    /// Preempted sequences, resumed before new requests are admitted.
    pub(crate) swapped: VecDeque<Seq>,
    pub(crate) running: Vec<Seq>,
    pub(crate) requests: HashMap<RequestId, RequestState>,
    pub(crate) policy: BudgetPolicy,
    pub(crate) metrics: EngineMetrics,
    pub(crate) arrivals: u64,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("cfg", &self.cfg).field("metrics", &self.metrics).finish()
    }
}

impl Engine {
    /// An engine over `model` with `cfg` (sizes are raised to workable minimums).
    pub fn new(model: Arc<Model>, pool: ThreadPool, mut cfg: EngineConfig) -> Self {
        cfg.block_size = cfg.block_size.max(1);
        cfg.max_batch_tokens = cfg.max_batch_tokens.max(2);
        cfg.max_running = cfg.max_running.max(1);
        let kv = KvCache::new(&model.config, cfg.kv_cache_tokens, cfg.block_size);
        let mut ws = Workspace::new();
        // Every token in f32 attention, however prompts are chunked and batched: a sequence's
        // tokens never depend on what shares its batch, a preempted sequence recomputes exactly
        // the K/V it had, and decode skips the f16 accumulator chain (about 10% faster decode
        // steps at 32 sequences of 128 tokens). `generate` keeps llama.cpp's f16 decode numerics.
        ws.set_f32_min_tokens(1);
        let policy = BudgetPolicy::new(cfg.max_batch_tokens, cfg.step_latency_target);
        let metrics = EngineMetrics { kv_blocks_total: kv.free_blocks(), ..Default::default() };
        Self {
            prefix: PrefixCache::new(cfg.block_size),
            model,
            pool,
            kv,
            ws,
            cfg,
            waiting: VecDeque::new(),
            swapped: VecDeque::new(),
            running: Vec::new(),
            requests: HashMap::new(),
            policy,
            metrics,
            arrivals: 0,
        }
    }

    /// The model's context length.
    pub fn context_length(&self) -> usize {
        self.model.config.context_length
    }

    /// KV-cache capacity in tokens.
    pub fn kv_capacity(&self) -> usize {
        self.kv.capacity()
    }

    /// Checks a request against the model and the cache without admitting it.
    pub fn validate(&self, r: &Request) -> Result<(), RequestError> {
        validate(r, self.context_length(), self.kv.capacity(), self.model.config.vocab_size)
    }

    /// Queues a request; its events go to `sink`.
    pub fn submit(&mut self, id: RequestId, r: Request, sink: Sink) -> Result<(), RequestError> {
        self.validate(&r)?;
        self.arrivals += 1;
        self.waiting.push_back(Pending { id, arrival: self.arrivals });
        let open = r.params.n;
        let finished = vec![false; open];
        self.requests.insert(id, RequestState { sink, request: Arc::new(r), open, finished });
        Ok(())
    }

    /// Ends a request's open choices now (`FinishReason::Cancelled`, with the tokens each had
    /// generated), freeing their blocks. Choices that already finished send nothing more.
    pub fn cancel(&mut self, id: RequestId) {
        self.waiting.retain(|p| p.id != id);
        let mut generated = HashMap::new();
        for s in self.running.iter().chain(&self.swapped).filter(|s| s.req == id) {
            if let Some(kv) = s.kv {
                self.kv.remove_sequence(kv);
            }
            generated.insert(s.choice, s.generated());
        }
        self.running.retain(|s| s.req != id);
        self.swapped.retain(|s| s.req != id);
        if let Some(r) = self.requests.remove(&id) {
            for (choice, _) in r.finished.iter().enumerate().filter(|(_, &f)| !f) {
                let done = Event::Finished {
                    choice,
                    reason: FinishReason::Cancelled,
                    completion_tokens: generated.get(&choice).copied().unwrap_or(0),
                };
                r.sink.send(done);
            }
        }
    }

    /// Whether any request is queued or running.
    pub fn has_work(&self) -> bool {
        !self.waiting.is_empty() || !self.swapped.is_empty() || !self.running.is_empty()
    }

    /// The current counters.
    pub fn metrics(&self) -> EngineMetrics {
        let mut m = self.metrics.clone();
        m.queued = self.waiting.len() + self.swapped.len();
        m.running = self.running.len();
        m.kv_blocks_used = m.kv_blocks_total - self.kv.free_blocks();
        m.prefix_cache_blocks = self.prefix.len();
        m.prefix_queried_tokens = self.prefix.queried_tokens;
        m.prefix_hit_tokens = self.prefix.hit_tokens;
        m
    }

    /// Drops the prefix cache (tests and memory pressure); blocks in use stay.
    pub fn clear_prefix_cache(&mut self) {
        self.prefix.clear(&mut self.kv);
    }

    /// Frees `need` blocks, evicting idle prefix-cache blocks if the free list is short.
    pub(crate) fn make_room(&mut self, need: usize) -> bool {
        let free = self.kv.free_blocks();
        if free >= need {
            return true;
        }
        self.prefix.evict(&mut self.kv, need - free);
        self.kv.free_blocks() >= need
    }

    /// One scheduling step and forward call. Returns false when there was nothing to do.
    pub fn step(&mut self) -> bool {
        self.admit();
        if self.running.is_empty() {
            return false;
        }
        let started = Instant::now();
        let budget = self.policy.budget(self.waiting.len() + self.swapped.len(), self.decoding());
        let plan = self.plan(budget);
        if plan.is_empty() {
            return false;
        }
        let n_tok: usize = plan.iter().map(|p| p.len).sum();
        // The workspace is moved out for the call, so its logits can be read while the step's
        // results update the engine (no copy; an empty workspace allocates nothing).
        let mut ws = std::mem::take(&mut self.ws);
        let result = {
            let inputs: Vec<SeqInput<'_>> = plan
                .iter()
                .map(|p| {
                    let s = &self.running[p.seq];
                    SeqInput {
                        seq: s.kv.expect("planned sequences hold a cache sequence"),
                        tokens: &s.tokens[s.computed..s.computed + p.len],
                        logits: if p.wants_logits { Logits::Last } else { Logits::None },
                    }
                })
                .collect();
            self.model.forward(&self.pool, &inputs, &mut self.kv, &mut ws, None)
        };
        match result {
            Ok(logits) => self.after_forward(&plan, logits),
            Err(e) => {
                // The cache was left as it was; fail the step's requests and keep serving.
                let ids: Vec<RequestId> = plan.iter().map(|p| self.running[p.seq].req).collect();
                for id in ids {
                    if let Some(r) = self.requests.get(&id) {
                        r.sink.send(Event::Error { message: e.to_string() });
                    }
                    self.drop_request(id);
                }
            }
        }
        self.ws = ws;
        let secs = started.elapsed().as_secs_f64();
        self.policy.observe(n_tok, self.decoding(), secs);
        self.metrics.steps += 1;
        self.metrics.last_batch_tokens = n_tok;
        self.metrics.last_batch_seqs = plan.len();
        self.metrics.token_budget = budget;
        self.metrics.last_step_s = secs;
        true
    }

    fn decoding(&self) -> usize {
        self.running.iter().filter(|s| s.phase == Phase::Decode).count()
    }

    /// Removes a request without events (after an error was sent).
    pub(crate) fn drop_request(&mut self, id: RequestId) {
        for s in self.running.iter().chain(&self.swapped).filter(|s| s.req == id) {
            if let Some(kv) = s.kv {
                self.kv.remove_sequence(kv);
            }
        }
        self.running.retain(|s| s.req != id);
        self.swapped.retain(|s| s.req != id);
        self.waiting.retain(|p| p.id != id);
        self.requests.remove(&id);
    }
}

/// One planned input of a step: `len` tokens of `running[seq]` from its `computed` position.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Planned {
    pub seq: usize,
    pub len: usize,
    pub wants_logits: bool,
}

/// Checks a request against a model's context, the cache's capacity and the vocabulary.
pub fn validate(
    r: &Request,
    context: usize,
    capacity: usize,
    vocab: usize,
) -> Result<(), RequestError> {
    let p = &r.params;
    if r.prompt.is_empty() {
        return Err(RequestError::EmptyPrompt);
    }
    if p.max_tokens == 0 {
        return Err(RequestError::NoTokens);
    }
    if p.n == 0 {
        return Err(RequestError::NoChoices);
    }
    if let Some(&token) = r.prompt.iter().find(|&&t| t as usize >= vocab) {
        return Err(RequestError::BadToken { token, vocab });
    }
    if let Some(k) = p.logprobs.filter(|&k| k > MAX_TOP_LOGPROBS) {
        return Err(RequestError::TooManyLogprobs(k));
    }
    p.sampling.validate()?;
    if r.prompt.len() + p.max_tokens > context {
        return Err(RequestError::TooLong {
            prompt: r.prompt.len(),
            max_tokens: p.max_tokens,
            context,
        });
    }
    // The prompt once (shared by the choices), then each choice's own tokens.
    let needed = r.prompt.len() + p.n * p.max_tokens;
    if needed > capacity {
        return Err(RequestError::TooBigForCache { needed, n: p.n, capacity });
    }
    Ok(())
}

impl Engine {
    /// Resumes preempted sequences, then admits queued requests in arrival order while blocks
    /// and running slots allow (a request that does not fit stops admission: first come, first
    /// served).
    fn admit(&mut self) {
        while let Some(s) = self.swapped.front() {
            let need = s.tokens.len().div_ceil(self.cfg.block_size) + 1;
            if self.running.len() >= self.cfg.max_running || !self.make_room(need) {
                return;
            }
            let mut s = self.swapped.pop_front().expect("front exists");
            let (kv, cached) = self.start_sequence(&s.tokens.clone());
            s.kv = Some(kv);
            s.computed = cached;
            s.phase = Phase::Prefill;
            self.running.push(s);
        }
        while let Some(p) = self.waiting.front() {
            let Some(r) = self.requests.get(&p.id) else {
                self.waiting.pop_front();
                continue;
            };
            let req = r.request.clone();
            let n = req.params.n;
            let need = req.prompt.len().div_ceil(self.cfg.block_size) + n;
            if self.running.len() + n > self.cfg.max_running.max(n) || !self.make_room(need) {
                return;
            }
            let p = self.waiting.pop_front().expect("front exists");
            let (kv, cached) = self.start_sequence(&req.prompt);
            let sink = self.requests[&p.id].sink.clone();
            if !sink.send(Event::Started { prompt_tokens: req.prompt.len(), cached_tokens: cached })
            {
                self.kv.remove_sequence(kv);
                self.requests.remove(&p.id);
                continue;
            }
            let sampler = match Sampler::new(req.params.sampling.clone()) {
                Ok(s) => s,
                Err(e) => {
                    sink.send(Event::Error { message: e.to_string() });
                    self.kv.remove_sequence(kv);
                    self.requests.remove(&p.id);
                    continue;
                }
            };
            self.running.push(Seq {
                req: p.id,
                choice: 0,
                kv: Some(kv),
                tokens: req.prompt.clone(),
                prompt_len: req.prompt.len(),
                computed: cached,
                phase: Phase::Prefill,
                sampler,
                arrival: p.arrival,
                finished: false,
            });
        }
    }

    /// A cache sequence for `tokens`, on the prefix cache's blocks where they match; leaves at
    /// least two tokens to compute, so the last prompt chunk is a prefill (f32 attention) and
    /// yields logits. Returns the sequence and how many tokens it starts with.
    fn start_sequence(&mut self, tokens: &[u32]) -> (SeqId, usize) {
        if self.cfg.prefix_caching && tokens.len() > 2 {
            let max_blocks = (tokens.len() - 2) / self.cfg.block_size;
            let blocks = self.prefix.lookup(tokens, max_blocks);
            if !blocks.is_empty() {
                let len = blocks.len() * self.cfg.block_size;
                if let Ok(s) = self.kv.add_sequence_on(&blocks, len) {
                    return (s, len);
                }
            }
        }
        (self.kv.add_sequence(), 0)
    }
}

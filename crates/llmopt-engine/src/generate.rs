//! Generation for one sequence: prefill the prompt in chunks, then decode token by token, streaming
//! each token to a callback. The KV cache and buffers are sized once, so decoding allocates nothing.

use std::time::{Duration, Instant};

use llmopt_kernels::ThreadPool;
use llmopt_model::{
    KvCache, Logits, Model, ModelError, SeqId, SeqInput, Workspace, DEFAULT_BLOCK_SIZE,
};

use crate::sampler::Sampler;

/// Longest run of prompt tokens sent through one forward call.
pub const PREFILL_CHUNK: usize = 512;

/// Why generation failed.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("{tokens} tokens do not fit the context of {context} (prompt {prompt} + up to {max_new} new)")]
    TooLong { tokens: usize, prompt: usize, max_new: usize, context: usize },
}

/// Why generation stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The model produced an end-of-generation token.
    EndOfGeneration,
    /// `max_tokens` were produced.
    MaxTokens,
    /// The callback asked to stop.
    Stopped,
}

/// Token counts and timings of one `generate` call.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerationStats {
    pub prompt_tokens: usize,
    pub prompt_time: Duration,
    pub generated_tokens: usize,
    pub generate_time: Duration,
    pub stop: StopReason,
}

impl GenerationStats {
    /// Prompt tokens per second.
    pub fn prompt_tps(&self) -> f64 {
        self.prompt_tokens as f64 / self.prompt_time.as_secs_f64().max(1e-9)
    }

    /// Generated tokens per second (the first token comes from the prompt's logits and is not timed
    /// as a decode step).
    pub fn generate_tps(&self) -> f64 {
        self.generated_tokens.saturating_sub(1) as f64 / self.generate_time.as_secs_f64().max(1e-9)
    }
}

/// One sequence's state: its KV cache, buffers and token history (kept across calls, as a chat is).
#[derive(Debug)]
pub struct Generator<'m> {
    model: &'m Model,
    pool: &'m ThreadPool,
    kv: KvCache,
    seq: SeqId,
    ws: Workspace,
    history: Vec<u32>,
    /// Sampled tokens not yet in the KV cache (the last one of a turn); fed before the next input.
    pending: Vec<u32>,
    capacity: usize,
}

impl<'m> Generator<'m> {
    /// A generator whose cache holds up to `capacity` tokens (capped at the model's context).
    pub fn new(model: &'m Model, pool: &'m ThreadPool, capacity: usize) -> Self {
        let capacity = capacity.min(model.config.context_length).max(1);
        let mut kv = KvCache::new(&model.config, capacity, DEFAULT_BLOCK_SIZE);
        let seq = kv.add_sequence();
        Self {
            model,
            pool,
            kv,
            seq,
            ws: Workspace::new(),
            history: Vec::with_capacity(capacity),
            pending: Vec::new(),
            capacity,
        }
    }

    /// Tokens in the sequence so far (prompts and generated tokens).
    pub fn history(&self) -> &[u32] {
        &self.history
    }

    /// Keeps only the first `len` tokens of the sequence (a later prompt that shares a prefix with the
    /// history then reuses the cached part).
    pub fn rewind(&mut self, len: usize) -> Result<(), GenerateError> {
        let len = len.min(self.history.len());
        self.history.truncate(len);
        let in_cache = self.kv.seq_len(self.seq)?;
        self.pending.truncate(len.saturating_sub(in_cache));
        self.kv.truncate(self.seq, len.min(in_cache))?;
        Ok(())
    }

    /// Token capacity of the cache.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Appends `tokens` to the sequence and returns the logits after the last one.
    pub fn feed(&mut self, tokens: &[u32]) -> Result<&[f32], GenerateError> {
        if tokens.is_empty() {
            return Err(GenerateError::EmptyPrompt);
        }
        let mut all = std::mem::take(&mut self.pending);
        let n_pending = all.len();
        all.extend_from_slice(tokens);
        let tokens = &all[..];
        let chunks = tokens.len().div_ceil(PREFILL_CHUNK);
        for (i, chunk) in tokens.chunks(PREFILL_CHUNK).enumerate() {
            let logits = if i + 1 == chunks { Logits::Last } else { Logits::None };
            self.model.forward(
                self.pool,
                &[SeqInput { seq: self.seq, tokens: chunk, logits }],
                &mut self.kv,
                &mut self.ws,
                None,
            )?;
        }
        self.history.extend_from_slice(&all[n_pending..]);
        Ok(self.last_logits())
    }

    fn last_logits(&self) -> &[f32] {
        self.ws.last_logits(self.model.config.vocab_size)
    }

    /// Feeds `prompt`, then samples up to `max_tokens` tokens, calling `on_token` with each (return
    /// `false` to stop). Stops early at a token for which `is_eog` is true (not passed on).
    pub fn generate(
        &mut self,
        prompt: &[u32],
        max_tokens: usize,
        sampler: &mut Sampler,
        is_eog: &dyn Fn(u32) -> bool,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<GenerationStats, GenerateError> {
        let total = self.history.len() + prompt.len() + max_tokens;
        if total > self.capacity {
            return Err(GenerateError::TooLong {
                tokens: total,
                prompt: self.history.len() + prompt.len(),
                max_new: max_tokens,
                context: self.capacity,
            });
        }
        let t0 = Instant::now();
        self.feed(prompt)?;
        let prompt_time = t0.elapsed();
        // The reply starts here: OpenAI-scoped penalties count its tokens, not the conversation's.
        let reply_start = self.history.len();
        let t1 = Instant::now();
        let mut generated = 0;
        let mut stop = StopReason::MaxTokens;
        while generated < max_tokens {
            let tok = sampler.sample_after_prompt(self.last_logits(), &self.history, reply_start);
            generated += 1;
            self.history.push(tok);
            if is_eog(tok) {
                // The end token stays part of the conversation (chat templates expect it).
                stop = StopReason::EndOfGeneration;
                self.pending.push(tok);
                break;
            }
            if !on_token(tok) {
                stop = StopReason::Stopped;
                self.pending.push(tok);
                break;
            }
            if generated == max_tokens {
                self.pending.push(tok);
                break;
            }
            let step = [tok];
            self.model.forward(
                self.pool,
                &[SeqInput { seq: self.seq, tokens: &step, logits: Logits::Last }],
                &mut self.kv,
                &mut self.ws,
                None,
            )?;
        }
        Ok(GenerationStats {
            prompt_tokens: prompt.len(),
            prompt_time,
            generated_tokens: generated,
            generate_time: t1.elapsed(),
            stop,
        })
    }
}

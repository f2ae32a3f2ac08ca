//! What a client asks the serving engine for and what it gets back: a tokenized prompt with its
//! generation settings in, a stream of events (tokens with log-probabilities, finish) out.

use std::sync::Arc;

use crate::SamplerConfig;

/// Identifies a request for its whole life in the engine.
pub type RequestId = u64;

/// Most alternatives `logprobs` may ask for per token (OpenAI's limit).
pub const MAX_TOP_LOGPROBS: usize = 20;

/// Generation settings of one request.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestParams {
    /// Most tokens to generate per choice (at least 1).
    pub max_tokens: usize,
    /// Sampling; choice `i` draws with `seed + i`.
    pub sampling: SamplerConfig,
    /// Independent completions of the same prompt (at least 1); they share the prompt's KV blocks.
    pub n: usize,
    /// Tokens that end a choice (end of text, end of turn); the stop token is not emitted.
    pub stop_tokens: Vec<u32>,
    /// Return each sampled token's log-probability and this many most likely alternatives
    /// (0..=[`MAX_TOP_LOGPROBS`]); `None` for no log-probabilities.
    pub logprobs: Option<usize>,
}

/// A tokenized prompt and its settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub prompt: Vec<u32>,
    pub params: RequestParams,
}

/// Log-probabilities under the model's distribution (raw logits, before penalties and sampling
/// filters), as OpenAI reports them.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprob {
    /// The sampled token's.
    pub logprob: f32,
    /// The most likely tokens with theirs, most likely first.
    pub top: Vec<(u32, f32)>,
}

/// Why a choice ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// A stop token.
    Stop,
    /// `max_tokens` generated, or the context is full.
    Length,
    /// The client cancelled or went away.
    Cancelled,
}

impl FinishReason {
    /// OpenAI's `finish_reason` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
            Self::Cancelled => "cancelled",
        }
    }
}

/// What the engine tells a request's receiver, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The prompt was admitted: `cached_tokens` of it came from the prefix cache.
    Started { prompt_tokens: usize, cached_tokens: usize },
    /// Choice `choice` produced `token`.
    Token { choice: usize, token: u32, logprob: Option<TokenLogprob> },
    /// Choice `choice` ended after `completion_tokens` tokens.
    Finished { choice: usize, reason: FinishReason, completion_tokens: usize },
    /// The engine failed on this request; no more events follow.
    Error { message: String },
}

/// Where a request's events go. `send` returns false once the receiver is gone: the engine then
/// cancels the request and frees its blocks.
pub trait EventSink: Send + Sync {
    fn send(&self, event: Event) -> bool;
}

impl EventSink for std::sync::mpsc::Sender<Event> {
    fn send(&self, event: Event) -> bool {
        std::sync::mpsc::Sender::send(self, event).is_ok()
    }
}

/// A shared sink (all choices of a request send to one).
pub type Sink = Arc<dyn EventSink>;

/// Why the engine refused a request before admitting it.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RequestError {
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("max_tokens must be at least 1")]
    NoTokens,
    #[error("n must be at least 1")]
    NoChoices,
    #[error(
        "the prompt ({prompt} tokens) plus max_tokens ({max_tokens}) exceeds the context length \
         ({context})"
    )]
    TooLong { prompt: usize, max_tokens: usize, context: usize },
    #[error(
        "the request needs {needed} KV-cache tokens ({n} choices), more than the cache holds \
         ({capacity}); raise --kv-cache-mb"
    )]
    TooBigForCache { needed: usize, n: usize, capacity: usize },
    #[error("token id {token} is outside the vocabulary of {vocab}")]
    BadToken { token: u32, vocab: usize },
    #[error("logprobs may ask for at most {MAX_TOP_LOGPROBS} alternatives, not {0}")]
    TooManyLogprobs(usize),
    #[error(transparent)]
    Sampling(#[from] crate::SamplerError),
    #[error("the engine has stopped")]
    Stopped,
}

/// Log-probability of `token` and the `k` most likely tokens under `logits` (log-softmax in f64).
pub fn logprobs(logits: &[f32], token: u32, k: usize) -> TokenLogprob {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    let z: f64 = logits.iter().map(|&x| f64::from(x - max).exp()).sum();
    let lse = f64::from(max) + z.ln();
    let lp = |x: f32| (f64::from(x) - lse) as f32;
    let mut top: Vec<(u32, f32)> = Vec::with_capacity(k);
    if k > 0 {
        let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
        let desc =
            |a: &u32, b: &u32| logits[*b as usize].total_cmp(&logits[*a as usize]).then(a.cmp(b));
        let k = k.min(idx.len());
        idx.select_nth_unstable_by(k - 1, desc);
        idx.truncate(k);
        idx.sort_unstable_by(desc);
        top.extend(idx.into_iter().map(|i| (i, lp(logits[i as usize]))));
    }
    TokenLogprob { logprob: logits.get(token as usize).map_or(f32::NEG_INFINITY, |&x| lp(x)), top }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logprobs_are_a_log_softmax() {
        // softmax([ln 1, ln 2, ln 5]) = [0.125, 0.25, 0.625]
        let l = [0f32, 2f32.ln(), 5f32.ln(), f32::NEG_INFINITY];
        let r = logprobs(&l, 1, 2);
        assert!((r.logprob - 0.25f32.ln()).abs() < 1e-6);
        assert_eq!(r.top.len(), 2);
        assert_eq!((r.top[0].0, r.top[1].0), (2, 1));
        assert!((r.top[0].1 - 0.625f32.ln()).abs() < 1e-6);
        let r = logprobs(&l, 3, 0);
        assert!(r.top.is_empty() && r.logprob == f32::NEG_INFINITY);
        assert_eq!(logprobs(&l, 0, 10).top.len(), 4);
    }
}

//! What the serving layers share without knowing each other's insides: a tokenized [`Request`] in,
//! a stream of [`Event`]s out, through the [`Generate`] trait (the engine implements it; the HTTP
//! server and the gateway only call it), and OpenAI's JSON types with their validation.
//!
//! Everything here builds and tests without a model: it is data, ranges and mappings.

mod metrics;
pub mod openai;
pub mod request;
mod sampling;

pub use metrics::EngineMetrics;
pub use request::{
    logprobs, Event, EventSink, FinishReason, Request, RequestError, RequestId, RequestParams,
    Sink, TokenLogprob, MAX_TOP_LOGPROBS,
};
pub use sampling::{PenaltyScope, SamplerConfig, SamplerError};

/// The sizes a generator refuses requests beyond.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The model's context length in tokens (prompt plus generated).
    pub context: usize,
    /// KV-cache capacity in tokens, shared by all running sequences.
    pub kv_capacity: usize,
    /// Token ids must be below this.
    pub vocab: usize,
}

/// A text generator that serves many clients at once (the serving engine, or a test double).
///
/// `submit` validates and queues; events then go to the sink until a `Finished` per choice or an
/// `Error`. A sink whose `send` returns false (its receiver is gone) cancels the request.
pub trait Generate: Send + Sync + std::fmt::Debug {
    /// Queues `request`; its events go to `sink`. Refused with a reason before anything runs.
    fn submit(&self, request: Request, sink: Sink) -> Result<RequestId, RequestError>;
    /// Ends a request's open choices now (`FinishReason::Cancelled`) and frees what it holds.
    fn cancel(&self, id: RequestId);
    /// The latest counters and gauges.
    fn metrics(&self) -> EngineMetrics;
    /// Context, cache and vocabulary sizes.
    fn limits(&self) -> Limits;
    /// Stops taking requests, finishes the queued and running ones, and returns when done
    /// (blocking: call it off an async runtime's worker threads).
    fn drain(&self);
}

//! The engine: sampling, the single-sequence generation loop of the CLI, and the serving engine:
//! continuous batching over the paged KV cache with prefix caching, preemption and an adaptive
//! token budget, driven on its own thread through an [`EngineHandle`].

mod actor;
mod engine;
pub mod generate;
mod policy;
mod prefix_cache;
pub mod request;
pub mod sampler;
mod step;

pub use actor::EngineHandle;
pub use engine::{validate, Engine, EngineConfig, EngineMetrics};
pub use generate::{GenerateError, GenerationStats, Generator, StopReason};
pub use policy::BudgetPolicy;
pub use prefix_cache::PrefixCache;
pub use request::{
    Event, EventSink, FinishReason, Request, RequestError, RequestId, RequestParams, Sink,
    TokenLogprob, MAX_TOP_LOGPROBS,
};
pub use sampler::{PenaltyScope, Sampler, SamplerConfig, SamplerError};

//! The engine: sampling and generation loops over the model's forward pass. Today one sequence at a
//! time for the CLI; the scheduler (continuous batching) will drive the same forward with many.

pub mod generate;
pub mod sampler;

pub use generate::{GenerateError, GenerationStats, Generator, StopReason};
pub use sampler::{Sampler, SamplerConfig, SamplerError};

//! Errors of model loading and the forward pass.

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("unknown architecture '{0}' (supported: {supported})", supported = crate::ArchSpec::supported().join(", "))]
    UnknownArchitecture(String),
    #[error("metadata key '{key}' is missing")]
    MissingMetadata { key: String },
    #[error("metadata key '{key}' is invalid: {reason}")]
    InvalidMetadata { key: String, reason: String },
    #[error("tensor '{name}' is missing")]
    MissingTensor { name: String },
    #[error("tensor '{name}': {reason}")]
    BadTensor { name: String, reason: String },
    #[error("token id {token} is outside the vocabulary of {vocab}")]
    TokenOutOfRange { token: u64, vocab: usize },
    #[error("KV cache full: {needed_tokens} tokens needed, capacity {capacity}")]
    KvCacheFull { needed_tokens: usize, capacity: usize },
    #[error("cannot fork the first {len} tokens of a sequence that holds {have}")]
    ForkBeyondEnd { len: usize, have: usize },
    #[error("{blocks} blocks cannot hold a sequence of {len} tokens, or one of them is free")]
    BadBlocks { len: usize, blocks: usize },
    #[error("sequence {0} is not in the KV cache")]
    UnknownSequence(u32),
    #[error("sequence would reach position {needed}, past the context length {context}")]
    ContextExceeded { needed: usize, context: usize },
    #[error("kernel failed in '{name}': {reason}")]
    Kernel { name: String, reason: String },
    #[error("a {kv} KV cache needs heads of whole {block}-value blocks; this model's heads have {head_dim}", block = kv.block_len())]
    KvTypeUnfit { kv: crate::KvType, head_dim: usize },
    #[error("{0}")]
    Format(#[from] llmopt_formats::gguf::GgufError),
}

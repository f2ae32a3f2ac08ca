//! Errors raised while building a tokenizer or chat template from GGUF metadata.
//!
//! Every variant names the metadata key involved, so a broken or unsupported model file says
//! exactly which field is missing or wrong.

/// Why a [`crate::Tokenizer`] or [`crate::ChatTemplate`] could not be built or used.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A required metadata key is absent.
    #[error("missing GGUF metadata key `{key}`")]
    MissingKey { key: &'static str },
    /// A key is present but has the wrong type or an invalid value.
    #[error("invalid GGUF metadata key `{key}`: expected {expected}, found {found}")]
    InvalidKey { key: &'static str, expected: &'static str, found: String },
    /// `tokenizer.ggml.model` names a tokenizer family we do not implement.
    #[error(
        "unsupported tokenizer model `{0}` (key `tokenizer.ggml.model`; supported: gpt2, llama)"
    )]
    UnsupportedModel(String),
    /// `tokenizer.ggml.pre` names a pre-tokenizer we do not implement.
    #[error("unsupported pre-tokenizer `{0}` (key `tokenizer.ggml.pre`)")]
    UnsupportedPre(String),
    /// The chat template in `tokenizer.chat_template` failed to parse or render.
    #[error("chat template (key `tokenizer.chat_template`): {0}")]
    Template(String),
}

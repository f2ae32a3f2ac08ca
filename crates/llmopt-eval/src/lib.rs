//! Accuracy measurement against baselines: perplexity and the KL divergence of a candidate model
//! from a base model's saved distributions, both computed exactly as llama.cpp's `llama-perplexity`
//! does (`--kl-divergence-base` / `--kl-divergence`), so our figures compare with its figures
//! number for number. The library reads and writes through `Read`/`Write`; paths are the CLI's.
//! Also: multiple-choice task accuracy (`tasks`) and long-context needle retrieval and perplexity
//! by position (`long_context`).

pub mod base_logits;
pub mod compare;
pub mod kld;
pub mod long_context;
pub mod perplexity;
pub mod tasks;

pub use base_logits::{BaseFileError, BaseHeader, LogProbRecord};
pub use kld::{
    compare_with_base, save_base, token_kld, Estimate, KldError, KldPercentiles, KldReport,
    KldSums, TokenKld,
};
pub use long_context::{LongContextConfig, LongContextError, LongContextReport};
pub use perplexity::{
    perplexity, strip_final_newline, PerplexityConfig, PerplexityError, PerplexityReport,
};
pub use tasks::{QuestionScores, ScoreConfig, TaskError, TaskReport};

//! Accuracy measurement against baselines. Today: perplexity computed exactly as llama.cpp's
//! `llama-perplexity` does, so our figures compare with its figures number for number.

pub mod perplexity;

pub use perplexity::{
    perplexity, strip_final_newline, PerplexityConfig, PerplexityError, PerplexityReport,
};

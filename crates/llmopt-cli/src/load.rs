//! Opening a model file for the commands: the GGUF map, the decoder, the tokenizer and a thread pool.

use std::sync::Arc;

use anyhow::{Context, Result};
use llmopt_formats::gguf::GgufFile;
use llmopt_kernels::ThreadPool;
use llmopt_model::Model;
use llmopt_tokenizer::{ChatTemplate, Tokenizer};

use crate::cli::RunArgs;

/// Everything a command needs to run a model.
pub struct Loaded {
    pub file: Arc<GgufFile>,
    pub model: Model,
    pub tokenizer: Tokenizer,
    pub pool: ThreadPool,
}

impl Loaded {
    /// Opens `--model` and builds the model and tokenizer, with the shared run flags: `--threads`
    /// (default: the physical cores), `--no-repack` (without it, the weights of formats with
    /// interleaved kernels are repacked at load) and `--kv` (the type of the KV caches it makes).
    pub fn open(run: &RunArgs) -> Result<Self> {
        let path = &run.model;
        let file = Arc::new(
            GgufFile::open(path)
                .with_context(|| format!("cannot load model {}", path.display()))?,
        );
        let mut model = Model::from_gguf(file.clone())
            .with_context(|| format!("cannot load model {}", path.display()))?;
        let tokenizer = Tokenizer::from_gguf(file.metadata())
            .with_context(|| format!("cannot build the tokenizer of {}", path.display()))?;
        let threads = match run.threads {
            Some(0) => anyhow::bail!("invalid --threads 0: must be at least 1"),
            Some(n) => n,
            None => physical_cores(),
        };
        if !run.no_repack {
            model.pack_weights();
        }
        model.config = model
            .config
            .clone()
            .with_kv_type(run.kv)
            .with_context(|| format!("cannot use --kv {} with {}", run.kv, path.display()))?;
        Ok(Self { file, model, tokenizer, pool: ThreadPool::new(threads) })
    }

    /// The model's chat template; a model without one (e.g. a base model) gets its family's turn
    /// format (Gemma's, else ChatML), as llama.cpp does, with a note on stderr.
    #[allow(clippy::print_stderr)]
    pub fn chat_template(&self) -> Result<ChatTemplate> {
        let meta = self.file.metadata();
        if meta.get("tokenizer.chat_template").is_none() {
            eprintln!(
                "note: {} has no chat template; using its family's built-in turn format",
                self.file.path().display()
            );
        }
        ChatTemplate::from_gguf_or_builtin(meta).context("cannot read the chat template")
    }

    /// Whether `id` ends a generation (EOS, end-of-turn).
    pub fn is_eog(&self, id: u32) -> bool {
        self.tokenizer.is_eog(id)
    }
}

/// Physical cores (distinct core ids per package in /proc/cpuinfo), else the logical CPU count.
pub fn physical_cores() -> usize {
    let logical = std::thread::available_parallelism().map_or(1, |n| n.get());
    let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else { return logical };
    let (mut phys, mut cores) = (String::new(), std::collections::HashSet::new());
    for line in info.lines() {
        if let Some((k, v)) = line.split_once(':') {
            match k.trim() {
                "physical id" => phys = v.trim().to_string(),
                "core id" => {
                    cores.insert((phys.clone(), v.trim().to_string()));
                }
                _ => {}
            }
        }
    }
    if cores.is_empty() {
        logical
    } else {
        cores.len().min(logical)
    }
}

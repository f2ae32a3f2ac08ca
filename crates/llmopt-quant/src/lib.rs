//! Quantization of GGUF models with proof of what it cost: a [`Plan`] says which tensor becomes
//! which format (llama.cpp's rules, `--keep` overrides, fallbacks named), [`write_quantized`]
//! streams the re-encoded file, and [`imatrix`] collects per-column importance from calibration
//! text through the model's observer, in llama.cpp's file format.
//!
//! Formats come from `llmopt_tensor::FORMATS`: a format can be written once its row has an
//! encoder, and [`encode::weighted_encoder`] is the one place that picks importance-weighted
//! encoding. Methods: round to nearest (`rtn`), importance-weighted (`imatrix`), [`gptq`] and [`awq`]
//! (activation-aware channel scaling, folded into the norms and up rows, then importance-weighted),
//! and [`smooth`] (SmoothQuant's scales for W8A8's per-token int8 activations, folded the same way).

pub mod alloc;
pub mod auto;
pub mod awq;
pub mod encode;
pub mod ftype;
pub mod gptq;
pub mod imatrix;
pub mod keep;
pub mod plan;
pub mod provenance;
pub mod rules;
pub mod sensitivity;
pub mod smooth;
pub mod write;

use std::path::PathBuf;

use llmopt_model::ModelError;
use llmopt_tensor::{GgmlType, TensorError};

pub use auto::{AutoSpace, AutoSummary, Budget};
pub use ftype::{
    encodable_formats, encodable_names, file_type_names, parse_file_type, parse_format, FileType,
    FILE_TYPES,
};
pub use gptq::{GptqConfig, Hessians};
pub use imatrix::{calibrate, CalibConfig, CalibInfo, Imatrix};
pub use keep::KeepRule;
pub use plan::{Fallback, FallbackReason, Plan, PlanConfig, TensorPlan};
pub use provenance::{output_metadata, Provenance};
pub use rules::Choice;
pub use write::{write_quantized, Job, Written};

/// Why a quantization cannot be planned or written; each says what was expected and found.
#[derive(Debug, thiserror::Error)]
pub enum QuantError {
    #[error("unknown format '{name}' (formats this build writes: {available})")]
    UnknownFormat { name: String, available: String },
    #[error(
        "{} is an activation format, not a weight format (formats this build writes: {available})",
        ty.name()
    )]
    NotAWeightFormat { ty: GgmlType, available: String },
    #[error("{} has no encoder in this build yet (formats this build writes: {available})", ty.name())]
    NoEncoder { ty: GgmlType, available: String },
    #[error("invalid --keep rule '{rule}': {reason}")]
    BadKeep { rule: String, reason: String },
    #[error("--keep '{rule}' matches no quantizable tensor{}", match unquantized {
        Some(n) => format!(" (only {n} and others that are never quantized)"),
        None => String::new(),
    })]
    KeepMatchesNothing { rule: String, unquantized: Option<String> },
    #[error("cannot use the importance file {path}: {reason}")]
    ImatrixFile { path: PathBuf, reason: String },
    #[error("the importance data do not fit this model: entry {name}: {reason}")]
    ImatrixMismatch { name: String, reason: String },
    #[error("cannot calibrate: {reason}")]
    BadCalibration { reason: String },
    #[error("{tensor}: row {row} of the source decodes to {value}: the source file is damaged")]
    NonFinite { tensor: String, row: usize, value: f32 },
    #[error("GPTQ cannot encode {tensor}: {reason}")]
    Gptq { tensor: String, reason: String },
    #[error("cannot plan for {budget}: {reason}")]
    BadBudget { budget: String, reason: String },
    #[error("the plan was made for another file")]
    PlanMismatch,
    #[error("cannot write the output: {0}")]
    Write(#[source] std::io::Error),
    #[error(transparent)]
    Tensor(#[from] TensorError),
    #[error(transparent)]
    Model(#[from] ModelError),
}

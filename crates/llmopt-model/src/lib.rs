//! The generic decoder: an [`ArchSpec`] (data) says how llama, qwen2 and gemma3 differ; one forward
//! pass runs them all over a ragged batch and a paged KV cache, through `Linear`s that passes can rewrite.

pub mod arch;
pub mod attention;
mod attention_prefill;
pub mod config;
mod error;
pub mod forward;
pub mod hf;
pub mod kv_cache;
mod kv_type;
pub mod linear;
pub mod model;
pub mod observer;
pub mod ops;
mod rotation;

pub use arch::ArchSpec;
pub use config::ModelConfig;
pub use error::ModelError;
pub use forward::{Logits, SeqInput, Workspace};
pub use hf::{HfLoadError, SafetensorsSource};
pub use kv_cache::{BlockId, KvCache, SeqId, DEFAULT_BLOCK_SIZE};
pub use kv_type::{KvType, UnknownKvType, KV_TYPES};
pub use linear::{Bytes, Linear, Weight};
pub use model::{Layer, Model, SourceTensor, TensorSource};
pub use observer::{Observer, Step};
pub use rotation::{rotation_chunk, RotationSite, Rotations};

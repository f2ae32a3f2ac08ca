//! Errors of the GGUF reader: each names the field and the byte offset where reading failed.

use std::path::PathBuf;

/// Why a GGUF file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("cannot open {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("not a GGUF file: expected magic \"GGUF\" at offset 0, found {found:?}")]
    NotGguf { found: [u8; 4] },
    #[error("unsupported GGUF version {version} (this reader handles versions 2 and 3)")]
    UnsupportedVersion { version: u32 },
    #[error(
        "truncated file: {field} at byte offset {offset} needs {needed} bytes, file has {len}"
    )]
    Truncated { field: String, offset: u64, needed: u64, len: u64 },
    #[error("corrupt file: {field} at byte offset {offset}: {reason}")]
    Corrupt { field: String, offset: u64, reason: String },
    #[error(
        "tensor '{tensor}' (info at byte offset {offset}) has tensor type {type_id}, \
         which this build does not support"
    )]
    UnsupportedTensorType { tensor: String, type_id: u32, offset: u64 },
}

//! Dtypes and the ggml quant-format table.
//!
//! Every storage format we read or write is one row of [`FORMATS`] (a [`FormatSpec`]): block
//! length, bytes per block, its scalar decoder (`to_f32`), its scalar reference encoder
//! (`from_f32`), its importance-weighted encoder (`from_f32_weighted`, where ggml has one) and
//! the activation format its dot products use. Nothing else in the workspace should `match` on
//! [`GgmlType`] to learn those facts: adding a format is one row here plus one codec (and kernels
//! in `llmopt-kernels`), the way ggml's `type_traits` works.
//!
//! Besides ggml's types (MXFP4 included, id 39), the table holds llmopt's own formats with ids
//! from 200 (MXFP8, INT8_PC, FP8_PC, NF4, INT4_G128; see [`GgmlType::is_llmopt_only`]). The
//! per-channel ones carry a per-row header (`FormatSpec::row_header`, their f32 scale), so row
//! sizes always come from [`GgmlType::row_bytes`], never from `block_bytes` alone.
//!
//! ggml's block layouts are byte-identical to its `ggml-common.h`, little-endian, and are handled as
//! byte slices (no `#[repr(C)]` casts), so data straight from an mmapped GGUF file needs no
//! alignment. Decoders reproduce ggml's `dequantize_row_*` bit for bit (same float operations in
//! the same order, never fused); encoders reproduce ggml's `quantize_row_*_ref`, and weighted
//! encoders what `ggml_quantize_chunk` writes given an importance matrix.

mod codec;
mod format;

pub use codec::float::{bf16_to_f32, f16_to_f32, f32_to_bf16, f32_to_f16};
pub use codec::int4::G128;
pub use codec::kquants::{get_scale_min_k4, q3_k_scales, q6_k_value};
pub use codec::mx::{
    e8m0_half_to_f32, e8m0_to_f32, f32_to_e4m3, E2M1_VALUES, E4M3_MAX, E4M3_TO_F32,
};
pub use codec::nf4::{NF4_BLOCK, NF4_LEVELS};
pub use format::{DecodeFn, EncodeFn, EncodeWeightedFn, FormatSpec, GgmlType, FORMATS};

/// Elements per super-block of the K-quants (`QK_K` in ggml).
pub const QK_K: usize = 256;
/// Elements per block of the legacy formats Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1.
pub const QK: usize = 32;

/// Errors from format lookups and codecs; each says what was expected and what was found.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum TensorError {
    /// A ggml type id that is not in [`FORMATS`].
    #[error("unknown or unsupported ggml type id {0}")]
    UnknownType(u32),
    /// A row length that is not a whole number of blocks.
    #[error("{ty} needs a multiple of {block_len} elements, found {n_elems}")]
    NotBlockMultiple {
        /// The format.
        ty: GgmlType,
        /// Elements per block of `ty`.
        block_len: usize,
        /// The length asked for.
        n_elems: usize,
    },
    /// A buffer of the wrong size.
    #[error("{what}: expected {expected} {unit}, found {found}")]
    LengthMismatch {
        /// Which buffer.
        what: &'static str,
        /// Expected length.
        expected: usize,
        /// Actual length.
        found: usize,
        /// "bytes" or "elements".
        unit: &'static str,
    },
    /// The format has no reference encoder yet.
    #[error("no f32 -> {0} quantizer is implemented")]
    NoQuantizer(GgmlType),
}

//! CPU kernels for the decoder: quantized and float matrix-vector / matrix-matrix products, and
//! the persistent [`ThreadPool`] that runs them.
//!
//! Key choices, following ggml: activations are first quantized to the weight format's
//! `vec_dot_type` (Q8_0, Q8_1, Q8_K, F16, ...) so the inner loops are integer dots; every format
//! has a scalar reference in [`reference`] that defines correct results, and SIMD paths (in
//! `x86/`, one module per instruction set) are chosen at run time through a per-[`Isa`] table of
//! fn pointers ([`Kernels`]) built once. Nothing is read from the environment: pass an [`Isa`]
//! explicitly (e.g. [`Isa::Scalar`] in tests) or let [`matmul`] use [`Isa::best`].

pub mod act;
pub mod attn_tile;
mod dispatch;
pub mod f16ops;
pub mod huge;
pub mod kv;
mod matmul;
mod packed;
mod pool;
pub mod reference;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use dispatch::{Isa, Kernels, QuantizeFn, TileFn, TileKernel, VecDotFn};
pub use matmul::{matmul, matmul_many, matmul_many_with, matmul_with, WeightView};
pub use packed::{PackedWeight, PACK_ROWS};
pub use pool::ThreadPool;

use llmopt_tensor::{GgmlType, TensorError};

/// Errors from kernel entry points; each says what was expected and what was found.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum KernelError {
    /// A buffer whose length does not fit the shapes.
    #[error("{what}: expected {expected} elements/bytes, found {found}")]
    Shape {
        /// Which buffer.
        what: &'static str,
        /// Its expected length.
        expected: usize,
        /// Its actual length.
        found: usize,
    },
    /// No kernel for this weight type.
    #[error("no {isa:?} matmul kernel for weight type {ty}")]
    Unsupported {
        /// The weight type.
        ty: GgmlType,
        /// The instruction set asked for.
        isa: Isa,
    },
    /// The CPU lacks the instruction set asked for.
    #[error("this CPU does not support {0:?}")]
    IsaUnavailable(Isa),
    /// A format-level error (e.g. a row that is not whole blocks).
    #[error(transparent)]
    Tensor(#[from] TensorError),
}

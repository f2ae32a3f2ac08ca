//! Scalar reference kernels: the definition of "correct" for every fast path.
//!
//! Each `vec_dot_<w>_<a>(n, w, a)` has the math and rounding structure of ggml's
//! `ggml_vec_dot_<w>_<a>_generic`: an exact integer dot per block (or sub-block), then f32
//! scaling in ggml's order. Float dots accumulate in f64 like ggml's scalar `ggml_vec_dot_f32`.
//! The activation quantizers equal ggml's `quantize_row_*_ref` (they are the
//! `llmopt-tensor` encoders).

mod float;
mod kquants;
mod legacy;

pub use float::{vec_dot_bf16_bf16, vec_dot_f16_f16, vec_dot_f32_f32};
pub use kquants::{
    vec_dot_q2_k_q8_k, vec_dot_q3_k_q8_k, vec_dot_q4_k_q8_k, vec_dot_q5_k_q8_k, vec_dot_q6_k_q8_k,
};
pub use legacy::{
    vec_dot_q4_0_q8_0, vec_dot_q4_1_q8_1, vec_dot_q5_0_q8_0, vec_dot_q5_1_q8_1, vec_dot_q8_0_q8_0,
};

use llmopt_tensor::GgmlType;

fn encode(ty: GgmlType, x: &[f32], y: &mut [u8]) {
    (ty.spec().from_f32.expect("activation formats have encoders"))(x, y)
}

/// ggml's `quantize_row_q8_0_ref` (scale `amax / 127`, `roundf`).
pub fn quantize_row_q8_0(x: &[f32], y: &mut [u8]) {
    encode(GgmlType::Q8_0, x, y)
}

/// ggml's `quantize_row_q8_1_ref` (as q8_0, plus `s = d * sum(qs)` as f16).
pub fn quantize_row_q8_1(x: &[f32], y: &mut [u8]) {
    encode(GgmlType::Q8_1, x, y)
}

/// ggml's `quantize_row_q8_K_ref` (scale `-127 / max`, round to nearest even, block sums).
pub fn quantize_row_q8_k(x: &[f32], y: &mut [u8]) {
    encode(GgmlType::Q8_K, x, y)
}

/// f32 to f16, round to nearest even.
pub fn quantize_row_f16(x: &[f32], y: &mut [u8]) {
    encode(GgmlType::F16, x, y)
}

/// f32 to bf16 as ggml's `GGML_FP32_TO_BF16`.
pub fn quantize_row_bf16(x: &[f32], y: &mut [u8]) {
    encode(GgmlType::BF16, x, y)
}

/// f32 "quantizer" (a copy), for completeness of the table.
pub fn quantize_row_f32(x: &[f32], y: &mut [u8]) {
    encode(GgmlType::F32, x, y)
}

#[inline(always)]
pub(crate) fn rd_f16(b: &[u8], off: usize) -> f32 {
    llmopt_tensor::f16_to_f32(u16::from_le_bytes([b[off], b[off + 1]]))
}

#[inline(always)]
pub(crate) fn rd_f32(b: &[u8], off: usize) -> f32 {
    f32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

#[inline(always)]
pub(crate) fn rd_i16(b: &[u8], off: usize) -> i16 {
    i16::from_le_bytes([b[off], b[off + 1]])
}

//! Scalar reference kernels: the definition of "correct" for every fast path.
//!
//! Each `vec_dot_<w>_<a>(n, w, a)` has the math and rounding structure of ggml's
//! `ggml_vec_dot_<w>_<a>_generic`: an exact integer dot per block (or sub-block), then f32
//! scaling in ggml's order. Float dots accumulate in f64 like ggml's scalar `ggml_vec_dot_f32`.
//! The activation quantizers are those llama.cpp's x86 build runs: Q8_0/Q8_1 (and INT8_PC rows,
//! the same rounding over a whole row) with `127 / amax`, the rest ggml's `quantize_row_*_ref`
//! (the `llmopt-tensor` encoders).

mod float;
mod kquants;
mod legacy;
mod lowbit;
mod mx;

pub use float::{vec_dot_bf16_bf16, vec_dot_f16_f16, vec_dot_f32_f32};
pub use kquants::{
    vec_dot_q2_k_q8_k, vec_dot_q3_k_q8_k, vec_dot_q4_k_q8_k, vec_dot_q5_k_q8_k, vec_dot_q6_k_q8_k,
};
pub use legacy::{
    vec_dot_q4_0_q8_0, vec_dot_q4_1_q8_1, vec_dot_q5_0_q8_0, vec_dot_q5_1_q8_1, vec_dot_q8_0_q8_0,
};
pub use lowbit::{
    vec_dot_int4_g128_q8_1, vec_dot_int8_pc_q8_0, vec_dot_nf4_f32, vec_dot_w8a16_int16_pc,
    vec_dot_w8a8_int8_pc,
};
pub use mx::{vec_dot_fp8_pc_f32, vec_dot_mxfp4_q8_0, vec_dot_mxfp8_f32};

use llmopt_tensor::GgmlType;

fn encode(ty: GgmlType, x: &[f32], y: &mut [u8]) {
    (ty.spec().from_f32.expect("activation formats have encoders"))(x, y)
}

/// One block of activations as ggml's x86 `quantize_row_q8_0`: `d = amax / 127`, values times
/// `127 / amax` rounded half to even. (Weights use the tensor crate's `_ref` codec, which divides by
/// `d` and rounds half away from zero, as llama-quantize does.) Returns `(d, sum of qs)`.
fn q8_activation_block(x: &[f32], qs: &mut [u8]) -> (f32, i32) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let mut sum = 0;
    for (q, &v) in qs.iter_mut().zip(x) {
        let i = (v * id).round_ties_even() as i32;
        sum += i;
        *q = i as i8 as u8;
    }
    (d, sum)
}

/// Q8_0 activations as llama.cpp's x86 build makes them (see `q8_activation_block`).
pub fn quantize_row_q8_0(x: &[f32], y: &mut [u8]) {
    assert!(x.len().is_multiple_of(32) && y.len() == x.len() / 32 * 34, "q8_0: bad lengths");
    for (xb, yb) in x.chunks_exact(32).zip(y.chunks_exact_mut(34)) {
        let (d, _) = q8_activation_block(xb, &mut yb[2..]);
        yb[..2].copy_from_slice(&llmopt_tensor::f32_to_f16(d).to_le_bytes());
    }
}

/// Q8_1 activations as llama.cpp's x86 build makes them, plus `s = d * sum(qs)` as f16.
pub fn quantize_row_q8_1(x: &[f32], y: &mut [u8]) {
    assert!(x.len().is_multiple_of(32) && y.len() == x.len() / 32 * 36, "q8_1: bad lengths");
    for (xb, yb) in x.chunks_exact(32).zip(y.chunks_exact_mut(36)) {
        let (d, sum) = q8_activation_block(xb, &mut yb[4..]);
        yb[..2].copy_from_slice(&llmopt_tensor::f32_to_f16(d).to_le_bytes());
        yb[2..4].copy_from_slice(&llmopt_tensor::f32_to_f16(d * sum as f32).to_le_bytes());
    }
}

/// INT8_PC activations, one token's row: `d = amax / 127` as f32 (4 bytes), then the row's values
/// times `127 / amax` rounded half to even, as int8 — Q8_0's x86 rounding (`q8_activation_block`)
/// over the whole row, so W8A8's dot is one integer sum. (The tensor crate's `int8_pc` codec,
/// which weights use, divides by `d` and rounds half away from zero.)
pub fn quantize_row_int8_pc(x: &[f32], y: &mut [u8]) {
    assert!(x.len().is_multiple_of(32) && y.len() == 4 + x.len(), "int8_pc: bad lengths");
    let (d, _) = q8_activation_block(x, &mut y[4..]);
    y[..4].copy_from_slice(&d.to_le_bytes());
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

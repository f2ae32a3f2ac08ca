//! F32, F16 and BF16 dots, accumulated in f64 like ggml's scalar `ggml_vec_dot_{f32,f16,bf16}`.

use llmopt_tensor::{bf16_to_f32, f16_to_f32};

fn dot_by(n: usize, w: &[u8], a: &[u8], size: usize, cvt: impl Fn(&[u8]) -> f32) -> f32 {
    assert!(w.len() >= n * size && a.len() >= n * size, "vec_dot: rows shorter than {n}");
    let mut sum = 0.0f64;
    for (x, y) in w.chunks_exact(size).zip(a.chunks_exact(size)).take(n) {
        sum += f64::from(cvt(x) * cvt(y));
    }
    sum as f32
}

/// Dot of two f32 rows of `n` elements (little-endian bytes).
pub fn vec_dot_f32_f32(n: usize, w: &[u8], a: &[u8]) -> f32 {
    dot_by(n, w, a, 4, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Dot of two f16 rows of `n` elements.
pub fn vec_dot_f16_f16(n: usize, w: &[u8], a: &[u8]) -> f32 {
    dot_by(n, w, a, 2, |b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
}

/// Dot of two bf16 rows of `n` elements.
pub fn vec_dot_bf16_bf16(n: usize, w: &[u8], a: &[u8]) -> f32 {
    dot_by(n, w, a, 2, |b| bf16_to_f32(u16::from_le_bytes([b[0], b[1]])))
}

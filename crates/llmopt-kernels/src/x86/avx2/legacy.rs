//! AVX2 dots of Q4_0, Q5_0, Q8_0 (with Q8_0 activations) and Q4_1, Q5_1 (with Q8_1): one 32-element
//! block per step, `maddubs` integer products, an FMA into 8 float lanes per block.

use std::arch::x86_64::*;

use super::util::*;

/// Q4_0 x Q8_0. Caller guarantees whole blocks (checked by the dispatcher's asserts).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn vec_dot_q4_0_q8_0(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = n / 32;
    assert!(w.len() >= nb * 18 && a.len() >= nb * 34);
    let mut acc = _mm256_setzero_ps();
    for (x, y) in w.chunks_exact(18).zip(a.chunks_exact(34)).take(nb) {
        let d = _mm256_set1_ps(f16_at(x, 0) * f16_at(y, 0));
        let qx = _mm256_sub_epi8(bytes_from_nibbles_32(x, 2), _mm256_set1_epi8(8));
        let q = mul_sum_i8_pairs_float(qx, load32(y, 2));
        acc = _mm256_fmadd_ps(d, q, acc);
    }
    hsum_f32_8(acc)
}

/// Q4_1 x Q8_1.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn vec_dot_q4_1_q8_1(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = n / 32;
    assert!(w.len() >= nb * 20 && a.len() >= nb * 36);
    let mut acc = _mm256_setzero_ps();
    let mut summs = 0.0f32;
    for (x, y) in w.chunks_exact(20).zip(a.chunks_exact(36)).take(nb) {
        summs += f16_at(x, 2) * f16_at(y, 2);
        let d = _mm256_set1_ps(f16_at(x, 0) * f16_at(y, 0));
        let q = mul_sum_us8_pairs_float(bytes_from_nibbles_32(x, 4), load32(y, 4));
        acc = _mm256_fmadd_ps(d, q, acc);
    }
    hsum_f32_8(acc) + summs
}

/// Q5_1 x Q8_1 (ggml's AVX2 order: `summs` in block order, one FMA per block).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn vec_dot_q5_1_q8_1(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = n / 32;
    assert!(w.len() >= nb * 24 && a.len() >= nb * 36);
    let mut acc = _mm256_setzero_ps();
    let mut summs = 0.0f32;
    for (x, y) in w.chunks_exact(24).zip(a.chunks_exact(36)).take(nb) {
        summs += f16_at(x, 2) * f16_at(y, 2);
        let d = _mm256_set1_ps(f16_at(x, 0) * f16_at(y, 0));
        let qh = u32::from_le_bytes([x[4], x[5], x[6], x[7]]);
        let hi = _mm256_and_si256(bytes_from_bits_32(qh), _mm256_set1_epi8(0x10));
        let qx = _mm256_or_si256(bytes_from_nibbles_32(x, 8), hi);
        let q = mul_sum_us8_pairs_float(qx, load32(y, 4));
        acc = _mm256_fmadd_ps(d, q, acc);
    }
    hsum_f32_8(acc) + summs
}

/// Q5_0 x Q8_0.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn vec_dot_q5_0_q8_0(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = n / 32;
    assert!(w.len() >= nb * 22 && a.len() >= nb * 34);
    let mut acc = _mm256_setzero_ps();
    for (x, y) in w.chunks_exact(22).zip(a.chunks_exact(34)).take(nb) {
        let d = _mm256_set1_ps(f16_at(x, 0) * f16_at(y, 0));
        let qh = u32::from_le_bytes([x[2], x[3], x[4], x[5]]);
        // Where the fifth bit is clear, OR in 0xF0: the byte then reads as nibble - 16.
        let hi = _mm256_andnot_si256(bytes_from_bits_32(qh), _mm256_set1_epi8(0xf0u8 as i8));
        let qx = _mm256_or_si256(bytes_from_nibbles_32(x, 6), hi);
        let q = mul_sum_i8_pairs_float(qx, load32(y, 2));
        acc = _mm256_fmadd_ps(d, q, acc);
    }
    hsum_f32_8(acc)
}

/// Q8_0 x Q8_0.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn vec_dot_q8_0_q8_0(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = n / 32;
    assert!(w.len() >= nb * 34 && a.len() >= nb * 34);
    let mut acc = _mm256_setzero_ps();
    for (x, y) in w.chunks_exact(34).zip(a.chunks_exact(34)).take(nb) {
        let d = _mm256_set1_ps(f16_at(x, 0) * f16_at(y, 0));
        let q = mul_sum_i8_pairs_float(load32(x, 2), load32(y, 2));
        acc = _mm256_fmadd_ps(d, q, acc);
    }
    hsum_f32_8(acc)
}

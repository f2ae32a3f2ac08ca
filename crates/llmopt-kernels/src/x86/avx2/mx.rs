//! AVX2 dots of llmopt's non-ggml formats and MXFP4: MXFP4 (E2M1 codes to int8 by `pshufb`, as
//! ggml's AVX2 path), INT8_PC and INT4_G128 (`maddubs` integer sums), and the f32-activation
//! formats: E4M3 bytes widened to f16 by a shift (exact, 2^-8 of the value) and NF4 levels by
//! two `vpermps` lookups, then FMAs in 8 lanes.

use std::arch::x86_64::*;

use llmopt_tensor::{e8m0_half_to_f32, e8m0_to_f32, E2M1_VALUES, NF4_LEVELS};

use super::util::*;

/// MXFP4 x Q8_0.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn vec_dot_mxfp4_q8_0(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = n / 32;
    assert!(w.len() >= nb * 17 && a.len() >= nb * 34);
    // SAFETY: E2M1_VALUES is 16 readable bytes.
    let table = unsafe { _mm_loadu_si128(E2M1_VALUES.as_ptr().cast()) };
    let m4 = _mm_set1_epi8(0x0f);
    let mut acc = _mm256_setzero_ps();
    for (x, y) in w.chunks_exact(17).zip(a.chunks_exact(34)).take(nb) {
        let s = &x[1..17];
        // SAFETY: `s` is exactly 16 readable bytes; `loadu` has no alignment requirement.
        let bits = unsafe { _mm_loadu_si128(s.as_ptr().cast()) };
        let lo = _mm_shuffle_epi8(table, _mm_and_si128(bits, m4));
        let hi = _mm_shuffle_epi8(table, _mm_and_si128(_mm_srli_epi16(bits, 4), m4));
        let q = _mm256_set_m128i(hi, lo);
        let d = _mm256_set1_ps(f16_at(y, 0) * e8m0_half_to_f32(x[0]));
        acc = _mm256_fmadd_ps(d, mul_sum_i8_pairs_float(q, load32(y, 2)), acc);
    }
    hsum_f32_8(acc)
}

/// INT8_PC x Q8_0.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn vec_dot_int8_pc_q8_0(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = n / 32;
    assert!(w.len() >= 4 + n && a.len() >= nb * 34);
    let mut acc = _mm256_setzero_ps();
    for (x, y) in w[4..4 + n].chunks_exact(32).zip(a.chunks_exact(34)) {
        let q = mul_sum_i8_pairs_float(load32(x, 0), load32(y, 2));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(f16_at(y, 0)), q, acc);
    }
    hsum_f32_8(acc) * f32::from_le_bytes([w[0], w[1], w[2], w[3]])
}

/// INT4_G128 x Q8_1.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn vec_dot_int4_g128_q8_1(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let ng = n / 128;
    assert!(w.len() >= ng * 68 && a.len() >= ng * 4 * 36);
    let m4 = _mm256_set1_epi8(0x0f);
    let mut acc = _mm256_setzero_ps();
    let mut summs = 0.0f32;
    for (x, ys) in w.chunks_exact(68).zip(a.chunks_exact(4 * 36)).take(ng) {
        let (d, m) = (f16_at(x, 0), f16_at(x, 2));
        let (b0, b1) = (load32(x, 4), load32(x, 36));
        let qs = [
            _mm256_and_si256(b0, m4),
            _mm256_and_si256(b1, m4),
            _mm256_and_si256(_mm256_srli_epi16(b0, 4), m4),
            _mm256_and_si256(_mm256_srli_epi16(b1, 4), m4),
        ];
        for (q, y) in qs.into_iter().zip(ys.chunks_exact(36)) {
            summs += m * f16_at(y, 2);
            let p = mul_sum_us8_pairs_float(q, load32(y, 4));
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d * f16_at(y, 0)), p, acc);
        }
    }
    hsum_f32_8(acc) + summs
}

/// 16 E4M3 bytes at `q` as two vectors of 8 floats, each 2^-8 of the E4M3 value: byte
/// `s eeee mmm` becomes the f16 `s 0eeee mmm0000000` (exact, subnormals included).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn e4m3x16(q: &[u8]) -> (__m256, __m256) {
    let s = &q[..16];
    // SAFETY: `s` is exactly 16 readable bytes; `loadu` has no alignment requirement.
    let b = _mm256_cvtepu8_epi16(unsafe { _mm_loadu_si128(s.as_ptr().cast()) });
    let mag = _mm256_slli_epi16(_mm256_and_si256(b, _mm256_set1_epi16(0x7f)), 7);
    let sign = _mm256_slli_epi16(_mm256_and_si256(b, _mm256_set1_epi16(0x80)), 8);
    let h = _mm256_or_si256(mag, sign);
    (_mm256_cvtph_ps(_mm256_castsi256_si128(h)), _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1)))
}

/// 8 f32 activations from `a[off..off + 32]`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn load8f(a: &[u8], off: usize) -> __m256 {
    let s = &a[off..off + 32];
    // SAFETY: `s` is exactly 32 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_ps(s.as_ptr().cast()) }
}

/// The E4M3 dot of one 32-element block with 32 f32 activations, 8 lanes (2^-8 of the value).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn e4m3_block(q: &[u8], a: &[u8], mut acc: __m256) -> __m256 {
    let (w0, w1) = e4m3x16(q);
    let (w2, w3) = e4m3x16(&q[16..]);
    acc = _mm256_fmadd_ps(w0, load8f(a, 0), acc);
    acc = _mm256_fmadd_ps(w1, load8f(a, 32), acc);
    acc = _mm256_fmadd_ps(w2, load8f(a, 64), acc);
    _mm256_fmadd_ps(w3, load8f(a, 96), acc)
}

/// MXFP8 x f32.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn vec_dot_mxfp8_f32(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = n / 32;
    assert!(w.len() >= nb * 33 && a.len() >= 4 * n);
    let mut acc = _mm256_setzero_ps();
    for (x, y) in w.chunks_exact(33).zip(a.chunks_exact(128)).take(nb) {
        let s = e4m3_block(&x[1..], y, _mm256_setzero_ps());
        acc = _mm256_fmadd_ps(_mm256_set1_ps(e8m0_to_f32(x[0]) * 256.0), s, acc);
    }
    hsum_f32_8(acc)
}

/// FP8_PC x f32.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn vec_dot_fp8_pc_f32(n: usize, w: &[u8], a: &[u8]) -> f32 {
    assert!(n.is_multiple_of(32) && w.len() >= 4 + n && a.len() >= 4 * n);
    let mut acc = _mm256_setzero_ps();
    for (x, y) in w[4..4 + n].chunks_exact(32).zip(a.chunks_exact(128)) {
        acc = e4m3_block(x, y, acc);
    }
    hsum_f32_8(acc) * (f32::from_le_bytes([w[0], w[1], w[2], w[3]]) * 256.0)
}

/// NF4 x f32.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn vec_dot_nf4_f32(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = n / 64;
    assert!(w.len() >= nb * 34 && a.len() >= 4 * n);
    let t = nf4_table();
    let mut acc = _mm256_setzero_ps();
    for (x, y) in w.chunks_exact(34).zip(a.chunks_exact(256)).take(nb) {
        let mut s = _mm256_setzero_ps();
        for g in 0..4 {
            let (lo, hi) = nf4x8(t, &x[2 + 8 * g..]);
            s = _mm256_fmadd_ps(lo, load8f(y, 32 * g), s);
            s = _mm256_fmadd_ps(hi, load8f(y, 128 + 32 * g), s);
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(f16_at(x, 0)), s, acc);
    }
    hsum_f32_8(acc)
}

/// NF4's 16 levels as two vectors of 8 (for [`nf4x8`]).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn nf4_table() -> (__m256, __m256) {
    // SAFETY: NF4_LEVELS is 16 readable f32s.
    unsafe { (_mm256_loadu_ps(NF4_LEVELS.as_ptr()), _mm256_loadu_ps(NF4_LEVELS.as_ptr().add(8))) }
}

/// The levels of the 8 bytes at `q[..8]`: low nibbles, then high nibbles, 8 floats each. The
/// level of each 4-bit index: `vpermps` uses the low 3 bits, bit 3 (moved to the sign) picks the
/// table half.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn nf4x8((lo_t, hi_t): (__m256, __m256), q: &[u8]) -> (__m256, __m256) {
    let level = |idx: __m256i| {
        let pick = _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28));
        _mm256_blendv_ps(
            _mm256_permutevar8x32_ps(lo_t, idx),
            _mm256_permutevar8x32_ps(hi_t, idx),
            pick,
        )
    };
    let bytes = &q[..8];
    // SAFETY: `bytes` is exactly 8 readable bytes.
    let b = _mm256_cvtepu8_epi32(unsafe { _mm_loadl_epi64(bytes.as_ptr().cast()) });
    let m4 = _mm256_set1_epi32(0x0f);
    (level(_mm256_and_si256(b, m4)), level(_mm256_and_si256(_mm256_srli_epi32(b, 4), m4)))
}

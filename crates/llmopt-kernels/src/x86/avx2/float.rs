//! AVX2 + FMA dots of F32 and F16 rows (F16C conversion), 4 x 8 lanes, scalar tail.

use std::arch::x86_64::*;

use super::util::hsum_f32_8;

#[target_feature(enable = "avx2,fma,f16c")]
fn ld_f32(b: &[u8], i: usize) -> __m256 {
    let s = &b[4 * i..4 * i + 32];
    // SAFETY: `s` is 32 readable bytes; `loadu` needs no alignment.
    unsafe { _mm256_loadu_ps(s.as_ptr().cast()) }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn ld_f16(b: &[u8], i: usize) -> __m256 {
    let s = &b[2 * i..2 * i + 16];
    // SAFETY: `s` is 16 readable bytes; `loadu` needs no alignment.
    _mm256_cvtph_ps(unsafe { _mm_loadu_si128(s.as_ptr().cast()) })
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn dot_by(
    n: usize,
    w: &[u8],
    a: &[u8],
    ld: impl Fn(&[u8], usize) -> __m256,
    tail: fn(&[u8], usize) -> f32,
) -> f32 {
    let mut acc = [_mm256_setzero_ps(); 4];
    let n32 = n / 32 * 32;
    let mut i = 0;
    while i < n32 {
        for (k, s) in acc.iter_mut().enumerate() {
            *s = _mm256_fmadd_ps(ld(w, i + 8 * k), ld(a, i + 8 * k), *s);
        }
        i += 32;
    }
    while i + 8 <= n {
        acc[0] = _mm256_fmadd_ps(ld(w, i), ld(a, i), acc[0]);
        i += 8;
    }
    let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut sum = hsum_f32_8(s);
    for j in i..n {
        sum += tail(w, j) * tail(a, j);
    }
    sum
}

/// F32 x F32.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn vec_dot_f32_f32(n: usize, w: &[u8], a: &[u8]) -> f32 {
    assert!(w.len() >= 4 * n && a.len() >= 4 * n);
    dot_by(
        n,
        w,
        a,
        |b, i| ld_f32(b, i),
        |b, j| f32::from_le_bytes([b[4 * j], b[4 * j + 1], b[4 * j + 2], b[4 * j + 3]]),
    )
}

/// F16 x F16.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn vec_dot_f16_f16(n: usize, w: &[u8], a: &[u8]) -> f32 {
    assert!(w.len() >= 2 * n && a.len() >= 2 * n);
    dot_by(
        n,
        w,
        a,
        |b, i| ld_f16(b, i),
        |b, j| llmopt_tensor::f16_to_f32(u16::from_le_bytes([b[2 * j], b[2 * j + 1]])),
    )
}

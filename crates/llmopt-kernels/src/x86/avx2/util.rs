//! Small AVX2 helpers shared by the kernels (ggml's `hsum_float_8`, `bytes_from_nibbles_32`, ...).

use std::arch::x86_64::*;

/// Sum of the 8 lanes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn hsum_f32_8(x: __m256) -> f32 {
    let r = _mm_add_ps(_mm256_extractf128_ps(x, 1), _mm256_castps256_ps128(x));
    let r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    let r = _mm_add_ss(r, _mm_movehdup_ps(r));
    _mm_cvtss_f32(r)
}

/// Sum of the 8 i32 lanes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn hsum_i32_8(a: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
    let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01));
    _mm_cvtsi128_si32(s)
}

/// The f16 at `b[off..off + 2]` as f32, with F16C.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn f16_at(b: &[u8], off: usize) -> f32 {
    let bits = u16::from_le_bytes([b[off], b[off + 1]]);
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(bits))))
}

/// 32 bytes from `b[off..off + 32]`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn load32(b: &[u8], off: usize) -> __m256i {
    let s = &b[off..off + 32];
    // SAFETY: `s` is exactly 32 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_si256(s.as_ptr().cast()) }
}

/// 16 nibble bytes at `b[off..off + 16]` to 32 bytes: low nibbles first, then high nibbles.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn bytes_from_nibbles_32(b: &[u8], off: usize) -> __m256i {
    let s = &b[off..off + 16];
    // SAFETY: `s` is exactly 16 readable bytes; `loadu` has no alignment requirement.
    let tmp = unsafe { _mm_loadu_si128(s.as_ptr().cast()) };
    let both = _mm256_insertf128_si256(_mm256_castsi128_si256(tmp), _mm_srli_epi16(tmp, 4), 1);
    _mm256_and_si256(_mm256_set1_epi8(0x0f), both)
}

/// Byte `i` is 0xFF where bit `i` of the 32-bit word is set, else 0.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn bytes_from_bits_32(bits: u32) -> __m256i {
    let shuf =
        _mm256_setr_epi64x(0, 0x0101_0101_0101_0101, 0x0202_0202_0202_0202, 0x0303_0303_0303_0303);
    let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(bits as i32), shuf);
    let bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe));
    _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1))
}

/// Sum of adjacent pairs of unsigned(`ax`) * signed(`sy`) bytes, as 8 floats of 4-byte sums.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn mul_sum_us8_pairs_float(ax: __m256i, sy: __m256i) -> __m256 {
    let dot = _mm256_maddubs_epi16(ax, sy);
    _mm256_cvtepi32_ps(_mm256_madd_epi16(dot, _mm256_set1_epi16(1)))
}

/// As [`mul_sum_us8_pairs_float`] for two signed byte vectors (sign moved onto `y`).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn mul_sum_i8_pairs_float(x: __m256i, y: __m256i) -> __m256 {
    mul_sum_us8_pairs_float(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x))
}

/// The 8 sub-block scales and 8 mins of a Q4_K block's 12 scale bytes, by ggml's `utmp` word
/// masks: the same values as `get_scale_min_k4(j)` for `j in 0..8`, without 16 byte lookups.
pub(super) fn scales_mins_k4(s: &[u8]) -> ([u8; 8], [u8; 8]) {
    const K1: u32 = 0x3f3f_3f3f;
    const K2: u32 = 0x0f0f_0f0f;
    const K3: u32 = 0x0303_0303;
    let u = |i: usize| u32::from_le_bytes([s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]]);
    let (u0, u1, u2) = (u(0), u(1), u(2));
    let sc = u64::from(u0 & K1) | u64::from((u2 & K2) | (((u0 >> 6) & K3) << 4)) << 32;
    let mn = u64::from(u1 & K1) | u64::from(((u2 >> 4) & K2) | (((u1 >> 6) & K3) << 4)) << 32;
    (sc.to_le_bytes(), mn.to_le_bytes())
}

/// Asserts that `buf` holds `rows` rows `stride` bytes apart, each using its first `used` bytes:
/// the bound a kernel checks once before it reads those rows without bounds checks.
#[track_caller]
#[inline]
pub(super) fn assert_rows(buf: &[u8], rows: usize, stride: usize, used: usize) {
    assert!(
        rows > 0 && stride >= used && buf.len() >= (rows - 1) * stride + used,
        "{rows} rows of {used} bytes, {stride} apart, do not fit in {} bytes",
        buf.len()
    );
}

/// Asserts what a tile of `R` weight rows by `T` token rows reads and writes: `w` holds R rows
/// (`w_row` bytes apart, `w_used` bytes each), `a` T rows (`a_row` apart, `a_used` each), and
/// `out` R x T results.
#[track_caller]
#[inline]
pub(super) fn check_tile<const R: usize, const T: usize>(
    (w, w_row, w_used): (&[u8], usize, usize),
    (a, a_row, a_used): (&[u8], usize, usize),
    out: &[f32],
) {
    assert!(R > 0 && T > 0 && out.len() >= R * T, "a {R} x {T} tile into {} results", out.len());
    assert_rows(w, R, w_row, w_used);
    assert_rows(a, T, a_row, a_used);
}

/// Asserts that a kernel's results `out[t * stride + r]` equal `want(r, t)` bit for bit, for
/// `rows` rows and `toks` tokens; `what` names the case in a failure.
#[cfg(test)]
#[track_caller]
pub(super) fn assert_bitwise(
    out: &[f32],
    stride: usize,
    (rows, toks): (usize, usize),
    want: impl Fn(usize, usize) -> f32,
    what: &str,
) {
    for t in 0..toks {
        for r in 0..rows {
            let (got, want) = (out[t * stride + r], want(r, t));
            assert_eq!(got.to_bits(), want.to_bits(), "{what} r={r} t={t}: {got} vs {want}");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn scales_mins_k4_equals_get_scale_min_k4() {
        let mut s = [0u8; 12];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..1000 {
            for b in &mut s {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *b = state as u8;
            }
            let (sc, mn) = super::scales_mins_k4(&s);
            for j in 0..8 {
                assert_eq!((sc[j], mn[j]), llmopt_tensor::get_scale_min_k4(j, &s), "{s:?} j={j}");
            }
        }
    }
}

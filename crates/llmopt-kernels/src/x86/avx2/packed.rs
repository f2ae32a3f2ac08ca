//! AVX2 kernels over row-interleaved weights ([`crate::PackedWeight`]): one 256-bit register holds
//! the same 4 consecutive elements of 8 rows, so a token's 4 activation bytes are broadcast
//! (`set1_epi32`) and one `maddubs` multiplies them into 8 rows at once. Per block and token the
//! 8 rows' integer sums end in one register: one convert and one FMA with (8 row scales x token
//! scale), instead of one of each per (row, token) pair.
//!
//! i16 headroom: a Q4 weight is an unsigned nibble (0..=15) and an activation byte is i8
//! (-128..=127), so one `maddubs` lane (two products) is at most 2 * 15 * 128 = 3840 in
//! magnitude, and the 8 `maddubs` of a block (4 chunks x low/high nibbles) sum to at most
//! 30720 < 32767: a whole block accumulates in i16, then one `madd` with ones gives i32. Q8_0
//! weights (|w| <= 128 after the sign trick, activations |y| <= 127) reach 32512 in one lane, so
//! each chunk goes to i32 at once. Q5_0 weights, used unsigned (0..=31), reach
//! 2 * 31 * 128 = 7936 per lane and `maddubs`: 4 of them (31744) accumulate in i16, so a block's
//! 8 take two `madd`s to i32.

use std::arch::x86_64::*;

use super::util::{assert_rows, f16_at};
use crate::dispatch::BLOCK_INFO;

/// Bytes of one 8-row block record: Q4_0 (8 d + 4 x 32 nibble bytes).
pub(crate) const REC_Q4_0: usize = 16 + 128;
/// Q4_1: 8 d, 8 m, 4 x 32 nibble bytes.
pub(crate) const REC_Q4_1: usize = 32 + 128;
/// Q8_0: 8 d, 8 x 32 bytes.
pub(crate) const REC_Q8_0: usize = 16 + 256;
/// Q5_0: 8 d, 4 x 32 nibble bytes, 32 bytes of 5th bits.
pub(crate) const REC_Q5_0: usize = 16 + 128 + 32;

/// The shapes every packed kernel relies on: `out` holds `T` tokens x 8 rows, `w` `nb` records of
/// `rec` bytes, `a` `T` token rows of `nb` activation blocks of `ab` bytes, and `sums` (where the
/// kernel reads it) `T x nb` block records.
#[allow(clippy::too_many_arguments)]
pub(super) fn check<const T: usize>(
    nb: usize,
    w: &[u8],
    rec: usize,
    a: &[u8],
    a_row: usize,
    ab: usize,
    sums: Option<&[u8]>,
    out: &[f32],
) {
    assert!(T > 0 && out.len() >= 8 * T, "{T} tokens x 8 rows into {} results", out.len());
    assert_rows(w, 1, nb * rec, nb * rec);
    assert_rows(a, T, a_row, nb * ab);
    if let Some(s) = sums {
        assert!(s.len() >= T * nb * BLOCK_INFO);
    }
}

/// Writes the `T` tokens' 8-row results: `out[t * 8 + r]`.
#[target_feature(enable = "avx2")]
#[inline]
pub(super) fn store<const T: usize>(acc: &[__m256; T], out: &mut [f32]) {
    for (o, a) in out.chunks_exact_mut(8).zip(acc) {
        // SAFETY: `o` is 8 writable floats; `storeu` has no alignment requirement.
        unsafe { _mm256_storeu_ps(o.as_mut_ptr(), *a) };
    }
}

/// The 4 bytes at `p` broadcast to all 8 lanes.
///
/// # Safety
/// `p..p + 4` must be readable.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) unsafe fn bcast4(p: *const u8) -> __m256i {
    // SAFETY: the caller guarantees 4 readable bytes; unaligned read.
    _mm256_set1_epi32(unsafe { std::ptr::read_unaligned(p.cast::<i32>()) })
}

/// The two 4-byte words of token `t`'s record of block `b` in `sums` ([`BLOCK_INFO`]), as raw
/// bits: Q8_0 minus the quant sum (i32) and `d` (f32), Q8_1 `d` and `s` (f32). The one place the
/// kernels (8 and 16 rows) find a record.
///
/// # Safety
/// `sums` holds at least `(t * nb + b + 1) * BLOCK_INFO` bytes (the kernels' `check`).
#[inline(always)]
pub(super) unsafe fn record(sums: &[u8], nb: usize, t: usize, b: usize) -> [u32; 2] {
    // SAFETY: the record's 8 bytes are in `sums` (caller); unaligned reads.
    unsafe {
        let p = sums.as_ptr().add((t * nb + b) * BLOCK_INFO);
        [std::ptr::read_unaligned(p.cast::<u32>()), std::ptr::read_unaligned(p.add(4).cast())]
    }
}

/// Token `t`'s record of block `b` in `sums` ([`BLOCK_INFO`]): `2^SHIFT x` minus the block's
/// quant sum in all 8 lanes. Added to an unsigned-weight dot with an offset of `2^SHIFT`, it
/// gives the signed dot.
///
/// # Safety
/// As [`record`].
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) unsafe fn block_offset<const SHIFT: i32>(
    sums: &[u8],
    nb: usize,
    t: usize,
    b: usize,
) -> __m256i {
    // SAFETY: the caller's.
    let [neg, _] = unsafe { record(sums, nb, t, b) };
    _mm256_slli_epi32::<SHIFT>(_mm256_set1_epi32(neg as i32))
}

/// Token `t`'s scale of block `b` from its record in `sums`, in all 8 lanes.
///
/// # Safety
/// As [`record`].
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) unsafe fn block_scale(sums: &[u8], nb: usize, t: usize, b: usize) -> __m256 {
    // SAFETY: the caller's.
    let [_, d] = unsafe { record(sums, nb, t, b) };
    _mm256_set1_ps(f32::from_bits(d))
}

/// Token `t`'s Q8_1 `d` and `s` of block `b` from its record in `sums`, each in all 8 lanes.
///
/// # Safety
/// As [`record`].
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) unsafe fn block_d_s(sums: &[u8], nb: usize, t: usize, b: usize) -> (__m256, __m256) {
    // SAFETY: the caller's.
    let [d, s] = unsafe { record(sums, nb, t, b) };
    (_mm256_set1_ps(f32::from_bits(d)), _mm256_set1_ps(f32::from_bits(s)))
}

/// 8 f16 at `p` as 8 f32.
///
/// # Safety
/// `p..p + 16` must be readable.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn f16x8(p: *const u8) -> __m256 {
    // SAFETY: the caller guarantees 16 readable bytes; `loadu` has no alignment requirement.
    _mm256_cvtph_ps(unsafe { _mm_loadu_si128(p.cast()) })
}

/// The i16 sums of one Q4 block of 8 rows (nibble records at `q`) with `T` tokens' activation
/// quants (token `t` at `y + t * a_row`), pairs of products per lane as described above.
///
/// # Safety
/// `q..q + 128` and each token's 32 bytes must be readable.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn q4_block<const T: usize>(q: *const u8, y: *const u8, a_row: usize) -> [__m256i; T] {
    let m4 = _mm256_set1_epi8(0x0f);
    let mut s16 = [_mm256_setzero_si256(); T];
    for c in 0..4 {
        // SAFETY: inside the block's 128 nibble bytes (caller).
        let v = unsafe { _mm256_loadu_si256(q.add(32 * c).cast()) };
        let lo = _mm256_and_si256(v, m4);
        let hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
        for (t, s) in s16.iter_mut().enumerate() {
            // SAFETY: bytes 4c..4c+4 and 16+4c..20+4c of token t's 32 quants (caller).
            let (ylo, yhi) = unsafe {
                let yt = y.add(t * a_row);
                (bcast4(yt.add(4 * c)), bcast4(yt.add(16 + 4 * c)))
            };
            let p = _mm256_add_epi16(_mm256_maddubs_epi16(lo, ylo), _mm256_maddubs_epi16(hi, yhi));
            *s = _mm256_add_epi16(*s, p);
        }
    }
    s16
}

/// Q4_0 x Q8_0: 8 packed rows x `T` tokens into `out[t * 8 + r]`. Nibbles are used unsigned and
/// the -8 offset is taken off in integers: `sums` holds each token's block records (minus the
/// activation quants' sum, see [`BLOCK_INFO`]), so results equal the signed products exactly.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn packed_q4_0<const T: usize>(
    nb: usize,
    w: &[u8],
    a: &[u8],
    a_row: usize,
    sums: &[u8],
    out: &mut [f32],
) {
    check::<T>(nb, w, REC_Q4_0, a, a_row, 34, Some(sums), out);
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); T];
    for b in 0..nb {
        let rec = &w[b * REC_Q4_0..][..REC_Q4_0];
        // SAFETY: `rec` holds 16 scale bytes; `check` bounds every token's block.
        let (d, s16) = unsafe {
            (
                f16x8(rec.as_ptr()),
                q4_block::<T>(rec.as_ptr().add(16), a.as_ptr().add(b * 34 + 2), a_row),
            )
        };
        for (t, acc_t) in acc.iter_mut().enumerate() {
            // SAFETY: `check` asserted `sums` holds `T * nb` records.
            let (off, dy) =
                unsafe { (block_offset::<3>(sums, nb, t, b), block_scale(sums, nb, t, b)) };
            let s32 = _mm256_add_epi32(_mm256_madd_epi16(s16[t], ones), off);
            *acc_t = _mm256_fmadd_ps(_mm256_mul_ps(d, dy), _mm256_cvtepi32_ps(s32), *acc_t);
        }
    }
    store(&acc, out);
}

/// Q4_1 x Q8_1: 8 packed rows x `T` tokens; the min term is `m_r * s_t` (`s` = d * sum of the
/// activation block, carried by Q8_1), `d` and `s` read as f32 from the block records.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn packed_q4_1<const T: usize>(
    nb: usize,
    w: &[u8],
    a: &[u8],
    a_row: usize,
    sums: &[u8],
    out: &mut [f32],
) {
    check::<T>(nb, w, REC_Q4_1, a, a_row, 36, Some(sums), out);
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); T];
    for b in 0..nb {
        let rec = &w[b * REC_Q4_1..][..REC_Q4_1];
        // SAFETY: `rec` holds 32 scale bytes; `check` bounds every token's block.
        let (d, m, s16) = unsafe {
            (
                f16x8(rec.as_ptr()),
                f16x8(rec.as_ptr().add(16)),
                q4_block::<T>(rec.as_ptr().add(32), a.as_ptr().add(b * 36 + 4), a_row),
            )
        };
        for (t, acc_t) in acc.iter_mut().enumerate() {
            // SAFETY: `check` asserted `sums` holds `T * nb` records.
            let (dy, sy) = unsafe { block_d_s(sums, nb, t, b) };
            let s32 = _mm256_madd_epi16(s16[t], ones);
            let v = _mm256_fmadd_ps(_mm256_mul_ps(d, dy), _mm256_cvtepi32_ps(s32), *acc_t);
            *acc_t = _mm256_fmadd_ps(m, sy, v);
        }
    }
    store(&acc, out);
}

/// Q8_0 x Q8_0: 8 packed rows x `T` tokens, signed bytes through the sign trick
/// (`|w|` unsigned, the activation takes `w`'s sign), each chunk widened to i32 at once.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn packed_q8_0<const T: usize>(
    nb: usize,
    w: &[u8],
    a: &[u8],
    a_row: usize,
    _sums: &[u8],
    out: &mut [f32],
) {
    check::<T>(nb, w, REC_Q8_0, a, a_row, 34, None, out);
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); T];
    for b in 0..nb {
        let rec = &w[b * REC_Q8_0..][..REC_Q8_0];
        // SAFETY: `rec` holds 16 scale bytes.
        let d = unsafe { f16x8(rec.as_ptr()) };
        let mut s32 = [_mm256_setzero_si256(); T];
        for c in 0..8 {
            // SAFETY: chunk c of the record's 256 quant bytes.
            let v = unsafe { _mm256_loadu_si256(rec.as_ptr().add(16 + 32 * c).cast()) };
            let av = _mm256_sign_epi8(v, v);
            for (t, s) in s32.iter_mut().enumerate() {
                // SAFETY: bytes 4c..4c+4 of token t's block quants (`check`).
                let y = unsafe { bcast4(a.as_ptr().add(t * a_row + b * 34 + 2 + 4 * c)) };
                let p = _mm256_maddubs_epi16(av, _mm256_sign_epi8(y, v));
                *s = _mm256_add_epi32(*s, _mm256_madd_epi16(p, ones));
            }
        }
        for (t, acc_t) in acc.iter_mut().enumerate() {
            let dy = f16_at(a, t * a_row + b * 34);
            *acc_t = _mm256_fmadd_ps(
                _mm256_mul_ps(d, _mm256_set1_ps(dy)),
                _mm256_cvtepi32_ps(s32[t]),
                *acc_t,
            );
        }
    }
    store(&acc, out);
}

/// Q5_0 x Q8_0: 8 packed rows x `T` tokens. The whole 5-bit quants (0..=31) are used unsigned
/// and the -16 offset is taken off in integers with `sums` (as [`packed_q4_0`]), so results equal
/// the signed products exactly.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn packed_q5_0<const T: usize>(
    nb: usize,
    w: &[u8],
    a: &[u8],
    a_row: usize,
    sums: &[u8],
    out: &mut [f32],
) {
    check::<T>(nb, w, REC_Q5_0, a, a_row, 34, Some(sums), out);
    let ones = _mm256_set1_epi16(1);
    let (m4, m16) = (_mm256_set1_epi8(0x0f), _mm256_set1_epi8(0x10));
    let mut acc = [_mm256_setzero_ps(); T];
    for b in 0..nb {
        let rec = &w[b * REC_Q5_0..][..REC_Q5_0];
        // SAFETY: `rec` holds 16 scale bytes.
        let d = unsafe { f16x8(rec.as_ptr()) };
        // SAFETY: the record's 32 bytes of 5th bits after the nibbles.
        let h = unsafe { _mm256_loadu_si256(rec.as_ptr().add(144).cast()) };
        let mut s32 = [_mm256_setzero_si256(); T];
        for half in 0..2 {
            // Bit 2c (then 2c + 1) of each byte shifted to bit 4: chunk c's low (high) nibbles'
            // 5th bits. 16-bit shifts stay within each byte as long as no source bit crosses
            // a byte: h << 4 for chunks 0 and 1 (bits 0..=3), h for chunks 2 and 3 (bits 4..=7).
            let mut hb = if half == 0 { _mm256_slli_epi16(h, 4) } else { h };
            let mut s16 = [_mm256_setzero_si256(); T];
            for c in 2 * half..2 * half + 2 {
                // SAFETY: chunk c of the record's 128 nibble bytes.
                let v = unsafe { _mm256_loadu_si256(rec.as_ptr().add(16 + 32 * c).cast()) };
                let lo = _mm256_or_si256(_mm256_and_si256(v, m4), _mm256_and_si256(hb, m16));
                let hi = _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16(v, 4), m4),
                    _mm256_and_si256(_mm256_srli_epi16(hb, 1), m16),
                );
                hb = _mm256_srli_epi16(hb, 2);
                for (t, s) in s16.iter_mut().enumerate() {
                    // SAFETY: bytes 4c..4c+4 and 16+4c..20+4c of token t's quants (`check`).
                    let (ylo, yhi) = unsafe {
                        let yt = a.as_ptr().add(t * a_row + b * 34 + 2);
                        (bcast4(yt.add(4 * c)), bcast4(yt.add(16 + 4 * c)))
                    };
                    let p = _mm256_add_epi16(
                        _mm256_maddubs_epi16(lo, ylo),
                        _mm256_maddubs_epi16(hi, yhi),
                    );
                    *s = _mm256_add_epi16(*s, p);
                }
            }
            for (s, s16) in s32.iter_mut().zip(s16) {
                *s = _mm256_add_epi32(*s, _mm256_madd_epi16(s16, ones));
            }
        }
        for (t, acc_t) in acc.iter_mut().enumerate() {
            // SAFETY: `check` asserted `sums` holds `T * nb` records.
            let (off, dy) =
                unsafe { (block_offset::<4>(sums, nb, t, b), block_scale(sums, nb, t, b)) };
            let v = _mm256_add_epi32(s32[t], off);
            *acc_t = _mm256_fmadd_ps(_mm256_mul_ps(d, dy), _mm256_cvtepi32_ps(v), *acc_t);
        }
    }
    store(&acc, out);
}

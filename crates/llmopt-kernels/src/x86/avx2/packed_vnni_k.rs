//! Packed Q4_K and Q6_K x Q8_K for CPUs with AVX-512 VNNI (+VL), on 256-bit registers: one register
//! holds 4 consecutive nibbles of 8 rows, so a token's 4 activation bytes (broadcast) meet 8 rows
//! per `vpdpbusd`. Each 32-element sub-block's i32 sums are multiplied by the 8 rows' 6-bit scales
//! (`vpmulld`), and the min term `sum_j m_j (bsum_2j + bsum_2j+1)` is one `vpdpwssd` per sub-block
//! with the rows' mins as i16 pairs against Q8_K's pair of 16-element sums. Both sums are exact
//! integers; per super-block and token, `d dy` and `dmin dy` scale them in f32 for 8 rows. Q6_K is
//! the same with 16-element sub-blocks, 6-bit quants assembled from a nibble and 2 top bits, and
//! its -32 offset taken off through Q8_K's sums as Q4_K's mins.

use std::arch::x86_64::*;

use super::packed::{bcast4, check, store};

/// One 8-row Q4_K record: the rows' `d` and `dmin` (f16, 16 bytes each), the 6-bit scales and
/// mins unpacked to bytes (`[sub-block][row]`, 64 bytes each), then 4 sub-block pairs x 8 chunks
/// x 32 bytes, chunk `c` of pair `j` holding `qs[32 j + 4c..32 j + 4c + 4]` of row 0, 1, ... 7
/// (low nibbles: sub-block `2j`, high nibbles: `2j + 1`).
pub(crate) const REC_Q4_K: usize = 32 + 64 + 64 + 1024;
/// Offsets in a record: scales, mins, nibbles.
const SC: usize = 32;
const MN: usize = 96;
const QS: usize = 160;
/// Bytes of one Q8_K block: f32 `d`, 256 quants, 16 i16 sums of 16 quants.
const Q8K: usize = 292;

/// Adds, per token `t`, the 4 quant bytes at `ys[t] + off` (broadcast) times `lo` into `d0[t]` and
/// those at `ys[t] + off + gap` times `hi` into `d1[t]`: one chunk of two sub-blocks.
///
/// # Safety
/// Both 4-byte runs readable for every token; the CPU has AVX-512 VNNI + VL.
#[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
#[inline]
unsafe fn dot_chunk<const T: usize>(
    (d0, d1): (&mut [__m256i; T], &mut [__m256i; T]),
    (lo, hi): (__m256i, __m256i),
    ys: &[*const u8; T],
    (off, gap): (usize, usize),
) {
    for t in 0..T {
        // SAFETY: the caller's two runs of this token's block.
        let (yl, yh) = unsafe { (bcast4(ys[t].add(off)), bcast4(ys[t].add(off + gap))) };
        d0[t] = _mm256_dpbusd_epi32(d0[t], lo, yl);
        d1[t] = _mm256_dpbusd_epi32(d1[t], hi, yh);
    }
}

/// `acc[t] += w.lo16 * bsum[2k] + w.hi16 * bsum[2k + 1]` per token and row lane: 8 rows' i16
/// pairs (Q4_K's mins, Q6_K's scales) against Q8_K's sums of 16-quant groups `2k`, `2k + 1`.
///
/// # Safety
/// `ys[t]` points at a whole Q8_K block for every token; the CPU has AVX-512 VNNI + VL.
#[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
#[inline]
unsafe fn add_pair_sums<const T: usize>(
    acc: &mut [__m256i; T],
    w: __m256i,
    ys: &[*const u8; T],
    k: usize,
) {
    for (s, y) in acc.iter_mut().zip(ys) {
        // SAFETY: bytes 260 + 4k..264 + 4k of the block (the caller): sums 2k and 2k + 1.
        let pair = unsafe { bcast4(y.add(260 + 4 * k)) };
        *s = _mm256_dpwssd_epi32(*s, w, pair);
    }
}

/// `isum[t] += d0[t] * s0 + d1[t] * s1` per token: two sub-blocks' sums times their 8 rows' scales.
#[target_feature(enable = "avx2")]
#[inline]
fn add_scaled<const T: usize>(
    isum: &mut [__m256i; T],
    (d0, d1): (&[__m256i; T], &[__m256i; T]),
    (s0, s1): (__m256i, __m256i),
) {
    for t in 0..T {
        let s = _mm256_add_epi32(_mm256_mullo_epi32(d0[t], s0), _mm256_mullo_epi32(d1[t], s1));
        isum[t] = _mm256_add_epi32(isum[t], s);
    }
}

/// The 8 bytes at `p` as 8 i32 lanes (unsigned).
///
/// # Safety
/// `p..p + 8` readable.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn u8x8(p: *const u8) -> __m256i {
    // SAFETY: 8 readable bytes (caller); `loadl` needs no alignment.
    _mm256_cvtepu8_epi32(unsafe { _mm_loadl_epi64(p.cast()) })
}

/// Q4_K x Q8_K: 8 packed rows x `T` tokens into `out[t * 8 + r]` (`nb` super-blocks; `_sums`
/// unused).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
pub(crate) fn packed_q4_k<const T: usize>(
    nb: usize,
    w: &[u8],
    a: &[u8],
    a_row: usize,
    _sums: &[u8],
    out: &mut [f32],
) {
    check::<T>(nb, w, REC_Q4_K, a, a_row, Q8K, None, out);
    let m4 = _mm256_set1_epi8(0x0f);
    let mut acc = [_mm256_setzero_ps(); T];
    for b in 0..nb {
        // Every read below stays inside record `b` of `w` or block `b` of a token row of `a`:
        // `check` asserted `w` holds `nb` records and `a` `T` rows of `nb` Q8_K blocks.
        // SAFETY: record `b` starts inside `w` (as above).
        let rec = unsafe { w.as_ptr().add(b * REC_Q4_K) };
        let ys: [*const u8; T] = std::array::from_fn(|t| a[t * a_row + b * Q8K..].as_ptr());
        // SAFETY: the record's 32 bytes of f16 scales.
        let (d, dmin) = unsafe {
            (
                _mm256_cvtph_ps(_mm_loadu_si128(rec.cast())),
                _mm256_cvtph_ps(_mm_loadu_si128(rec.add(16).cast())),
            )
        };
        let mut msum = [_mm256_setzero_si256(); T];
        for j in 0..8 {
            // SAFETY: sub-block j's 8 mins in the record.
            let m = unsafe { u8x8(rec.add(MN + 8 * j)) };
            let mm = _mm256_or_si256(m, _mm256_slli_epi32::<16>(m));
            // SAFETY: Q8_K's i16 sums 2j and 2j + 1 of each token's block.
            unsafe { add_pair_sums(&mut msum, mm, &ys, j) };
        }
        let mut isum = [_mm256_setzero_si256(); T];
        for j in 0..4 {
            // SAFETY: sub-blocks 2j and 2j + 1's 8 scales in the record.
            let (scl, sch) =
                unsafe { (u8x8(rec.add(SC + 16 * j)), u8x8(rec.add(SC + 16 * j + 8))) };
            let mut dl = [_mm256_setzero_si256(); T];
            let mut dh = [_mm256_setzero_si256(); T];
            for c in 0..8 {
                // SAFETY: chunk c of pair j in the record.
                let v = unsafe { _mm256_loadu_si256(rec.add(QS + 256 * j + 32 * c).cast()) };
                let lo = _mm256_and_si256(v, m4);
                let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), m4);
                // SAFETY: quants 64j + 4c.. and 64j + 32 + 4c.. (4 each) of each token's block.
                unsafe { dot_chunk((&mut dl, &mut dh), (lo, hi), &ys, (4 + 64 * j + 4 * c, 32)) };
            }
            add_scaled(&mut isum, (&dl, &dh), (scl, sch));
        }
        for t in 0..T {
            // SAFETY: the token block's f32 scale, its first 4 bytes.
            let dy = _mm256_set1_ps(unsafe { std::ptr::read_unaligned(ys[t].cast::<f32>()) });
            acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(d, dy), _mm256_cvtepi32_ps(isum[t]), acc[t]);
            acc[t] = _mm256_fnmadd_ps(_mm256_mul_ps(dmin, dy), _mm256_cvtepi32_ps(msum[t]), acc[t]);
        }
    }
    store(&acc, out);
}

/// One 8-row Q6_K record: the rows' `d` (f16, 16 bytes); the 8-bit scales as i16-pair sources,
/// 16 bytes per pair `p` of 16-element sub-blocks (`[row][2]`: scales `2p`, `2p + 1` of row `r` at
/// `2r`, `2r + 1`); then per 32 elements 6 registers: 4 of nibbles as Q4_0's (low nibbles: chunk
/// `c`, high: chunk `c + 4`) and 2 of the top 2 bits (chunks `c` and `c + 4` at bits `2c, 2c + 1`
/// of byte `4 r + i`). 1680 bytes: Q6_K's own 210 per row, nothing added.
pub(crate) const REC_Q6_K: usize = 16 + 128 + 8 * 192;
/// Offsets in a Q6_K record: scales, quants.
const SC6: usize = 16;
const QS6: usize = 144;

/// The top 2 bits of chunk `c` (bits `2c, 2c + 1` of each byte of `h`) at bits 4 and 5: 16-bit
/// shifts, and the mask drops whatever crossed from the neighbouring byte.
#[target_feature(enable = "avx2")]
#[inline]
fn top2(h: __m256i, c: usize) -> __m256i {
    let m = _mm256_set1_epi8(0x30);
    match c {
        0 => _mm256_and_si256(_mm256_slli_epi16::<4>(h), m),
        1 => _mm256_and_si256(_mm256_slli_epi16::<2>(h), m),
        2 => _mm256_and_si256(h, m),
        _ => _mm256_and_si256(_mm256_srli_epi16::<2>(h), m),
    }
}

/// Q6_K x Q8_K: 8 packed rows x `T` tokens into `out[t * 8 + r]` (`nb` super-blocks; `_sums`
/// unused). Quants are used unsigned (0..=63) and the -32 offset is taken off per super-block as
/// `32 sum_s sc_s bsum_s` (`vpdpwssd` of the rows' scale pairs with Q8_K's pair sums).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
pub(crate) fn packed_q6_k<const T: usize>(
    nb: usize,
    w: &[u8],
    a: &[u8],
    a_row: usize,
    _sums: &[u8],
    out: &mut [f32],
) {
    check::<T>(nb, w, REC_Q6_K, a, a_row, Q8K, None, out);
    let m4 = _mm256_set1_epi8(0x0f);
    let mut acc = [_mm256_setzero_ps(); T];
    for b in 0..nb {
        // Every read below stays inside record `b` of `w` or block `b` of a token row of `a`
        // (`check`: `nb` records, `T` rows of `nb` Q8_K blocks).
        // SAFETY: record `b` starts inside `w` (as above).
        let rec = unsafe { w.as_ptr().add(b * REC_Q6_K) };
        let ys: [*const u8; T] = std::array::from_fn(|t| a[t * a_row + b * Q8K..].as_ptr());
        // SAFETY: the record's 16 bytes of f16 scales.
        let d = unsafe { _mm256_cvtph_ps(_mm_loadu_si128(rec.cast())) };
        let mut isum = [_mm256_setzero_si256(); T];
        let mut osum = [_mm256_setzero_si256(); T];
        for p in 0..8 {
            // SAFETY: pair p's 16 scale bytes in the record.
            let pair =
                _mm256_cvtepi8_epi16(unsafe { _mm_loadu_si128(rec.add(SC6 + 16 * p).cast()) });
            // SAFETY: Q8_K's i16 sums 2p and 2p + 1 of each token's block.
            unsafe { add_pair_sums(&mut osum, pair, &ys, p) };
            // Sub-blocks 2p and 2p + 1 are the 32 elements of group p.
            let (sc0, sc1) = (
                _mm256_srai_epi32::<16>(_mm256_slli_epi32::<16>(pair)),
                _mm256_srai_epi32::<16>(pair),
            );
            let g = QS6 + 192 * p;
            // SAFETY: group p's two registers of top bits in the record.
            let (h0, h1) = unsafe {
                (
                    _mm256_loadu_si256(rec.add(g + 128).cast()),
                    _mm256_loadu_si256(rec.add(g + 160).cast()),
                )
            };
            let mut d0 = [_mm256_setzero_si256(); T];
            let mut d1 = [_mm256_setzero_si256(); T];
            for c in 0..4 {
                // SAFETY: nibble register c of group p in the record.
                let v = unsafe { _mm256_loadu_si256(rec.add(g + 32 * c).cast()) };
                let lo = _mm256_or_si256(_mm256_and_si256(v, m4), top2(h0, c));
                let hi =
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(v), m4), top2(h1, c));
                // SAFETY: quants 32p + 4c.. and 32p + 16 + 4c.. (4 each) of each token's block.
                unsafe { dot_chunk((&mut d0, &mut d1), (lo, hi), &ys, (4 + 32 * p + 4 * c, 16)) };
            }
            add_scaled(&mut isum, (&d0, &d1), (sc0, sc1));
        }
        for t in 0..T {
            let i = _mm256_sub_epi32(isum[t], _mm256_slli_epi32::<5>(osum[t]));
            // SAFETY: the token block's f32 scale, its first 4 bytes.
            let dy = _mm256_set1_ps(unsafe { std::ptr::read_unaligned(ys[t].cast::<f32>()) });
            acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(d, dy), _mm256_cvtepi32_ps(i), acc[t]);
        }
    }
    store(&acc, out);
}

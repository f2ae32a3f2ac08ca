//! The packed Q4_0, Q4_1, Q5_0 and Q8_0 kernels of [`super::packed`] for CPUs with AVX-512 VNNI
//! (+VL), on 256-bit registers (EVEX-encoded, so all 32 are the compiler's): `vpdpbusd` multiplies
//! unsigned weight bytes with signed activation bytes and adds each lane's 4 products straight into
//! i32, so there is no i16 stage to saturate and no `madd` with ones. Q8_0 weights are made
//! unsigned by flipping the sign bit (`w + 128`, one `xor` per chunk shared by all tokens); that
//! `128 x` the activation block sum, as Q4_0's `8 x` and Q5_0's `16 x`, is taken off by starting
//! each block's first i32 chain at minus it (from the block records,
//! [`crate::dispatch::BLOCK_INFO`]), whose f32 scale also spares an f16 conversion per block.
//! Results equal the AVX2 kernels' bit for bit (same integers, same float ops). W8A8 (VNNI only)
//! keeps the reference's whole-row i32 sum and its one float step, so it equals the reference.

use std::arch::x86_64::*;

use super::packed::{
    block_d_s, block_offset, block_scale, check, store, REC_Q4_0, REC_Q4_1, REC_Q5_0, REC_Q8_0,
};

/// Whether this CPU runs these kernels (on top of AVX2 + FMA + F16C).
pub(crate) fn available() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512vnni")
        && is_x86_feature_detected!("avx512vl")
}

/// `acc + ` the 4-byte dot products of unsigned `u` with the signed 4 bytes at `p` (broadcast)
/// per i32 lane: `vpdpbusd`, no saturation; the compiler folds the broadcast into the instruction's
/// memory operand (`{1to8}`).
///
/// # Safety
/// `p..p + 4` must be readable, and the CPU must have AVX-512 VNNI + VL ([`available`]).
#[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
#[inline]
unsafe fn dpbusd(acc: __m256i, u: __m256i, p: *const u8) -> __m256i {
    // SAFETY: reads the 4 bytes at `p` (caller); unaligned read.
    let y = _mm256_set1_epi32(unsafe { std::ptr::read_unaligned(p.cast::<i32>()) });
    _mm256_dpbusd_epi32(acc, u, y)
}

/// Starts block `b`'s first i32 chain per token at `2^SHIFT x` minus its activation sum.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
#[inline]
fn start_block<const SHIFT: i32, const T: usize>(sums: &[u8], nb: usize, b: usize) -> [__m256i; T] {
    let mut chain = [_mm256_setzero_si256(); T];
    for (t, c) in chain.iter_mut().enumerate() {
        // SAFETY: the kernels' `check` asserted `sums` holds `T * nb` records.
        *c = unsafe { block_offset::<SHIFT>(sums, nb, t, b) };
    }
    chain
}

/// Ends block `b`: per token, the two i32 chains' sum times the 8 row scales `d` and the token's
/// scale, added into `acc` (the same float ops as the AVX2 kernels).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
#[inline]
fn end_block<const T: usize>(
    acc: &mut [__m256; T],
    (s0, s1): (&[__m256i; T], &[__m256i; T]),
    d: __m256,
    (sums, nb, b): (&[u8], usize, usize),
) {
    for t in 0..T {
        let s32 = _mm256_add_epi32(s0[t], s1[t]);
        // SAFETY: as in `start_block`.
        let dy = unsafe { block_scale(sums, nb, t, b) };
        acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(d, dy), _mm256_cvtepi32_ps(s32), acc[t]);
    }
}

/// Q4_0 x Q8_0 as [`super::packed::packed_q4_0`], the low and high nibbles in two i32 chains.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
pub(crate) fn packed_q4_0<const T: usize>(
    nb: usize,
    w: &[u8],
    a: &[u8],
    a_row: usize,
    sums: &[u8],
    out: &mut [f32],
) {
    check::<T>(nb, w, REC_Q4_0, a, a_row, 34, Some(sums), out);
    let m4 = _mm256_set1_epi8(0x0f);
    let mut acc = [_mm256_setzero_ps(); T];
    for b in 0..nb {
        let rec = &w[b * REC_Q4_0..][..REC_Q4_0];
        // SAFETY: `rec` holds 16 scale bytes.
        let d = _mm256_cvtph_ps(unsafe { _mm_loadu_si128(rec.as_ptr().cast()) });
        let mut s_lo = start_block::<3, T>(sums, nb, b);
        let mut s_hi = [_mm256_setzero_si256(); T];
        for c in 0..4 {
            // SAFETY: chunk c of the record's 128 nibble bytes.
            let v = unsafe { _mm256_loadu_si256(rec.as_ptr().add(16 + 32 * c).cast()) };
            let lo = _mm256_and_si256(v, m4);
            let hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
            for t in 0..T {
                // SAFETY: bytes 4c..4c+4 and 16+4c..20+4c of token t's block quants (`check`);
                // VNNI checked before these kernels are handed out.
                unsafe {
                    let yt = a.as_ptr().add(t * a_row + b * 34 + 2);
                    s_lo[t] = dpbusd(s_lo[t], lo, yt.add(4 * c));
                    s_hi[t] = dpbusd(s_hi[t], hi, yt.add(16 + 4 * c));
                }
            }
        }
        end_block(&mut acc, (&s_lo, &s_hi), d, (sums, nb, b));
    }
    store(&acc, out);
}

/// Q4_1 x Q8_1 as [`super::packed::packed_q4_1`]: nibbles straight into two i32 chains (no
/// offset: Q4_1's min is the float term `m_r * s_t`, `s` = Q8_1's `d x` block sum; `d` and `s`
/// as f32 from the block records).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
pub(crate) fn packed_q4_1<const T: usize>(
    nb: usize,
    w: &[u8],
    a: &[u8],
    a_row: usize,
    sums: &[u8],
    out: &mut [f32],
) {
    check::<T>(nb, w, REC_Q4_1, a, a_row, 36, Some(sums), out);
    let m4 = _mm256_set1_epi8(0x0f);
    let mut acc = [_mm256_setzero_ps(); T];
    for b in 0..nb {
        let rec = &w[b * REC_Q4_1..][..REC_Q4_1];
        // SAFETY: `rec` holds 16 bytes of `d`, then 16 of `m`.
        let (d, m) = unsafe {
            (
                _mm256_cvtph_ps(_mm_loadu_si128(rec.as_ptr().cast())),
                _mm256_cvtph_ps(_mm_loadu_si128(rec.as_ptr().add(16).cast())),
            )
        };
        let mut s_lo = [_mm256_setzero_si256(); T];
        let mut s_hi = [_mm256_setzero_si256(); T];
        for c in 0..4 {
            // SAFETY: chunk c of the record's 128 nibble bytes.
            let v = unsafe { _mm256_loadu_si256(rec.as_ptr().add(32 + 32 * c).cast()) };
            let lo = _mm256_and_si256(v, m4);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), m4);
            for t in 0..T {
                // SAFETY: bytes 4c..4c+4 and 16+4c..20+4c of token t's block quants (asserted
                // by `check`); VNNI checked before these kernels are handed out.
                unsafe {
                    let yt = a.as_ptr().add(t * a_row + b * 36 + 4);
                    s_lo[t] = dpbusd(s_lo[t], lo, yt.add(4 * c));
                    s_hi[t] = dpbusd(s_hi[t], hi, yt.add(16 + 4 * c));
                }
            }
        }
        for t in 0..T {
            // SAFETY: `check` asserted `sums` holds `T * nb` records.
            let (dy, sy) = unsafe { block_d_s(sums, nb, t, b) };
            let s32 = _mm256_add_epi32(s_lo[t], s_hi[t]);
            let v = _mm256_fmadd_ps(_mm256_mul_ps(d, dy), _mm256_cvtepi32_ps(s32), acc[t]);
            acc[t] = _mm256_fmadd_ps(m, sy, v);
        }
    }
    store(&acc, out);
}

/// Q5_0 x Q8_0 as [`super::packed::packed_q5_0`]: the same 5-bit assembly (nibble | 5th bit, 0..=31
/// unsigned), then straight into two i32 chains; `16 x` the block sum taken off at the start.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
pub(crate) fn packed_q5_0<const T: usize>(
    nb: usize,
    w: &[u8],
    a: &[u8],
    a_row: usize,
    sums: &[u8],
    out: &mut [f32],
) {
    check::<T>(nb, w, REC_Q5_0, a, a_row, 34, Some(sums), out);
    let (m4, m16) = (_mm256_set1_epi8(0x0f), _mm256_set1_epi8(0x10));
    let mut acc = [_mm256_setzero_ps(); T];
    for b in 0..nb {
        let rec = &w[b * REC_Q5_0..][..REC_Q5_0];
        // SAFETY: `rec` holds 16 scale bytes, then 128 nibble bytes, then 32 bytes of 5th bits.
        let d = _mm256_cvtph_ps(unsafe { _mm_loadu_si128(rec.as_ptr().cast()) });
        // SAFETY: as above, the 32 bytes of 5th bits at 144.
        let h = unsafe { _mm256_loadu_si256(rec.as_ptr().add(144).cast()) };
        let mut s_lo = start_block::<4, T>(sums, nb, b);
        let mut s_hi = [_mm256_setzero_si256(); T];
        // Chunk c's low (high) nibbles' 5th bits are bit 2c (2c + 1) of each byte of `h`; moved
        // to bit 4 by 16-bit shifts that never carry a bit across a byte (see `packed_q5_0`).
        let mut hb = _mm256_slli_epi16(h, 4);
        for c in 0..4 {
            if c == 2 {
                hb = h;
            }
            // SAFETY: chunk c of the record's 128 nibble bytes.
            let v = unsafe { _mm256_loadu_si256(rec.as_ptr().add(16 + 32 * c).cast()) };
            let lo = _mm256_or_si256(_mm256_and_si256(v, m4), _mm256_and_si256(hb, m16));
            let hi = _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16(v, 4), m4),
                _mm256_and_si256(_mm256_srli_epi16(hb, 1), m16),
            );
            hb = _mm256_srli_epi16(hb, 2);
            for t in 0..T {
                // SAFETY: bytes 4c..4c+4 and 16+4c..20+4c of token t's block quants (`check`);
                // VNNI checked before these kernels are handed out.
                unsafe {
                    let yt = a.as_ptr().add(t * a_row + b * 34 + 2);
                    s_lo[t] = dpbusd(s_lo[t], lo, yt.add(4 * c));
                    s_hi[t] = dpbusd(s_hi[t], hi, yt.add(16 + 4 * c));
                }
            }
        }
        end_block(&mut acc, (&s_lo, &s_hi), d, (sums, nb, b));
    }
    store(&acc, out);
}

/// Q8_0 x Q8_0 as [`super::packed::packed_q8_0`]: weights offset to unsigned (`xor 0x80`), the
/// even and odd chunks in two i32 chains, the first starting at `128 x` minus the block sum.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
pub(crate) fn packed_q8_0<const T: usize>(
    nb: usize,
    w: &[u8],
    a: &[u8],
    a_row: usize,
    sums: &[u8],
    out: &mut [f32],
) {
    check::<T>(nb, w, REC_Q8_0, a, a_row, 34, Some(sums), out);
    let flip = _mm256_set1_epi8(i8::MIN);
    let mut acc = [_mm256_setzero_ps(); T];
    for b in 0..nb {
        let rec = &w[b * REC_Q8_0..][..REC_Q8_0];
        // SAFETY: `rec` holds 16 scale bytes.
        let d = _mm256_cvtph_ps(unsafe { _mm_loadu_si128(rec.as_ptr().cast()) });
        let mut s = [start_block::<7, T>(sums, nb, b), [_mm256_setzero_si256(); T]];
        for c in 0..8 {
            // SAFETY: chunk c of the record's 256 quant bytes.
            let v = unsafe { _mm256_loadu_si256(rec.as_ptr().add(16 + 32 * c).cast()) };
            let u = _mm256_xor_si256(v, flip);
            for (t, s) in s[c & 1].iter_mut().enumerate() {
                // SAFETY: bytes 4c..4c+4 of token t's block quants (`check`); VNNI as above.
                *s = unsafe { dpbusd(*s, u, a.as_ptr().add(t * a_row + b * 34 + 2 + 4 * c)) };
            }
        }
        end_block(&mut acc, (&s[0], &s[1]), d, (sums, nb, b));
    }
    store(&acc, out);
}

/// W8A8 x INT8_PC over the W8A8 packed layout (see [`crate::PackedWeight`]): per chunk of 4
/// elements, `vpdpbusd` of the 8 rows' unsigned quants (`q + 128`) with each token's 4 signed
/// activation bytes broadcast from memory, two i32 chains per token; the `128 x Σa` this adds
/// comes off per token (a third chain, `vpdpbusd` of 128 with the activations, summed across
/// lanes). All of it exact i32 arithmetic, wrapping as the reference's sum; then converted and
/// times `d_w x d_a`: the reference's `sumi as f32 * (d_w * d_a)` bit for bit. `nb` counts
/// 32-element blocks; `a` holds INT8_PC rows (f32 scale, then quants).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
pub(crate) fn packed_w8a8<const T: usize>(
    nb: usize,
    w: &[u8],
    a: &[u8],
    a_row: usize,
    _sums: &[u8],
    out: &mut [f32],
) {
    let n = 32 * nb;
    assert!(T > 0 && out.len() >= 8 * T);
    assert!(w.len() >= 32 + 8 * n);
    assert!(a_row >= 4 + n && a.len() >= (T - 1) * a_row + 4 + n);
    let c128 = _mm256_set1_epi8(i8::MIN);
    let mut s0 = [_mm256_setzero_si256(); T];
    let mut s1 = [_mm256_setzero_si256(); T];
    let mut sa = [_mm256_setzero_si256(); T];
    let (wp, ap) = (w[32..].as_ptr(), a[4..].as_ptr());
    for i in (0..n).step_by(32) {
        for (t, sa) in sa.iter_mut().enumerate() {
            // SAFETY: token t's quants i..i + 32 (asserted above).
            let v = unsafe { _mm256_loadu_si256(ap.add(t * a_row + i).cast()) };
            *sa = _mm256_dpbusd_epi32(*sa, c128, v);
        }
        for c in (0..8).step_by(2) {
            // SAFETY: chunks i/4 + c, + 1 of the group's quants (`8 (i + 32) <= 8n`).
            let (v0, v1) = unsafe {
                (
                    _mm256_loadu_si256(wp.add(8 * i + 32 * c).cast()),
                    _mm256_loadu_si256(wp.add(8 * i + 32 * c + 32).cast()),
                )
            };
            for t in 0..T {
                // SAFETY: token t's quants i + 4c..i + 4c + 8 (asserted above).
                unsafe {
                    let p = ap.add(t * a_row + i + 4 * c);
                    s0[t] = dpbusd(s0[t], v0, p);
                    s1[t] = dpbusd(s1[t], v1, p.add(4));
                }
            }
        }
    }
    // SAFETY: the group head's 8 f32 scales.
    let dw = unsafe { _mm256_loadu_ps(w.as_ptr().cast::<f32>()) };
    let mut acc = [_mm256_setzero_ps(); T];
    for t in 0..T {
        // 128 x Σa in every lane.
        let x = sa[t];
        let x = _mm256_add_epi32(x, _mm256_permute2x128_si256::<1>(x, x));
        let x = _mm256_add_epi32(x, _mm256_shuffle_epi32::<0x4e>(x));
        let x = _mm256_add_epi32(x, _mm256_shuffle_epi32::<0xb1>(x));
        let sumi = _mm256_sub_epi32(_mm256_add_epi32(s0[t], s1[t]), x);
        // SAFETY: token t's f32 scale (asserted above).
        let da = unsafe { std::ptr::read_unaligned(a.as_ptr().add(t * a_row).cast::<f32>()) };
        acc[t] = _mm256_mul_ps(_mm256_cvtepi32_ps(sumi), _mm256_mul_ps(dw, _mm256_set1_ps(da)));
    }
    store(&acc, out);
}

#[cfg(test)]
pub(super) mod tests {
    use llmopt_tensor::GgmlType;

    use crate::{Isa, Kernels, PackedWeight, WeightView};

    /// Deterministic values in [-2, 2), not zeros.
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
            })
            .collect()
    }

    /// A packed kernel's inputs: `rows x cols` random `ty` weights packed, and `n_tok` random
    /// activation rows in `ty`'s `vec_dot_type` (`a_row` bytes each) with their block records.
    pub(in crate::x86::avx2) struct Case {
        pub packed: PackedWeight,
        pub a: Vec<u8>,
        pub a_row: usize,
        pub sums: Vec<u8>,
    }

    pub(in crate::x86::avx2) fn case(ty: GgmlType, rows: usize, cols: usize, n_tok: usize) -> Case {
        let mut w = vec![0u8; rows * ty.row_bytes(cols).unwrap()];
        ty.from_f32(&values(rows * cols, cols as u64), &mut w).unwrap();
        let packed =
            PackedWeight::new(Isa::Avx2, &WeightView::new(ty, rows, cols, &w)).expect("packable");
        let vdt = ty.spec().vec_dot_type; // Q8_1 for Q4_1, else Q8_0
        let a_row = vdt.row_bytes(cols).unwrap();
        let x = values(n_tok * cols, 7 + cols as u64);
        let mut a = vec![0u8; n_tok * a_row];
        let quantize = Kernels::get(Isa::Scalar).unwrap().quantize(vdt).unwrap();
        for (xt, at) in x.chunks_exact(cols).zip(a.chunks_exact_mut(a_row)) {
            quantize(xt, at);
        }
        let mut sums = vec![0u8; n_tok * (cols / 32) * crate::dispatch::BLOCK_INFO];
        crate::matmul::block_records(vdt, &a, &mut sums);
        Case { packed, a, a_row, sums }
    }

    /// On a VNNI machine the dispatcher hands out these kernels only, so the AVX2 packed kernels
    /// they replace are compared here: both must give the same bits.
    #[test]
    fn vnni_kernels_equal_the_avx2_packed_kernels() {
        if !(super::available() && Isa::Avx2.is_available()) {
            return; // Nothing to compare on this CPU: the AVX2 kernels are the ones in use.
        }
        for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q8_0] {
            for cols in [576usize, 640, 896] {
                let nb = cols / 32;
                let Case { packed, a, a_row, sums } = case(ty, 8, cols, 4);
                let (mut old, mut new) = ([0f32; 32], [0f32; 32]);
                let d = packed.data();
                // SAFETY: `available()` and `Isa::Avx2.is_available()` were checked above; the
                // kernels check every buffer's length.
                unsafe {
                    if ty == GgmlType::Q4_0 {
                        super::super::packed::packed_q4_0::<4>(nb, d, &a, a_row, &sums, &mut old);
                        super::packed_q4_0::<4>(nb, d, &a, a_row, &sums, &mut new);
                    } else if ty == GgmlType::Q4_1 {
                        super::super::packed::packed_q4_1::<4>(nb, d, &a, a_row, &sums, &mut old);
                        super::packed_q4_1::<4>(nb, d, &a, a_row, &sums, &mut new);
                    } else if ty == GgmlType::Q5_0 {
                        super::super::packed::packed_q5_0::<4>(nb, d, &a, a_row, &sums, &mut old);
                        super::packed_q5_0::<4>(nb, d, &a, a_row, &sums, &mut new);
                    } else {
                        super::super::packed::packed_q8_0::<4>(nb, d, &a, a_row, &sums, &mut old);
                        super::packed_q8_0::<4>(nb, d, &a, a_row, &sums, &mut new);
                    }
                }
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&old), bits(&new), "{ty} width {cols}");
                assert!(old.iter().any(|v| *v != 0.0));
            }
        }
    }
}

//! W8A8 x INT8_PC on AVX2: one exact i32 dot per row (ggml's sign trick, or VNNI `vpdpbusd` of
//! a + 128 with w, minus `128 Σq` from the row header), then the reference's float step exactly.

use std::arch::x86_64::*;

use super::util::{hsum_i32_8, load32};

/// Bytes before a W8A8 row's quants: the f32 scale, then the i32 sum of the quants.
const W_HEAD: usize = 8;
/// Bytes before an INT8_PC row's quants: the f32 scale.
const A_HEAD: usize = 4;

fn f32_at(b: &[u8], off: usize) -> f32 {
    f32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn i32_at(b: &[u8], off: usize) -> i32 {
    i32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// The reference's float step: the exact integer sum times both scales.
#[inline(always)]
fn scaled(sumi: i32, w: &[u8], a: &[u8]) -> f32 {
    sumi as f32 * (f32_at(w, 0) * f32_at(a, 0))
}

fn check_rows(n: usize, w: usize, a: usize) {
    assert!(n.is_multiple_of(32), "vec_dot: n = {n} is not a multiple of 32");
    assert!(w >= W_HEAD + n && a >= A_HEAD + n, "vec_dot: rows shorter than {n}");
}

/// The 8 i32 lane sums of `w · a` over one 32-byte chunk (4 products each): `maddubs(|w|, sign(a,
/// w))`, pairs at most 2 · 128 · 127 (no i16 saturation), then `madd` with ones. Weights may be
/// any int8; activations must be in -127..=127 (the INT8_PC quantizer's range: `sign` cannot
/// negate -128).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn dot_sign(w: __m256i, a: __m256i) -> __m256i {
    let p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
    _mm256_madd_epi16(p, _mm256_set1_epi16(1))
}

/// W8A8 x INT8_PC by the sign trick, four i32 accumulators.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn vec_dot_w8a8_int8_pc(n: usize, w: &[u8], a: &[u8]) -> f32 {
    check_rows(n, w.len(), a.len());
    let (wq, aq) = (&w[W_HEAD..W_HEAD + n], &a[A_HEAD..A_HEAD + n]);
    let mut acc = [_mm256_setzero_si256(); 4];
    let n128 = n / 128 * 128;
    for i in (0..n128).step_by(128) {
        for (k, acc) in acc.iter_mut().enumerate() {
            let j = i + 32 * k;
            *acc = _mm256_add_epi32(*acc, dot_sign(load32(wq, j), load32(aq, j)));
        }
    }
    for j in (n128..n).step_by(32) {
        acc[0] = _mm256_add_epi32(acc[0], dot_sign(load32(wq, j), load32(aq, j)));
    }
    let s = _mm256_add_epi32(_mm256_add_epi32(acc[0], acc[1]), _mm256_add_epi32(acc[2], acc[3]));
    scaled(hsum_i32_8(s), w, a)
}

/// W8A8 x INT8_PC with `vpdpbusd` (AVX-512 VNNI + VL): `Σ (a + 128) · w - 128 Σq`, i32 arithmetic
/// wrapping like the reference's exact sum.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
pub(crate) fn vec_dot_w8a8_int8_pc_vnni(n: usize, w: &[u8], a: &[u8]) -> f32 {
    check_rows(n, w.len(), a.len());
    let (wq, aq) = (&w[W_HEAD..W_HEAD + n], &a[A_HEAD..A_HEAD + n]);
    let flip = _mm256_set1_epi8(i8::MIN);
    let mut acc = [_mm256_setzero_si256(); 4];
    let n128 = n / 128 * 128;
    for i in (0..n128).step_by(128) {
        for (k, acc) in acc.iter_mut().enumerate() {
            let j = i + 32 * k;
            let ua = _mm256_xor_si256(load32(aq, j), flip);
            *acc = _mm256_dpbusd_epi32(*acc, ua, load32(wq, j));
        }
    }
    for j in (n128..n).step_by(32) {
        let ua = _mm256_xor_si256(load32(aq, j), flip);
        acc[0] = _mm256_dpbusd_epi32(acc[0], ua, load32(wq, j));
    }
    let s = _mm256_add_epi32(_mm256_add_epi32(acc[0], acc[1]), _mm256_add_epi32(acc[2], acc[3]));
    let sumi = hsum_i32_8(s).wrapping_sub(i32_at(w, 4).wrapping_mul(128));
    scaled(sumi, w, a)
}

#[cfg(test)]
mod tests {
    //! Both forms (sign trick, VNNI where the CPU has it) against the reference, bit for bit: the
    //! dispatch table hands out only one of them on a given CPU.

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use crate::reference::vec_dot_w8a8_int8_pc as reference;
    use crate::x86::avx2::{available, packed_vnni};

    /// `rows` W8A8 rows of uniform quants in `lo..=127` (so ±127 and, with `lo = -128`, -128), a
    /// true quant sum in the header.
    fn rows(n: usize, rows: usize, lo: i8, head: usize, rng: &mut StdRng) -> Vec<u8> {
        let mut out = vec![0u8; rows * (head + n)];
        for row in out.chunks_exact_mut(head + n) {
            let d: f32 = rng.random_range(1e-4..1e-1);
            row[..4].copy_from_slice(&d.to_le_bytes());
            let mut sum = 0i32;
            for q in &mut row[head..] {
                let v: i8 = rng.random_range(lo..=127);
                sum += i32::from(v);
                *q = v as u8;
            }
            if head == 8 {
                row[4..8].copy_from_slice(&sum.to_le_bytes());
            }
        }
        out
    }

    /// Sets every quant of `row` to `v` (and the W8A8 header's sum where `head == 8`).
    fn fill(row: &mut [u8], head: usize, v: i8) {
        row[head..].fill(v as u8);
        if head == 8 {
            let sum = i32::from(v) * (row.len() - head) as i32;
            row[4..8].copy_from_slice(&sum.to_le_bytes());
        }
    }

    #[test]
    fn both_forms_equal_the_reference_bitwise() {
        if !available() {
            return;
        }
        let mut rng = StdRng::seed_from_u64(205);
        let forms: &[bool] = if packed_vnni::available() { &[false, true] } else { &[false] };
        for &vnni in forms {
            for n in [32usize, 96, 576, 640, 896, 1536, 4864] {
                let mut w = rows(n, 7, -128, 8, &mut rng);
                let mut a = rows(n, 3, -127, 4, &mut rng);
                // The extremes: -128 x 127 and 127 x -127 in every lane.
                fill(&mut w[..8 + n], 8, i8::MIN);
                fill(&mut w[8 + n..2 * (8 + n)], 8, 127);
                fill(&mut a[..4 + n], 4, 127);
                fill(&mut a[4 + n..2 * (4 + n)], 4, -127);
                for wr in w.chunks_exact(8 + n) {
                    for ar in a.chunks_exact(4 + n) {
                        // SAFETY: AVX2 (and VNNI for that form) checked above.
                        let got = unsafe {
                            if vnni {
                                super::vec_dot_w8a8_int8_pc_vnni(n, wr, ar)
                            } else {
                                super::vec_dot_w8a8_int8_pc(n, wr, ar)
                            }
                        };
                        let want = reference(n, wr, ar);
                        assert_eq!(got.to_bits(), want.to_bits(), "vnni={vnni} n={n}");
                    }
                }
            }
        }
    }
}

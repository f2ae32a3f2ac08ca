//! W8A8 x INT8_PC on AVX2: one exact i32 dot per row (ggml's sign trick, or VNNI `vpdpbusd` of
//! a + 128 with w, minus `128 Σq` from the row header), then the reference's float step exactly.

use std::arch::x86_64::*;

use super::util::hsum_i32_8;

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
    let (wp, ap) = (w[W_HEAD..].as_ptr(), a[A_HEAD..].as_ptr());
    // SAFETY: chunk j of both rows' quants (`j + 32 <= n`, lengths checked by `check_rows`).
    let chunk = |j| unsafe { dot_sign(load_at(wp, j), load_at(ap, j)) };
    let mut acc = [_mm256_setzero_si256(); 4];
    let n128 = n / 128 * 128;
    for i in (0..n128).step_by(128) {
        for (k, acc) in acc.iter_mut().enumerate() {
            *acc = _mm256_add_epi32(*acc, chunk(i + 32 * k));
        }
    }
    for j in (n128..n).step_by(32) {
        acc[0] = _mm256_add_epi32(acc[0], chunk(j));
    }
    let s = _mm256_add_epi32(_mm256_add_epi32(acc[0], acc[1]), _mm256_add_epi32(acc[2], acc[3]));
    scaled(hsum_i32_8(s), w, a)
}

/// W8A8 x INT8_PC with `vpdpbusd` (AVX-512 VNNI + VL): `Σ (a + 128) · w - 128 Σq`, i32 arithmetic
/// wrapping like the reference's exact sum.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
pub(crate) fn vec_dot_w8a8_int8_pc_vnni(n: usize, w: &[u8], a: &[u8]) -> f32 {
    check_rows(n, w.len(), a.len());
    let (wp, ap) = (w[W_HEAD..].as_ptr(), a[A_HEAD..].as_ptr());
    let flip = _mm256_set1_epi8(i8::MIN);
    // SAFETY: chunk j of both rows' quants (`j + 32 <= n`, lengths checked by `check_rows`).
    let ld = |j| unsafe { (_mm256_xor_si256(load_at(ap, j), flip), load_at(wp, j)) };
    let mut acc = [_mm256_setzero_si256(); 4];
    let n128 = n / 128 * 128;
    for i in (0..n128).step_by(128) {
        for (k, acc) in acc.iter_mut().enumerate() {
            let (ua, qw) = ld(i + 32 * k);
            *acc = _mm256_dpbusd_epi32(*acc, ua, qw);
        }
    }
    for j in (n128..n).step_by(32) {
        let (ua, qw) = ld(j);
        acc[0] = _mm256_dpbusd_epi32(acc[0], ua, qw);
    }
    let s = _mm256_add_epi32(_mm256_add_epi32(acc[0], acc[1]), _mm256_add_epi32(acc[2], acc[3]));
    let sumi = hsum_i32_8(s).wrapping_sub(i32_at(w, 4).wrapping_mul(128));
    scaled(sumi, w, a)
}

/// Checks that `w` holds `R` W8A8 rows and `a` holds `T` INT8_PC rows of `n` elements, and that
/// `out` holds R x T results (at most 16, the task loop's tile buffer).
fn check_tile<const R: usize, const T: usize>(
    n: usize,
    (w, w_row): (&[u8], usize),
    (a, a_row): (&[u8], usize),
    out: &[f32],
) {
    assert!(n.is_multiple_of(32) && R * T <= 16, "a {R} x {T} W8A8 tile of {n} elements");
    super::util::check_tile::<R, T>((w, w_row, W_HEAD + n), (a, a_row, A_HEAD + n), out);
}

/// The 32 bytes at `p + off`, without a bounds check (the tiles ran 1.2-1.3x faster without).
///
/// # Safety
/// `p + off .. p + off + 32` must be readable: the tiles read row `k`'s chunk at `i` (`i + 32 <= n`)
/// at `off = k * row + i` from the row's quants, which `check_tile` (`check_rows` for the dots,
/// `k = 0`) asserted lie inside the slice.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn load_at(p: *const u8, off: usize) -> __m256i {
    // SAFETY: the caller's; `loadu` needs no alignment.
    unsafe { _mm256_loadu_si256(p.add(off).cast()) }
}

/// Lane `j` of the result is the sum of `v[j]`'s 8 lanes (`v.len() <= 8`; missing lanes are 0):
/// a `hadd` tree, 9 instructions for 8 sums.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn hsum_i32_8x8(v: &[__m256i]) -> [i32; 8] {
    let z = _mm256_setzero_si256();
    let g = |j: usize| v.get(j).copied().unwrap_or(z);
    let h0 = _mm256_hadd_epi32(_mm256_hadd_epi32(g(0), g(1)), _mm256_hadd_epi32(g(2), g(3)));
    let h1 = _mm256_hadd_epi32(_mm256_hadd_epi32(g(4), g(5)), _mm256_hadd_epi32(g(6), g(7)));
    let s = _mm256_add_epi32(
        _mm256_permute2x128_si256(h0, h1, 0x20),
        _mm256_permute2x128_si256(h0, h1, 0x31),
    );
    let mut out = [0i32; 8];
    // SAFETY: `out` is 32 writable bytes; `storeu` needs no alignment.
    unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), s) };
    out
}

/// The R x T lane sums into `out[t * R + r]`, each minus `OFFSET x` its row's quant sum (128 for
/// the VNNI kernels, 0 for the sign trick), then scaled as [`scaled`].
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn finish<const R: usize, const T: usize, const OFFSET: i32>(
    acc: &[[__m256i; R]; T],
    (w, w_row): (&[u8], usize),
    (a, a_row): (&[u8], usize),
    out: &mut [f32],
) {
    for (c, sums) in acc.as_flattened().chunks(8).enumerate() {
        for (j, &s) in hsum_i32_8x8(sums).iter().take(sums.len()).enumerate() {
            let e = 8 * c + j;
            let (wr, at) = (&w[e % R * w_row..], &a[e / R * a_row..]);
            out[e] = scaled(s.wrapping_sub(i32_at(wr, 4).wrapping_mul(OFFSET)), wr, at);
        }
    }
}

/// W8A8 x INT8_PC, R rows x T tokens (see `TileFn`) by the sign trick: `|w|` once per row and
/// chunk, `sign(a, w)` per pair. Registered as 4x4: a 64-row x 16-token task at widths 576 / 1536
/// took 11.7 / 25.2 µs (min of 1000, Zen 4 running this AVX2 code), 1x8 12.0 / 25.0, 3x4
/// 12.0 / 25.6, 2x4 13.1 / 26.9, one `vec_dot` per pair 14.8 / 31.5.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn tile_w8a8_int8_pc<const R: usize, const T: usize>(
    n: usize,
    w: &[u8],
    w_row: usize,
    a: &[u8],
    a_row: usize,
    out: &mut [f32],
) {
    check_tile::<R, T>(n, (w, w_row), (a, a_row), out);
    let ones = _mm256_set1_epi16(1);
    let mut acc = [[_mm256_setzero_si256(); R]; T];
    let (wp, ap) = (w[W_HEAD..].as_ptr(), a[A_HEAD..].as_ptr());
    for i in (0..n).step_by(32) {
        // SAFETY: row r's and token t's chunk at i (`check_tile`).
        let qw: [__m256i; R] = std::array::from_fn(|r| unsafe { load_at(wp, r * w_row + i) });
        let aw = qw.map(|q| _mm256_sign_epi8(q, q));
        for (t, acc_t) in acc.iter_mut().enumerate() {
            // SAFETY: as above.
            let qa = unsafe { load_at(ap, t * a_row + i) };
            for r in 0..R {
                let p = _mm256_maddubs_epi16(aw[r], _mm256_sign_epi8(qa, qw[r]));
                acc_t[r] = _mm256_add_epi32(acc_t[r], _mm256_madd_epi16(p, ones));
            }
        }
    }
    finish::<R, T, 0>(&acc, (w, w_row), (a, a_row), out);
}

/// W8A8 x INT8_PC, R rows x T tokens with `vpdpbusd` (AVX-512 VNNI + VL): each token's chunk made
/// unsigned once (`xor 0x80`) and multiplied into all R rows. Registered as 3x4: the same task
/// took 6.3 / 10.6 µs, 3x5 6.2 / 11.1, 6x2 6.5 / 11.5, 2x8 8.2 / 12.3, 4x4 8.4 / 12.4, one
/// `vec_dot` per pair 10.4 / 23.5.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
pub(crate) fn tile_w8a8_int8_pc_vnni<const R: usize, const T: usize>(
    n: usize,
    w: &[u8],
    w_row: usize,
    a: &[u8],
    a_row: usize,
    out: &mut [f32],
) {
    check_tile::<R, T>(n, (w, w_row), (a, a_row), out);
    let flip = _mm256_set1_epi8(i8::MIN);
    let mut acc = [[_mm256_setzero_si256(); R]; T];
    let (wp, ap) = (w[W_HEAD..].as_ptr(), a[A_HEAD..].as_ptr());
    for i in (0..n).step_by(32) {
        // SAFETY: row r's and token t's chunk at i (`check_tile`).
        let qw: [__m256i; R] = std::array::from_fn(|r| unsafe { load_at(wp, r * w_row + i) });
        for (t, acc_t) in acc.iter_mut().enumerate() {
            // SAFETY: as above.
            let ua = _mm256_xor_si256(unsafe { load_at(ap, t * a_row + i) }, flip);
            for r in 0..R {
                acc_t[r] = _mm256_dpbusd_epi32(acc_t[r], ua, qw[r]);
            }
        }
    }
    finish::<R, T, 128>(&acc, (w, w_row), (a, a_row), out);
}

#[cfg(test)]
mod tests {
    //! Both forms (sign trick, VNNI where the CPU has it) against the reference, bit for bit: the
    //! dispatch table hands out only one of them on a given CPU.

    use super::super::util::assert_bitwise;
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

    type Tile = fn(usize, &[u8], usize, &[u8], usize, &mut [f32]);

    /// Each tile form at `R x T` against the reference per pair.
    fn check_tile<const R: usize, const T: usize>(vnni: bool, rng: &mut StdRng) {
        fn sign<const R: usize, const T: usize>(
            n: usize,
            w: &[u8],
            wr: usize,
            a: &[u8],
            ar: usize,
            o: &mut [f32],
        ) {
            // SAFETY: called only after `available()` (the test returns early without AVX2).
            unsafe { super::tile_w8a8_int8_pc::<R, T>(n, w, wr, a, ar, o) }
        }
        fn dp<const R: usize, const T: usize>(
            n: usize,
            w: &[u8],
            wr: usize,
            a: &[u8],
            ar: usize,
            o: &mut [f32],
        ) {
            // SAFETY: called only after `packed_vnni::available()`.
            unsafe { super::tile_w8a8_int8_pc_vnni::<R, T>(n, w, wr, a, ar, o) }
        }
        let f: Tile = if vnni { dp::<R, T> } else { sign::<R, T> };
        for n in [32usize, 576, 640, 896, 1536, 4864] {
            let w = rows(n, R, -128, 8, rng);
            let a = rows(n, T, -127, 4, rng);
            let mut out = [f32::NAN; 16];
            f(n, &w, 8 + n, &a, 4 + n, &mut out);
            let want = |r: usize, t: usize| reference(n, &w[r * (8 + n)..], &a[t * (4 + n)..]);
            assert_bitwise(&out, R, (R, T), want, &format!("{R}x{T} vnni={vnni} n={n}"));
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
            check_tile::<1, 1>(vnni, &mut rng);
            check_tile::<2, 4>(vnni, &mut rng);
            check_tile::<3, 4>(vnni, &mut rng);
            check_tile::<4, 3>(vnni, &mut rng);
            check_tile::<4, 4>(vnni, &mut rng);
            check_tile::<2, 8>(vnni, &mut rng);
        }
    }
}

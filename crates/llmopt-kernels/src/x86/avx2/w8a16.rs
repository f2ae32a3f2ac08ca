//! W8A16 x INT16_PC on AVX2: per Q8_0 block the int8 weights sign-extended to int16, 8 exact i32
//! lane sums (`madd`, or `vpdpwssd` on AVX-512 VNNI: the same integers), FMA'd with the block scale.

use std::arch::x86_64::*;

use super::util::hsum_f32_8;

/// Bytes of a weight block (Q8_0's: the f16 scale, then 32 int8).
const WB: usize = 34;
/// Bytes before an INT16_PC row's values: the f32 token scale.
const A_HEAD: usize = 4;
/// Bytes of a block's 32 int16 activations.
const AB: usize = 64;
/// f32 accumulators per pair: block `b` goes to chain `b % CHAINS`, summed in order at the end.
const CHAINS: usize = 2;

fn f32_at(b: &[u8], off: usize) -> f32 {
    f32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// Checks one weight row and one activation row of `n` elements; returns the blocks per row.
fn check_rows(n: usize, w: usize, a: usize) -> usize {
    assert!(n.is_multiple_of(32), "vec_dot: n = {n} is not a multiple of 32");
    assert!(w >= n / 32 * WB && a >= A_HEAD + 2 * n, "vec_dot: rows shorter than {n}");
    n / 32
}

/// The 32 int8 weights at `p` as int16: elements 0..16, then 16..32.
///
/// # Safety
/// `p..p + 32` must be readable.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn widen(p: *const u8) -> [__m256i; 2] {
    // SAFETY: the caller's; `loadu` needs no alignment.
    let (lo, hi) = unsafe { (_mm_loadu_si128(p.cast()), _mm_loadu_si128(p.add(16).cast())) };
    [_mm256_cvtepi8_epi16(lo), _mm256_cvtepi8_epi16(hi)]
}

/// The f16 block scale at `p`, as f32 in every lane.
///
/// # Safety
/// `p..p + 2` must be readable.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn scale(p: *const u8) -> __m256 {
    // SAFETY: the caller's; an unaligned read.
    _mm256_cvtph_ps(_mm_set1_epi16(unsafe { std::ptr::read_unaligned(p.cast::<i16>()) }))
}

/// The 8 i32 lane sums of one block's weights `w` (from [`widen`]) with the 32 int16 at `p`: lane
/// `j` sums elements 2j, 2j + 1, 16 + 2j and 17 + 2j. At most 4 · 128 · 32767 < 2^24 in magnitude,
/// so exact in i32 and again as f32.
///
/// # Safety
/// `p..p + 64` must be readable.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn sum_madd(w: &[__m256i; 2], p: *const u8) -> __m256i {
    // SAFETY: the caller's; `loadu` needs no alignment.
    let (lo, hi) = unsafe { (_mm256_loadu_si256(p.cast()), _mm256_loadu_si256(p.add(32).cast())) };
    _mm256_add_epi32(_mm256_madd_epi16(w[0], lo), _mm256_madd_epi16(w[1], hi))
}

/// [`sum_madd`]'s lanes with `vpdpwssd` (AVX-512 VNNI + VL) adding the high half into the low
/// half's `madd`: the same exact integers.
///
/// # Safety
/// As [`sum_madd`], and the CPU must have AVX-512 VNNI + VL.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
#[inline]
unsafe fn sum_vnni(w: &[__m256i; 2], p: *const u8) -> __m256i {
    // SAFETY: the caller's; `loadu` needs no alignment.
    let (lo, hi) = unsafe { (_mm256_loadu_si256(p.cast()), _mm256_loadu_si256(p.add(32).cast())) };
    _mm256_dpwssd_epi32(_mm256_madd_epi16(w[0], lo), w[1], hi)
}

/// The dot's body with block sums from `$sum`: per block `fma(f32(lanes), d_w, acc)` into chain
/// `b % CHAINS` (two chains: decode of a 576-wide matrix in cache was 1.35x faster than with one),
/// the chains added in order, then `hsum · d_a`.
macro_rules! dot {
    ($n:ident, $w:ident, $a:ident, $sum:ident) => {{
        let nb = check_rows($n, $w.len(), $a.len());
        let (wp, ap) = ($w.as_ptr(), $a[A_HEAD..].as_ptr());
        let mut acc = [_mm256_setzero_ps(); CHAINS];
        let step = |b: usize, acc: &mut __m256| {
            // SAFETY: block b of both rows (`b < nb`, lengths checked by `check_rows`).
            let s = unsafe { $sum(&widen(wp.add(b * WB + 2)), ap.add(b * AB)) };
            // SAFETY: as above.
            let d = unsafe { scale(wp.add(b * WB)) };
            *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), d, *acc);
        };
        for b0 in (0..nb / CHAINS * CHAINS).step_by(CHAINS) {
            for (c, acc) in acc.iter_mut().enumerate() {
                step(b0 + c, acc);
            }
        }
        for (c, acc) in acc.iter_mut().enumerate() {
            let b = nb / CHAINS * CHAINS + c;
            if b < nb {
                step(b, acc);
            }
        }
        let mut t = acc[0];
        for acc in &acc[1..] {
            t = _mm256_add_ps(t, *acc);
        }
        hsum_f32_8(t) * f32_at($a, 0)
    }};
}

/// W8A16 x INT16_PC with `madd`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn vec_dot_w8a16_int16_pc(n: usize, w: &[u8], a: &[u8]) -> f32 {
    dot!(n, w, a, sum_madd)
}

/// W8A16 x INT16_PC with `vpdpwssd` (AVX-512 VNNI + VL), equal to [`vec_dot_w8a16_int16_pc`] bit
/// for bit.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
pub(crate) fn vec_dot_w8a16_int16_pc_vnni(n: usize, w: &[u8], a: &[u8]) -> f32 {
    dot!(n, w, a, sum_vnni)
}

/// Checks that `w` holds `R` W8A16 rows and `a` holds `T` INT16_PC rows of `n` elements, and that
/// `out` holds R x T results (at most 16, the task loop's tile buffer); returns the blocks per row.
fn check_tile<const R: usize, const T: usize>(
    n: usize,
    (w, w_row): (&[u8], usize),
    (a, a_row): (&[u8], usize),
    out: &[f32],
) -> usize {
    let nb = n / 32;
    assert!(n.is_multiple_of(32) && R * T <= 16, "a {R} x {T} W8A16 tile of {n} elements");
    super::util::check_tile::<R, T>((w, w_row, nb * WB), (a, a_row, A_HEAD + 2 * n), out);
    nb
}

/// The tiles' body: per block each row's weights widened and its scale converted once, then per
/// pair the dot's float ops exactly (block `b` into chain `b % CHAINS`, then as the dot).
macro_rules! tile {
    ($n:ident, $w:ident, $w_row:ident, $a:ident, $a_row:ident, $out:ident, $sum:ident) => {{
        let nb = check_tile::<R, T>($n, ($w, $w_row), ($a, $a_row), $out);
        let (wp, ap) = ($w.as_ptr(), $a[A_HEAD..].as_ptr());
        let mut acc = [[[_mm256_setzero_ps(); R]; T]; CHAINS];
        let step = |b: usize, acc: &mut [[__m256; R]; T]| {
            let qw: [_; R] = std::array::from_fn(|r| {
                // SAFETY: row r's block b (`check_tile`).
                unsafe { widen(wp.add(r * $w_row + b * WB + 2)) }
            });
            // SAFETY: as above.
            let d: [_; R] = std::array::from_fn(|r| unsafe { scale(wp.add(r * $w_row + b * WB)) });
            for (t, acc_t) in acc.iter_mut().enumerate() {
                for r in 0..R {
                    // SAFETY: token t's block b (`check_tile`).
                    let s = unsafe { $sum(&qw[r], ap.add(t * $a_row + b * AB)) };
                    acc_t[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), d[r], acc_t[r]);
                }
            }
        };
        for b0 in (0..nb / CHAINS * CHAINS).step_by(CHAINS) {
            for (c, acc) in acc.iter_mut().enumerate() {
                step(b0 + c, acc);
            }
        }
        for (c, acc) in acc.iter_mut().enumerate() {
            let b = nb / CHAINS * CHAINS + c;
            if b < nb {
                step(b, acc);
            }
        }
        for t in 0..T {
            let da = f32_at($a, t * $a_row);
            for r in 0..R {
                let mut v = acc[0][t][r];
                for acc in &acc[1..] {
                    v = _mm256_add_ps(v, acc[t][r]);
                }
                $out[t * R + r] = hsum_f32_8(v) * da;
            }
        }
    }};
}

/// W8A16 x INT16_PC, R rows x T tokens (see `TileFn`) with `madd`. Registered as 4x4 (its 32
/// accumulators partly on the stack): a 64-row x 16-token task at widths 576 / 1536 took
/// 12.6 / 30.2 µs (min of 400, Zen 4 running this AVX2 code), 4x3 14.0 / 34.5, 2x3 15.2 / 36.6,
/// 2x4 24.9 / 60.8, one `vec_dot` per pair 19.8 / 51.8.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn tile_w8a16_int16_pc<const R: usize, const T: usize>(
    n: usize,
    w: &[u8],
    w_row: usize,
    a: &[u8],
    a_row: usize,
    out: &mut [f32],
) {
    tile!(n, w, w_row, a, a_row, out, sum_madd)
}

/// W8A16 x INT16_PC, R rows x T tokens with `vpdpwssd` (AVX-512 VNNI + VL; EVEX encoding gives the
/// compiler 32 registers). Registered as 4x4: the same task took 11.6 / 28.3 µs, 3x4 12.0 / 28.8,
/// 2x4 12.3 / 29.4, 4x3 12.3 / 30.1, 2x8 14.4 / 32.6, one `vec_dot` per pair 19.7 / 51.0.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
pub(crate) fn tile_w8a16_int16_pc_vnni<const R: usize, const T: usize>(
    n: usize,
    w: &[u8],
    w_row: usize,
    a: &[u8],
    a_row: usize,
    out: &mut [f32],
) {
    tile!(n, w, w_row, a, a_row, out, sum_vnni)
}

#[cfg(test)]
mod tests {
    //! Both forms (`madd`, VNNI where the CPU has it) against the reference within the kernel
    //! tests' tolerance and against each other bit for bit, and every tile shape against its own
    //! form's dot bit for bit: the dispatch table hands out only one form on a given CPU.

    use super::super::util::assert_bitwise;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use crate::reference::vec_dot_w8a16_int16_pc as reference;
    use crate::x86::avx2::{available, packed_vnni};

    type Dot = fn(usize, &[u8], &[u8]) -> f32;
    type Tile = fn(usize, &[u8], usize, &[u8], usize, &mut [f32]);

    /// `rows` W8A16 rows of `n`: block scales in 1e-4..1e-1, quants uniform in -128..=127.
    fn weights(n: usize, rows: usize, rng: &mut StdRng) -> Vec<u8> {
        let mut w = vec![0u8; rows * n / 32 * 34];
        for b in w.chunks_exact_mut(34) {
            let d = llmopt_tensor::f32_to_f16(rng.random_range(1e-4..1e-1));
            b[..2].copy_from_slice(&d.to_le_bytes());
            b[2..].iter_mut().for_each(|q| *q = rng.random::<u8>());
        }
        w
    }

    /// `toks` INT16_PC rows of `n`: a token scale, quants uniform in -32767..=32767.
    fn acts(n: usize, toks: usize, rng: &mut StdRng) -> Vec<u8> {
        let mut a = vec![0u8; toks * (4 + 2 * n)];
        for row in a.chunks_exact_mut(4 + 2 * n) {
            row[..4].copy_from_slice(&rng.random_range(1e-5f32..1e-2).to_le_bytes());
            for q in row[4..].chunks_exact_mut(2) {
                q.copy_from_slice(&rng.random_range(-32767i16..=32767).to_le_bytes());
            }
        }
        a
    }

    /// `Σ |w_i a_i|` of the dequantized rows (the scale of tests/kernels.rs's tolerance).
    fn magnitude(n: usize, w: &[u8], a: &[u8]) -> f64 {
        let da = f64::from(f32::from_le_bytes([a[0], a[1], a[2], a[3]]));
        let term = |i: usize| {
            let b = &w[i / 32 * 34..];
            let dw = llmopt_tensor::f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
            let q = i16::from_le_bytes([a[4 + 2 * i], a[5 + 2 * i]]);
            (f64::from(dw) * f64::from(b[2 + i % 32] as i8) * f64::from(q) * da).abs()
        };
        (0..n).map(term).sum()
    }

    /// The dot forms this CPU runs, `(vnni, f)`.
    fn dots() -> Vec<(bool, Dot)> {
        // SAFETY: called only after `available()`.
        let madd: Dot = |n, w, a| unsafe { super::vec_dot_w8a16_int16_pc(n, w, a) };
        // SAFETY: handed out only after `packed_vnni::available()`.
        let vnni: Dot = |n, w, a| unsafe { super::vec_dot_w8a16_int16_pc_vnni(n, w, a) };
        let mut v = vec![(false, madd)];
        if packed_vnni::available() {
            v.push((true, vnni));
        }
        v
    }

    #[test]
    fn both_forms_match_the_reference_and_each_other() {
        if !available() {
            return;
        }
        let mut rng = StdRng::seed_from_u64(206);
        for n in [32usize, 96, 576, 640, 768, 896, 1536, 4864] {
            let mut w = weights(n, 4, &mut rng);
            let mut a = acts(n, 3, &mut rng);
            // The extremes: -128 x -32767 and 127 x 32767 in every lane.
            let (wr, ar) = (n / 32 * 34, 4 + 2 * n);
            w[..wr].chunks_exact_mut(34).for_each(|b| b[2..].fill(0x80));
            w[wr..2 * wr].chunks_exact_mut(34).for_each(|b| b[2..].fill(127));
            a[4..ar]
                .chunks_exact_mut(2)
                .for_each(|q| q.copy_from_slice(&(-32767i16).to_le_bytes()));
            a[ar + 4..2 * ar]
                .chunks_exact_mut(2)
                .for_each(|q| q.copy_from_slice(&32767i16.to_le_bytes()));
            for wr in w.chunks_exact(wr) {
                for ar in a.chunks_exact(ar) {
                    let want = reference(n, wr, ar);
                    let mag = magnitude(n, wr, ar);
                    let got: Vec<f32> = dots().iter().map(|(_, f)| f(n, wr, ar)).collect();
                    let err = (f64::from(got[0]) - f64::from(want)).abs();
                    assert!(err <= 1e-5 * mag + 1e-6, "n={n}: {got:?} vs {want}");
                    assert!(got.iter().all(|g| g.to_bits() == got[0].to_bits()), "n={n}: {got:?}");
                }
            }
        }
    }

    /// Each form's tile at `R x T` against that form's dot per pair, bit for bit.
    fn check_tile<const R: usize, const T: usize>(rng: &mut StdRng) {
        // SAFETY: called only after `available()`.
        let madd: Tile =
            |n, w, wr, a, ar, o| unsafe { super::tile_w8a16_int16_pc::<R, T>(n, w, wr, a, ar, o) };
        // SAFETY: used only where `dots` handed out the VNNI form (`packed_vnni::available()`).
        let vnni: Tile = |n, w, wr, a, ar, o| unsafe {
            super::tile_w8a16_int16_pc_vnni::<R, T>(n, w, wr, a, ar, o)
        };
        for (is_vnni, dot) in dots() {
            let tile = if is_vnni { vnni } else { madd };
            for n in [32usize, 96, 576, 640, 896, 1536] {
                let (w, a) = (weights(n, R, rng), acts(n, T, rng));
                let (wr, ar) = (n / 32 * 34, 4 + 2 * n);
                let mut out = [f32::NAN; 16];
                tile(n, &w, wr, &a, ar, &mut out);
                let want = |r: usize, t: usize| dot(n, &w[r * wr..], &a[t * ar..]);
                assert_bitwise(&out, R, (R, T), want, &format!("{R}x{T} vnni={is_vnni} n={n}"));
            }
        }
    }

    #[test]
    fn tiles_equal_their_dot_bitwise() {
        if !available() {
            return;
        }
        let mut rng = StdRng::seed_from_u64(207);
        check_tile::<1, 1>(&mut rng);
        check_tile::<2, 4>(&mut rng);
        check_tile::<3, 4>(&mut rng);
        check_tile::<4, 3>(&mut rng);
        check_tile::<4, 4>(&mut rng);
        check_tile::<2, 8>(&mut rng);
    }
}

//! AVX2 tiles of R weight rows x T tokens for INT4_G128 x Q8_1: each row's 128-element group
//! unpacked once per tile, per pair `mx.rs`'s Q4_1-style float ops in its order.

use std::arch::x86_64::*;

use super::tile_own::{f16_lanes, ld32};
use super::util::*;

/// Bytes per INT4_G128 group (f16 scale, f16 min, 64 bytes of nibbles) and per Q8_1 block.
const GROUP: usize = 68;
const Q8_1: usize = 36;

/// AVX2: the 8 lane sums of unsigned nibbles `q` times signed `y` (`maddubs` + `madd`).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn us_pair(q: __m256i, y: __m256i) -> __m256 {
    mul_sum_us8_pairs_float(q, y)
}

/// VNNI: the same lane sums by one `vpdpbusd` (unsigned x signed, as `maddubs`).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
#[inline]
fn vnni_pair(q: __m256i, y: __m256i) -> __m256 {
    _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(_mm256_setzero_si256(), q, y))
}

/// The shared loop, with the pair's lane sums by `$pair`. Per group and row: the nibble bytes,
/// `d` and `m`; per sub-block `k` (elements `32k..`: low nibbles of bytes 4.., 36.., then high):
/// each row's `m x s_t` added to its token-lane sums (`summs += m * s` of `mx.rs`, T tokens at
/// once), the pairs' `d x d_t` in a table kept in memory (a broadcast load per pair, as
/// MXFP4's), then per pair `acc = fma(d x d_t, lane sums, acc)`.
macro_rules! int4_tile {
    ($pair:ident, $n:ident, $w:ident, $w_row:ident, $a:ident, $a_row:ident, $out:ident) => {{
        let ng = $n / 128;
        assert!(T <= 8, "Q4_1 tiles take at most 8 tokens");
        check_tile::<R, T>(($w, $w_row, ng * GROUP), ($a, $a_row, ng * 4 * Q8_1), $out);
        let ap = $a.as_ptr();
        let m4 = _mm256_set1_epi8(0x0f);
        let mut acc = [[_mm256_setzero_ps(); R]; T];
        let mut summs = [_mm256_setzero_ps(); R];
        for g in 0..ng {
            let mut xs = [(_mm256_setzero_si256(), _mm256_setzero_si256(), 0.0f32, 0.0f32); R];
            for (r, x) in xs.iter_mut().enumerate() {
                let p = &$w[r * $w_row + g * GROUP..][..GROUP];
                // SAFETY: row r's group g (`check_tile`).
                let (b0, b1) = unsafe { (ld32(p.as_ptr(), 4), ld32(p.as_ptr(), 36)) };
                *x = (b0, b1, f16_at(p, 0), f16_at(p, 2));
            }
            for k in 0..4 {
                let y0 = (4 * g + k) * Q8_1;
                // SAFETY: the tokens' block k of group g (`check_tile`).
                let (dy, sy) = unsafe {
                    (f16_lanes::<T>(ap.add(y0), $a_row), f16_lanes::<T>(ap.add(y0 + 2), $a_row))
                };
                let mut tab = [[0.0f32; 8]; R];
                for ((row, s), x) in tab.iter_mut().zip(&mut summs).zip(&xs) {
                    *s = _mm256_add_ps(*s, _mm256_mul_ps(_mm256_set1_ps(x.3), sy));
                    let d = _mm256_mul_ps(_mm256_set1_ps(x.2), dy);
                    // SAFETY: `row` is 8 writable f32s; `storeu` needs no alignment.
                    unsafe { _mm256_storeu_ps(row.as_mut_ptr(), d) };
                }
                std::hint::black_box(&mut tab);
                let qx = xs.map(|x| {
                    let b = if k % 2 == 0 { x.0 } else { x.1 };
                    _mm256_and_si256(if k < 2 { b } else { _mm256_srli_epi16(b, 4) }, m4)
                });
                for (t, acc_t) in acc.iter_mut().enumerate() {
                    // SAFETY: as above, token t's.
                    let qy = unsafe { ld32(ap, t * $a_row + y0 + 4) };
                    for r in 0..R {
                        let d = _mm256_broadcast_ss(&tab[r][t]);
                        acc_t[r] = _mm256_fmadd_ps(d, $pair(qx[r], qy), acc_t[r]);
                    }
                }
            }
        }
        let mut lanes = [[0.0f32; 8]; R];
        for (l, s) in lanes.iter_mut().zip(&summs) {
            // SAFETY: `l` is 8 writable f32s.
            unsafe { _mm256_storeu_ps(l.as_mut_ptr(), *s) };
        }
        for (t, acc_t) in acc.iter().enumerate() {
            for r in 0..R {
                $out[t * R + r] = hsum_f32_8(acc_t[r]) + lanes[r][t];
            }
        }
    }};
}

/// INT4_G128 x Q8_1, R rows x T tokens (`T <= 8`, see `TileFn`). Registered as 2x8: a 64-row x
/// 16-token task at widths 640 / 2048 took 18.5 / 56.0 µs (min of 3000, Zen 4 running this AVX2
/// code), 4x4 19.9 / 59.0, 3x4 21.5 / 64.7, 2x4 22.0 / 66.2, 1x8 23.0 / 71.8, one `vec_dot` per
/// pair 55.2 / 200.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn tile_int4_g128_q8_1<const R: usize, const T: usize>(
    n: usize,
    w: &[u8],
    w_row: usize,
    a: &[u8],
    a_row: usize,
    out: &mut [f32],
) {
    int4_tile!(us_pair, n, w, w_row, a, a_row, out)
}

/// INT4_G128 x Q8_1, R rows x T tokens, with `vpdpbusd` (AVX-512 VNNI + VL). Registered as 2x8:
/// the same task took 15.1 / 45.1 µs, 4x4 15.9 / 46.6, 3x4 16.0 / 47.4, 2x4 16.8 / 49.8, 4x2
/// 18.1 / 53.7, one `vec_dot` per pair 55.2 / 200.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
pub(crate) fn tile_int4_g128_q8_1_vnni<const R: usize, const T: usize>(
    n: usize,
    w: &[u8],
    w_row: usize,
    a: &[u8],
    a_row: usize,
    out: &mut [f32],
) {
    int4_tile!(vnni_pair, n, w, w_row, a, a_row, out)
}

#[cfg(test)]
mod tests {
    //! Both forms (`maddubs`, VNNI where the CPU has it) at several shapes against the AVX2
    //! `vec_dot` per pair, bit for bit, on raw groups (nibbles at 15, negative mins) and Q8_1
    //! blocks with quants at ±127.

    use super::super::util::assert_bitwise;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::super::{available, mx, packed_vnni};
    use llmopt_tensor::f32_to_f16;

    type Tile = fn(usize, &[u8], usize, &[u8], usize, &mut [f32]);

    fn f16(v: f32) -> [u8; 2] {
        f32_to_f16(v).to_le_bytes()
    }

    /// INT4_G128 rows (row 0 all nibbles 15).
    fn weights(n: usize, rows: usize, rng: &mut StdRng) -> Vec<u8> {
        let mut w = vec![0u8; rows * n / 128 * 68];
        for (i, grp) in w.chunks_exact_mut(68).enumerate() {
            grp[..2].copy_from_slice(&f16(rng.random_range(1e-3..0.1)));
            grp[2..4].copy_from_slice(&f16(rng.random_range(-0.5..0.5)));
            let row0 = i < n / 128;
            grp[4..].iter_mut().for_each(|q| *q = if row0 { 0xff } else { rng.random() });
        }
        w
    }

    /// Q8_1 rows (token 0 all 127, token 1 all -127): a scale, a sum scale, quants.
    fn acts(n: usize, toks: usize, rng: &mut StdRng) -> Vec<u8> {
        let mut a = vec![0u8; toks * n / 32 * 36];
        for (i, blk) in a.chunks_exact_mut(36).enumerate() {
            blk[..2].copy_from_slice(&f16(rng.random_range(1e-3..1.0)));
            blk[2..4].copy_from_slice(&f16(rng.random_range(-50.0..50.0)));
            for q in &mut blk[4..] {
                *q = match i / (n / 32) {
                    0 => 127,
                    1 => -127i8 as u8,
                    _ => rng.random_range(-127i8..=127) as u8,
                };
            }
        }
        a
    }

    fn same_as_dot<const R: usize, const T: usize>(f: Tile, what: &str, rng: &mut StdRng) {
        for n in [128usize, 640, 896, 2048] {
            let (w, a) = (weights(n, R, rng), acts(n, T, rng));
            let (w_row, a_row) = (w.len() / R, a.len() / T);
            let mut out = [f32::NAN; 16];
            f(n, &w, w_row, &a, a_row, &mut out);
            let want = |r: usize, t: usize| {
                let (wr, at) = (&w[r * w_row..][..w_row], &a[t * a_row..][..a_row]);
                // SAFETY: called only after `available()`.
                unsafe { mx::vec_dot_int4_g128_q8_1(n, wr, at) }
            };
            assert_bitwise(&out, R, (R, T), want, &format!("{what} {R}x{T} n={n}"));
        }
    }

    macro_rules! at {
        ($rng:ident, $r:literal, $t:literal) => {{
            fn g(n: usize, w: &[u8], wr: usize, a: &[u8], ar: usize, o: &mut [f32]) {
                // SAFETY: called only after `available()`.
                unsafe { super::tile_int4_g128_q8_1::<$r, $t>(n, w, wr, a, ar, o) }
            }
            fn h(n: usize, w: &[u8], wr: usize, a: &[u8], ar: usize, o: &mut [f32]) {
                // SAFETY: called only after `packed_vnni::available()`.
                unsafe { super::tile_int4_g128_q8_1_vnni::<$r, $t>(n, w, wr, a, ar, o) }
            }
            same_as_dot::<$r, $t>(g, "maddubs", &mut $rng);
            if packed_vnni::available() {
                same_as_dot::<$r, $t>(h, "vnni", &mut $rng);
            }
        }};
    }

    #[test]
    fn int4_g128_tiles_equal_vec_dot_bitwise() {
        if !available() {
            return;
        }
        let mut rng = StdRng::seed_from_u64(204);
        at!(rng, 1, 1);
        at!(rng, 2, 8);
        at!(rng, 4, 4);
        at!(rng, 3, 5);
    }
}

//! AVX2 tiles of R weight rows x T tokens for the f32-activation formats (MXFP8, FP8_PC, NF4):
//! each weight block decoded to f32 lanes once per tile, then per pair `mx.rs`'s FMAs in order.

use std::arch::x86_64::*;

use llmopt_tensor::e8m0_to_f32;

use super::mx::{e4m3x16, nf4_table, nf4x8};
use super::util::*;

/// Whether this CPU has AVX-512 F + VL, for the `wide` forms: the same code compiled with 32
/// vector registers (EVEX encodings), so R x T accumulators and R rows' decoded blocks fit.
pub(crate) fn wide_available() -> bool {
    is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vl")
}

/// The 8 f32s at `p + off`, without a bounds check.
///
/// # Safety
/// `p + off .. p + off + 32` must be readable: the tiles read only inside the token rows that
/// `check_tile` asserted lie in the slice.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn ld8f(p: *const u8, off: usize) -> __m256 {
    // SAFETY: the caller's; `loadu` needs no alignment.
    unsafe { _mm256_loadu_ps(p.add(off).cast()) }
}

/// MXFP8's block `x` (33 bytes): its 32 E4M3 values as 4 x 8 lanes (2^-8 of the value) and its
/// scale times 256 in 8 lanes, as `mx.rs`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn mxfp8_block(x: &[u8]) -> ([__m256; 4], __m256) {
    let ((w0, w1), (w2, w3)) = (e4m3x16(&x[1..17]), e4m3x16(&x[17..33]));
    ([w0, w1, w2, w3], _mm256_set1_ps(e8m0_to_f32(x[0]) * 256.0))
}

/// FP8_PC's block `x` (32 bytes) as 4 x 8 lanes (2^-8 of the value).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn fp8_block(x: &[u8]) -> ([__m256; 4], ()) {
    let ((w0, w1), (w2, w3)) = (e4m3x16(&x[..16]), e4m3x16(&x[16..32]));
    ([w0, w1, w2, w3], ())
}

/// NF4's block `x` (34 bytes, 64 elements): its levels in `mx.rs`'s order of FMAs (per group of
/// 8 bytes the low nibbles, elements `8g..`, then the high ones, elements `32 + 8g..`) and its
/// f16 scale in 8 lanes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn nf4_block(x: &[u8]) -> ([__m256; 8], __m256) {
    let t = nf4_table();
    let mut v = [_mm256_setzero_ps(); 8];
    for g in 0..4 {
        (v[2 * g], v[2 * g + 1]) = nf4x8(t, &x[2 + 8 * g..]);
    }
    (v, _mm256_set1_ps(f16_at(x, 0)))
}

/// Byte offsets in a block's activations of NF4's level vectors, in [`nf4_block`]'s order.
const NF4_OFFS: [usize; 8] = [0, 128, 32, 160, 64, 192, 96, 224];
/// Byte offsets of the E4M3 formats' 4 vectors.
const FP8_OFFS: [usize; 4] = [0, 32, 64, 96];

/// The shared loop: `$decode(x)` turns a weight block (`$wb` bytes after a `$head`-byte row
/// header, `$bl` elements) into `$k` vectors and its scale; per pair either (`scaled`) `s` from
/// zero through the `$k` FMAs in order, then `acc = fma(scale, s, acc)` (MXFP8, NF4), or
/// (`direct`) the FMAs straight into `acc` (FP8_PC); `$fin(sum, row)` gives the result.
macro_rules! float_tile {
    ($how:ident, $n:ident, $w:ident, $w_row:ident, $a:ident, $a_row:ident, $out:ident,
     ($head:expr, $wb:expr, $bl:expr, $k:literal, $offs:expr), $decode:ident, $fin:ident) => {{
        let nb = $n / $bl;
        check_tile::<R, T>(($w, $w_row, $head + nb * $wb), ($a, $a_row, 4 * $n), $out);
        let ap = $a.as_ptr();
        let mut acc = [[_mm256_setzero_ps(); R]; T];
        for b in 0..nb {
            // A loop, not `array::from_fn`: its closure was not inlined (a call per row and block).
            let block = |r: usize| &$w[r * $w_row + $head + b * $wb..][..$wb];
            let mut xs = [$decode(block(0)); R];
            for (r, x) in xs.iter_mut().enumerate().skip(1) {
                *x = $decode(block(r));
            }
            float_tile!(@pairs $how, acc, xs, $k, |t, k| {
                // SAFETY: token t's block b (`check_tile`).
                unsafe { ld8f(ap, t * $a_row + b * 4 * $bl + $offs[k]) }
            });
        }
        for (t, acc_t) in acc.iter().enumerate() {
            for r in 0..R {
                $out[t * R + r] = $fin(hsum_f32_8(acc_t[r]), &$w[r * $w_row..]);
            }
        }
    }};
    // Per group of `GROUP` tokens: the `k`-th FMA of every pair of the group, then the next, so
    // that the loads and FMAs come in an order the compiler keeps in registers (one pair at a
    // time, with the token's activations loaded by `array::from_fn`, NF4's 2x8 task at width
    // 2048 took 101 µs instead of 63).
    (@pairs scaled, $acc:ident, $xs:ident, $k:literal, |$t:ident, $kk:ident| $y:expr) => {{
        for t0 in (0..T).step_by(GROUP) {
            let mut s = [[_mm256_setzero_ps(); R]; GROUP];
            for $kk in 0..$k {
                for (g, s_g) in s.iter_mut().enumerate() {
                    let $t = t0 + g;
                    if $t < T {
                        let yv = $y;
                        for r in 0..R {
                            s_g[r] = _mm256_fmadd_ps($xs[r].0[$kk], yv, s_g[r]);
                        }
                    }
                }
            }
            for (g, s_g) in s.iter().enumerate() {
                if t0 + g < T {
                    for r in 0..R {
                        $acc[t0 + g][r] = _mm256_fmadd_ps($xs[r].1, s_g[r], $acc[t0 + g][r]);
                    }
                }
            }
        }
    }};
    // The `k`-th FMA of every pair, then the next.
    (@pairs direct, $acc:ident, $xs:ident, $k:literal, |$t:ident, $kk:ident| $y:expr) => {{
        for $kk in 0..$k {
            for ($t, acc_t) in $acc.iter_mut().enumerate() {
                let yv = $y;
                for r in 0..R {
                    acc_t[r] = _mm256_fmadd_ps($xs[r].0[$kk], yv, acc_t[r]);
                }
            }
        }
    }};
}

/// Tokens per group of the scaled formats' pairs (1, 4 and 8 timed the same within 3%).
const GROUP: usize = 4;

/// A result that is the pair's sum.
fn sum_only(s: f32, _: &[u8]) -> f32 {
    s
}

/// FP8_PC's result: the sum times the row's f32 scale times 256, as `mx.rs`.
fn fp8_pc_fin(s: f32, row: &[u8]) -> f32 {
    s * (f32::from_le_bytes([row[0], row[1], row[2], row[3]]) * 256.0)
}

/// Defines a tile function in the AVX2 form and the `wide` one (AVX-512 F + VL registers).
macro_rules! tiles {
    ($(#[$doc:meta])* $name:ident, $wide:ident, $how:ident, $shape:tt, $decode:ident, $fin:ident) => {
        $(#[$doc])*
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(crate) fn $name<const R: usize, const T: usize>(
            n: usize,
            w: &[u8],
            w_row: usize,
            a: &[u8],
            a_row: usize,
            out: &mut [f32],
        ) {
            float_tile!($how, n, w, w_row, a, a_row, out, $shape, $decode, $fin)
        }

        /// As the AVX2 form, with AVX-512 F + VL's 32 registers.
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl")]
        pub(crate) fn $wide<const R: usize, const T: usize>(
            n: usize,
            w: &[u8],
            w_row: usize,
            a: &[u8],
            a_row: usize,
            out: &mut [f32],
        ) {
            float_tile!($how, n, w, w_row, a, a_row, out, $shape, $decode, $fin)
        }
    };
}

tiles!(
    /// MXFP8 x f32, R rows x T tokens (see `TileFn`). Registered as 2x8 in both forms: the
    /// 64-row x 16-token task at widths 640 / 2048 took 20.7 / 65.1 µs wide (min of 3000, Zen
    /// 4), 2x4 25.3 / 77.9, 4x4 25.4 / 78.0, 3x4 26.0 / 78.8, 1x8 24.1 / 85.1; AVX2 24.2 / 83.9,
    /// 1x8 23.4 / 86.3, 2x4 26.8 / 83.3, 3x4 27.2 / 84.3; one `vec_dot` per pair 63.3 / 193.
    tile_mxfp8_f32,
    tile_mxfp8_f32_wide,
    scaled,
    (0, 33, 32, 4, FP8_OFFS),
    mxfp8_block,
    sum_only
);

tiles!(
    /// FP8_PC x f32, R rows x T tokens. Registered as 2x8 wide, 2x4 AVX2: the same task took
    /// 16.5 / 50.6 µs wide, 4x4 20.6 / 60.1, 3x4 21.1 / 63.6, 2x4 21.4 / 65.3; AVX2 2x4
    /// 21.0 / 63.8, 4x4 25.2 / 76.2, 2x8 23.6 / 80.5 (spilling), 1x8 23.2 / 81.5; one `vec_dot`
    /// per pair 79.9 / 275 (its 4 FMAs per block chain on one accumulator).
    tile_fp8_pc_f32,
    tile_fp8_pc_f32_wide,
    direct,
    (4, 32, 32, 4, FP8_OFFS),
    fp8_block,
    fp8_pc_fin
);

tiles!(
    /// NF4 x f32, R rows x T tokens. Registered as 2x8 wide, 3x4 AVX2: the same task took
    /// 20.0 / 62.1 µs wide, 2x4 23.9 / 72.6, 4x4 25.0 / 75.6, 3x4 25.1 / 75.7; AVX2 3x4
    /// 25.7 / 77.2, 2x8 27.0 / 86.4, 1x8 25.0 / 86.7, 3x5 29.3 / 88.2; one `vec_dot` per pair
    /// 59.0 / 178.
    tile_nf4_f32,
    tile_nf4_f32_wide,
    scaled,
    (0, 34, 64, 8, NF4_OFFS),
    nf4_block,
    sum_only
);

#[cfg(test)]
mod tests {
    //! Both forms (AVX2, and the wide one where the CPU has AVX-512 F + VL) at several shapes
    //! against the AVX2 `vec_dot` per pair, bit for bit, on raw blocks (every finite E4M3 code,
    //! every NF4 index) and activations with zeros of both signs and large values.

    use super::super::util::assert_bitwise;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::super::{available, mx};
    use super::wide_available;
    use llmopt_tensor::f32_to_f16;

    type Tile = fn(usize, &[u8], usize, &[u8], usize, &mut [f32]);
    type Dot = fn(usize, &[u8], &[u8]) -> f32;
    /// Random rows of a format: `(n, rows, rng)` to bytes.
    type Rows = fn(usize, usize, &mut StdRng) -> Vec<u8>;

    /// A finite E4M3 byte (not `s 1111 111`, the NaNs).
    fn e4m3(rng: &mut StdRng) -> u8 {
        loop {
            let b: u8 = rng.random();
            if b & 0x7f != 0x7f {
                return b;
            }
        }
    }

    /// f32 activation rows: normal values, every 13th a zero of either sign, every 29th large.
    fn f32_rows(n: usize, toks: usize, rng: &mut StdRng) -> Vec<u8> {
        (0..n * toks)
            .flat_map(|i| {
                let v: f32 = match i % 377 {
                    j if j % 13 == 0 => [0.0, -0.0][j / 13 % 2],
                    j if j % 29 == 0 => rng.random_range(-3e4..3e4),
                    _ => rng.random_range(-2.0..2.0),
                };
                v.to_le_bytes()
            })
            .collect()
    }

    /// MXFP8 rows: per block an E8M0 scale (0 and 1 among them: subnormal scales), 32 codes.
    fn mxfp8_rows(n: usize, rows: usize, rng: &mut StdRng) -> Vec<u8> {
        let mut w = vec![0u8; rows * n / 32 * 33];
        for (i, blk) in w.chunks_exact_mut(33).enumerate() {
            blk[0] = if i % 5 == 0 { [0, 1][i / 5 % 2] } else { rng.random_range(110..=135) };
            blk[1..].iter_mut().for_each(|q| *q = e4m3(rng));
        }
        w
    }

    /// FP8_PC rows: an f32 scale, then codes.
    fn fp8_pc_rows(n: usize, rows: usize, rng: &mut StdRng) -> Vec<u8> {
        let mut w = vec![0u8; rows * (4 + n)];
        for row in w.chunks_exact_mut(4 + n) {
            let d: f32 = rng.random_range(1e-4..1e-1);
            row[..4].copy_from_slice(&d.to_le_bytes());
            row[4..].iter_mut().for_each(|q| *q = e4m3(rng));
        }
        w
    }

    /// NF4 rows: per block an f16 absmax, then 64 random indices.
    fn nf4_rows(n: usize, rows: usize, rng: &mut StdRng) -> Vec<u8> {
        let mut w = vec![0u8; rows * n / 64 * 34];
        for blk in w.chunks_exact_mut(34) {
            let d: f32 = rng.random_range(1e-3..1.0);
            blk[..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
            blk[2..].iter_mut().for_each(|q| *q = rng.random());
        }
        w
    }

    /// `f` at `R x T` against `dot` per pair on `w_of(n, R)` and f32 activations.
    fn same_as_dot<const R: usize, const T: usize>(f: Tile, dot: Dot, w_of: Rows, what: &str) {
        let mut rng = StdRng::seed_from_u64(200 + (R * 16 + T) as u64);
        for n in [64usize, 128, 640, 896, 2048] {
            let (w, a) = (w_of(n, R, &mut rng), f32_rows(n, T, &mut rng));
            let (w_row, a_row) = (w.len() / R, a.len() / T);
            let mut out = [f32::NAN; 16];
            f(n, &w, w_row, &a, a_row, &mut out);
            let want =
                |r: usize, t: usize| dot(n, &w[r * w_row..][..w_row], &a[t * a_row..][..a_row]);
            assert_bitwise(&out, R, (R, T), want, &format!("{what} {R}x{T} n={n}"));
        }
    }

    /// Checks a format's tile at several shapes in both forms against its `vec_dot`.
    macro_rules! check_format {
        ($avx2:ident, $wide:ident, $dot:path, $rows:ident) => {{
            fn dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
                // SAFETY: called only after `available()`.
                unsafe { $dot(n, w, a) }
            }
            macro_rules! at {
                ($r:literal, $t:literal) => {{
                    fn g(n: usize, w: &[u8], wr: usize, a: &[u8], ar: usize, o: &mut [f32]) {
                        // SAFETY: called only after `available()`.
                        unsafe { super::$avx2::<$r, $t>(n, w, wr, a, ar, o) }
                    }
                    fn h(n: usize, w: &[u8], wr: usize, a: &[u8], ar: usize, o: &mut [f32]) {
                        // SAFETY: called only after `wide_available()`.
                        unsafe { super::$wide::<$r, $t>(n, w, wr, a, ar, o) }
                    }
                    same_as_dot::<$r, $t>(g, dot, $rows, "avx2");
                    if wide_available() {
                        same_as_dot::<$r, $t>(h, dot, $rows, "wide");
                    }
                }};
            }
            at!(1, 1);
            at!(2, 4);
            at!(3, 4);
            at!(2, 8);
            at!(3, 5);
        }};
    }

    #[test]
    fn float_tiles_equal_vec_dot_bitwise() {
        if !available() {
            return;
        }
        check_format!(tile_mxfp8_f32, tile_mxfp8_f32_wide, mx::vec_dot_mxfp8_f32, mxfp8_rows);
        check_format!(tile_fp8_pc_f32, tile_fp8_pc_f32_wide, mx::vec_dot_fp8_pc_f32, fp8_pc_rows);
        check_format!(tile_nf4_f32, tile_nf4_f32_wide, mx::vec_dot_nf4_f32, nf4_rows);
    }
}

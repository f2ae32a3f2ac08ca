//! AVX2 tiles of R weight rows x T tokens for llmopt's integer formats (INT8_PC, MXFP4 x Q8_0): each
//! weight block unpacked once per tile, per pair the integer lane sums and float ops of `mx.rs`.

use std::arch::x86_64::*;

use llmopt_tensor::{e8m0_half_to_f32, E2M1_VALUES};

use super::util::*;

// Two forms of the exact per-lane integer sums (4 products per i32 lane, as `maddubs` + `madd`):
// ggml's sign trick (`|w|` once per row and block, `sign(a, w)` per pair), and with AVX-512 VNNI
// and VL one `vpdpbusd` per pair of the activations made unsigned (`a xor 0x80`, that is a + 128,
// once per token and block) with the signed weights, started at minus `128 Σw` of the lane (once
// per row and block). Both give the same integers, so the same floats as `vec_dot`.

/// Sign trick, per row and block: `|w|`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn sign_row(q: __m256i) -> __m256i {
    _mm256_sign_epi8(q, q)
}

/// Sign trick, per token and block: the activations as they are.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn sign_tok(a: __m256i) -> __m256i {
    a
}

/// Sign trick, per pair: the 8 lane sums of `w · a` as floats (`mul_sum_i8_pairs_float`).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn sign_pair(aw: __m256i, q: __m256i, a: __m256i) -> __m256 {
    mul_sum_us8_pairs_float(aw, _mm256_sign_epi8(a, q))
}

/// VNNI, per row and block: minus `128 x` the sum of each lane's 4 weights.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
#[inline]
fn vnni_row(q: __m256i) -> __m256i {
    let z = _mm256_setzero_si256();
    _mm256_sub_epi32(z, _mm256_dpbusd_epi32(z, _mm256_set1_epi8(i8::MIN), q))
}

/// VNNI, per token and block: `a + 128` as unsigned bytes.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
#[inline]
fn vnni_tok(a: __m256i) -> __m256i {
    _mm256_xor_si256(a, _mm256_set1_epi8(i8::MIN))
}

/// VNNI, per pair: `Σ (a + 128) w - 128 Σw` per lane, the same integers as [`sign_pair`].
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
#[inline]
fn vnni_pair(off: __m256i, q: __m256i, ua: __m256i) -> __m256 {
    _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(off, ua, q))
}

/// The 32 bytes at `p + off`, without a bounds check (the W8A8 tiles ran 1.2-1.3x faster so).
///
/// # Safety
/// `p + off .. p + off + 32` must be readable: the tiles read only inside the blocks that
/// `check_tile` asserted lie in their slices.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) unsafe fn ld32(p: *const u8, off: usize) -> __m256i {
    // SAFETY: the caller's; `loadu` needs no alignment.
    unsafe { _mm256_loadu_si256(p.add(off).cast()) }
}

/// The f16 at `p + off` as f32, without a bounds check.
///
/// # Safety
/// As [`ld32`], for 2 bytes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn f16_ld(p: *const u8, off: usize) -> f32 {
    // SAFETY: the caller's; `read_unaligned` needs no alignment.
    let bits = unsafe { p.add(off).cast::<u16>().read_unaligned() };
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(u16::from_le(bits)))))
}

/// INT8_PC's weight block at `x`: 32 int8 (no block scale).
///
/// # Safety
/// The 32 bytes at `x` must be readable.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn int8_pc_block(x: *const u8) -> (__m256i, ()) {
    // SAFETY: the caller's.
    (unsafe { ld32(x, 0) }, ())
}

/// MXFP4's weight block at `x`: the E8M0 scale byte, then 16 bytes of E2M1 codes, to 32 int8
/// (doubled values, by `pshufb`, as `mx.rs`) and the block's half scale.
///
/// # Safety
/// The 17 bytes at `x` must be readable.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn mxfp4_block(x: *const u8) -> (__m256i, f32) {
    // SAFETY: E2M1_VALUES is 16 readable bytes; the caller's for `x`; `loadu` needs no alignment.
    let (table, e, bits) = unsafe {
        let table = _mm_loadu_si128(E2M1_VALUES.as_ptr().cast());
        (table, x.read(), _mm_loadu_si128(x.add(1).cast()))
    };
    let m4 = _mm_set1_epi8(0x0f);
    let lo = _mm_shuffle_epi8(table, _mm_and_si128(bits, m4));
    let hi = _mm_shuffle_epi8(table, _mm_and_si128(_mm_srli_epi16(bits, 4), m4));
    (_mm256_set_m128i(hi, lo), e8m0_half_to_f32(e))
}

/// The f16 block scales of T tokens (at `y + t * a_row`, `T <= 8`) in lanes `0..T`.
///
/// # Safety
/// Token t's 2 bytes at `y + t * a_row` must be readable for `t < T`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) unsafe fn f16_lanes<const T: usize>(y: *const u8, a_row: usize) -> __m256 {
    assert!(T <= 8, "T = {T} tokens do not fit 8 lanes");
    let mut h = _mm_setzero_si128();
    macro_rules! insert {
        ($($t:literal)*) => {$(
            if $t < T {
                // SAFETY: the caller's.
                let bits = unsafe { y.add($t * a_row).cast::<u16>().read_unaligned() };
                h = _mm_insert_epi16::<$t>(h, i32::from(u16::from_le(bits)));
            }
        )*};
    }
    insert!(0 1 2 3 4 5 6 7);
    _mm256_cvtph_ps(h)
}

/// Per block, where the weights have no block scale: nothing.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn no_table<const R: usize>(_: [(); R], _: *const u8, _: usize) {}

/// Per token: its `dy` in 8 lanes (INT8_PC: the pair's block scale; a table of the T tokens'
/// scales and a broadcast load per pair, as MXFP4's, made the 3x4 tile 1.13x slower).
///
/// # Safety
/// The 2 bytes at `y` must be readable.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn dy_at(y: *const u8) -> __m256 {
    // SAFETY: the caller's.
    _mm256_set1_ps(unsafe { f16_ld(y, 0) })
}

/// Per pair: the token's `dy`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn same_dy(_: &(), d: __m256, _: usize, _: usize) -> __m256 {
    d
}

/// Per token: nothing (the pairs' scales are in the block's table).
///
/// # Safety
/// None (unsafe only to share [`dy_at`]'s type).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn no_tok(_: *const u8) {}

/// Per block: `f16(y.d) * e` for every row and token, row r's in `tab[r][t]` (MXFP4's
/// `f16(y.d) * e8m0_half(x.e)` of `mx.rs`): the T activation scales converted at once, then one
/// multiply per row.
///
/// # Safety
/// As [`f16_lanes`].
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn dy_e_table<const R: usize, const T: usize>(
    e: [f32; R],
    y: *const u8,
    a_row: usize,
) -> [[f32; 8]; R] {
    // SAFETY: the caller's.
    let dy = unsafe { f16_lanes::<T>(y, a_row) };
    let mut tab = [[0.0f32; 8]; R];
    for (row, &e) in tab.iter_mut().zip(&e) {
        // SAFETY: `row` is 8 writable f32s; `storeu` needs no alignment.
        unsafe { _mm256_storeu_ps(row.as_mut_ptr(), _mm256_mul_ps(dy, _mm256_set1_ps(e))) };
    }
    // Keeps the table in memory: the pairs then broadcast their scale from it, a load (folded
    // into the FMA) instead of a multiply or shuffle on the vector pipes (the 4x4 task at width
    // 2048: 41 µs, with a multiply per pair 46, with the table in registers and shuffles 45).
    std::hint::black_box(&mut tab);
    tab
}

/// Per pair: its scale from the block's table, broadcast.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn from_table<const R: usize>(tab: &[[f32; 8]; R], _: (), r: usize, t: usize) -> __m256 {
    _mm256_broadcast_ss(&tab[r][t])
}

/// INT8_PC's result: the pair's sum times the row's f32 scale.
fn int8_pc_fin(s: f32, row: &[u8]) -> f32 {
    s * f32::from_le_bytes([row[0], row[1], row[2], row[3]])
}

/// A result that is the pair's sum.
fn sum_only(s: f32, _: &[u8]) -> f32 {
    s
}

/// The shared loop of signed 32-element weight blocks with Q8_0 activations, in form `$form`
/// (`sign` or `vnni`) for format `$fmt`: its row header and block bytes, `unpack` (a block's 32
/// signed bytes and its scale, once per row and block), `table` (from the rows' scales and the
/// tokens' blocks, once per block), `tok` (from the token's block, once per token and block),
/// `pair` (the pair's block scale from those two), `fin` (the result from the horizontal sum of
/// the pair's lanes and the weight row). Per pair `acc = fma(scale, lane sums, acc)` in block order, as
/// `mx.rs`.
macro_rules! q8_0_tile {
    ($form:ident $fmt:ident: $n:ident, $w:ident, $w_row:ident, $a:ident, $a_row:ident, $out:ident) => {{
        let (head, wb, unpack, (table, tok, pair), fin) = q8_0_tile!(@fmt $fmt);
        let nb = $n / 32;
        check_tile::<R, T>(($w, $w_row, head + nb * wb), ($a, $a_row, nb * 34), $out);
        let (row_op, tok_op, pair_op) = q8_0_tile!(@form $form);
        let (wp, ap) = ($w.as_ptr(), $a.as_ptr());
        let mut acc = [[_mm256_setzero_ps(); R]; T];
        for b in 0..nb {
            let xs: [_; R] = std::array::from_fn(|r| {
                // SAFETY: row r's block b (`check_tile`).
                unsafe { unpack(wp.add(r * $w_row + head + b * wb)) }
            });
            let qx = xs.map(|x| x.0);
            // SAFETY: the tokens' block b (`check_tile`).
            let tab = unsafe { table(xs.map(|x| x.1), ap.add(b * 34), $a_row) };
            let px = qx.map(|q| row_op(q));
            for (t, acc_t) in acc.iter_mut().enumerate() {
                let y = t * $a_row + b * 34;
                // SAFETY: token t's block b (`check_tile`).
                let (dy, qy) = unsafe { (tok(ap.add(y)), ld32(ap, y + 2)) };
                let qy = tok_op(qy);
                for r in 0..R {
                    let d = pair(&tab, dy, r, t);
                    acc_t[r] = _mm256_fmadd_ps(d, pair_op(px[r], qx[r], qy), acc_t[r]);
                }
            }
        }
        for (t, acc_t) in acc.iter().enumerate() {
            for r in 0..R {
                $out[t * R + r] = fin(hsum_f32_8(acc_t[r]), &$w[r * $w_row..]);
            }
        }
    }};
    (@form sign) => {
        (sign_row, sign_tok, sign_pair)
    };
    (@form vnni) => {
        (vnni_row, vnni_tok, vnni_pair)
    };
    (@fmt int8_pc) => {
        (4, 32, int8_pc_block, (no_table::<R>, dy_at, same_dy), int8_pc_fin)
    };
    (@fmt mxfp4) => {
        (0, 17, mxfp4_block, (dy_e_table::<R, T>, no_tok, from_table::<R>), sum_only)
    };
}

/// INT8_PC x Q8_0, R rows x T tokens (see `TileFn`), by the sign trick. Registered as 3x4: a
/// 64-row x 16-token task at widths 640 / 2048 took 15.5 / 45.7 µs (min of 3000, Zen 4 running
/// this AVX2 code; two runs within 3 µs / 0.5 µs of each other), 2x4, 4x2 and 2x8 the same
/// within that, 4x4 16.6 / 47.4, one `vec_dot` per pair 38.5 / 145.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn tile_int8_pc_q8_0<const R: usize, const T: usize>(
    n: usize,
    w: &[u8],
    w_row: usize,
    a: &[u8],
    a_row: usize,
    out: &mut [f32],
) {
    q8_0_tile!(sign int8_pc: n, w, w_row, a, a_row, out)
}

/// INT8_PC x Q8_0, R rows x T tokens, with `vpdpbusd` (AVX-512 VNNI + VL). Registered as 3x4:
/// the same task took 10.4 / 30.0 µs, 4x4 11.0 / 29.8, 4x2 12.1 / 34.9, 2x4 12.9 / 38.0, 2x8
/// 17.6 / 52.9, one `vec_dot` per pair 38.4 / 146.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
pub(crate) fn tile_int8_pc_q8_0_vnni<const R: usize, const T: usize>(
    n: usize,
    w: &[u8],
    w_row: usize,
    a: &[u8],
    a_row: usize,
    out: &mut [f32],
) {
    q8_0_tile!(vnni int8_pc: n, w, w_row, a, a_row, out)
}

/// MXFP4 x Q8_0, R rows x T tokens (`T <= 8`), by the sign trick. Registered as 2x8: the same
/// task took 17.8 / 53.7 µs, 4x4 19.6 / 58.4, 2x4 19.6 / 58.7, 1x8 19.3 / 59.5, 3x4 20.0 / 60.3,
/// 4x2 23.1 / 69.4, one `vec_dot` per pair 52.3 / 205.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn tile_mxfp4_q8_0<const R: usize, const T: usize>(
    n: usize,
    w: &[u8],
    w_row: usize,
    a: &[u8],
    a_row: usize,
    out: &mut [f32],
) {
    q8_0_tile!(sign mxfp4: n, w, w_row, a, a_row, out)
}

/// MXFP4 x Q8_0, R rows x T tokens (`T <= 8`), with `vpdpbusd` (AVX-512 VNNI + VL). Registered
/// as 4x4: the same task took 14.2 / 41.0 µs, 2x8 14.8 / 43.1, 3x4 15.5 / 45.7, 2x4 16.0 / 46.9,
/// 4x3 18.0 / 55.1, 4x2 18.6 / 54.9, one `vec_dot` per pair 52.3 / 205.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
pub(crate) fn tile_mxfp4_q8_0_vnni<const R: usize, const T: usize>(
    n: usize,
    w: &[u8],
    w_row: usize,
    a: &[u8],
    a_row: usize,
    out: &mut [f32],
) {
    q8_0_tile!(vnni mxfp4: n, w, w_row, a, a_row, out)
}

#[cfg(test)]
mod tests {
    //! Every tile form (the sign trick, VNNI where the CPU has it) at several shapes against the
    //! AVX2 `vec_dot` per pair, bit for bit, on raw blocks that reach the formats' extremes (the
    //! dispatch table hands out one form per CPU, so `tests/tiles.rs` sees only that one).

    use super::super::util::assert_bitwise;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::super::{available, mx, packed_vnni};
    use llmopt_tensor::f32_to_f16;

    type Tile = fn(usize, &[u8], usize, &[u8], usize, &mut [f32]);
    type Dot = fn(usize, &[u8], &[u8]) -> f32;
    /// Random rows of a format: `(n, rows, rng)` to bytes.
    type Rows = fn(usize, usize, &mut StdRng) -> Vec<u8>;

    /// Q8_0 activation rows: a scale, then quants in -127..=127 (token 0 all 127, token 1 -127).
    fn q8_0_rows(n: usize, toks: usize, rng: &mut StdRng) -> Vec<u8> {
        let mut a = vec![0u8; toks * n / 32 * 34];
        for (i, blk) in a.chunks_exact_mut(34).enumerate() {
            let d: f32 = rng.random_range(1e-3..1.0);
            blk[..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
            let tok = i / (n / 32);
            for q in &mut blk[2..] {
                *q = match tok {
                    0 => 127,
                    1 => -127i8 as u8,
                    _ => rng.random_range(-127i8..=127) as u8,
                };
            }
        }
        a
    }

    /// INT8_PC rows: a scale, then any int8 (row 0 all -128, row 1 all 127).
    fn int8_pc_rows(n: usize, rows: usize, rng: &mut StdRng) -> Vec<u8> {
        let mut w = vec![0u8; rows * (4 + n)];
        for (r, row) in w.chunks_exact_mut(4 + n).enumerate() {
            let d: f32 = rng.random_range(1e-4..1e-1);
            row[..4].copy_from_slice(&d.to_le_bytes());
            for q in &mut row[4..] {
                *q = match r {
                    0 => 0x80,
                    1 => 127,
                    _ => rng.random(),
                };
            }
        }
        w
    }

    /// MXFP4 rows: per block an E8M0 scale (0, 1 and 254 among them: subnormal and huge half
    /// scales), then codes (row 0 all -12, row 1 all 12).
    fn mxfp4_rows(n: usize, rows: usize, rng: &mut StdRng) -> Vec<u8> {
        let mut w = vec![0u8; rows * n / 32 * 17];
        for (i, blk) in w.chunks_exact_mut(17).enumerate() {
            blk[0] = match i % 7 {
                0 => [0, 1, 254][i / 7 % 3],
                _ => rng.random_range(110..=135),
            };
            for q in &mut blk[1..] {
                *q = match i / (n / 32) {
                    0 => 0xff,
                    1 => 0x77,
                    _ => rng.random(),
                };
            }
        }
        w
    }

    /// `f` at `R x T` against `dot` per pair on `w_of(n, R)` and `a_of(n, T)`.
    fn same_as_dot<const R: usize, const T: usize>(
        f: Tile,
        dot: Dot,
        (w_of, a_of): (Rows, Rows),
        what: &str,
        rng: &mut StdRng,
    ) {
        for n in [32usize, 128, 640, 896, 2048] {
            let (w, a) = (w_of(n, R, rng), a_of(n, T, rng));
            let (w_row, a_row) = (w.len() / R, a.len() / T);
            let mut out = [f32::NAN; 16];
            f(n, &w, w_row, &a, a_row, &mut out);
            let want =
                |r: usize, t: usize| dot(n, &w[r * w_row..][..w_row], &a[t * a_row..][..a_row]);
            assert_bitwise(&out, R, (R, T), want, &format!("{what} {R}x{T} n={n}"));
        }
    }

    /// Instantiates a tile form at `R x T` as a plain fn.
    macro_rules! form {
        (sign $f:ident, $r:literal, $t:literal) => {{
            fn g(n: usize, w: &[u8], wr: usize, a: &[u8], ar: usize, o: &mut [f32]) {
                // SAFETY: called only after `available()` (the test returns early without AVX2).
                unsafe { super::$f::<$r, $t>(n, w, wr, a, ar, o) }
            }
            g as Tile
        }};
        (vnni $f:ident, $r:literal, $t:literal) => {{
            fn g(n: usize, w: &[u8], wr: usize, a: &[u8], ar: usize, o: &mut [f32]) {
                // SAFETY: called only after `packed_vnni::available()`.
                unsafe { super::$f::<$r, $t>(n, w, wr, a, ar, o) }
            }
            g as Tile
        }};
    }

    fn dot_int8_pc(n: usize, w: &[u8], a: &[u8]) -> f32 {
        // SAFETY: called only after `available()`.
        unsafe { mx::vec_dot_int8_pc_q8_0(n, w, a) }
    }

    fn dot_mxfp4(n: usize, w: &[u8], a: &[u8]) -> f32 {
        // SAFETY: called only after `available()`.
        unsafe { mx::vec_dot_mxfp4_q8_0(n, w, a) }
    }

    #[test]
    fn mxfp4_tiles_equal_vec_dot_bitwise() {
        if !available() {
            return;
        }
        let mut rng = StdRng::seed_from_u64(39);
        let io = (mxfp4_rows as _, q8_0_rows as _);
        let d = dot_mxfp4 as Dot;
        same_as_dot::<1, 1>(form!(sign tile_mxfp4_q8_0, 1, 1), d, io, "sign", &mut rng);
        same_as_dot::<2, 8>(form!(sign tile_mxfp4_q8_0, 2, 8), d, io, "sign", &mut rng);
        same_as_dot::<4, 4>(form!(sign tile_mxfp4_q8_0, 4, 4), d, io, "sign", &mut rng);
        if packed_vnni::available() {
            let f = form!(vnni tile_mxfp4_q8_0_vnni, 1, 1);
            same_as_dot::<1, 1>(f, d, io, "vnni", &mut rng);
            let f = form!(vnni tile_mxfp4_q8_0_vnni, 4, 4);
            same_as_dot::<4, 4>(f, d, io, "vnni", &mut rng);
            let f = form!(vnni tile_mxfp4_q8_0_vnni, 3, 5);
            same_as_dot::<3, 5>(f, d, io, "vnni", &mut rng);
        }
    }

    #[test]
    fn int8_pc_tiles_equal_vec_dot_bitwise() {
        if !available() {
            return;
        }
        let mut rng = StdRng::seed_from_u64(201);
        let io = (int8_pc_rows as _, q8_0_rows as _);
        let d = dot_int8_pc as Dot;
        same_as_dot::<1, 1>(form!(sign tile_int8_pc_q8_0, 1, 1), d, io, "sign", &mut rng);
        same_as_dot::<3, 4>(form!(sign tile_int8_pc_q8_0, 3, 4), d, io, "sign", &mut rng);
        same_as_dot::<2, 8>(form!(sign tile_int8_pc_q8_0, 2, 8), d, io, "sign", &mut rng);
        if packed_vnni::available() {
            let f = form!(vnni tile_int8_pc_q8_0_vnni, 1, 1);
            same_as_dot::<1, 1>(f, d, io, "vnni", &mut rng);
            let f = form!(vnni tile_int8_pc_q8_0_vnni, 3, 4);
            same_as_dot::<3, 4>(f, d, io, "vnni", &mut rng);
            let f = form!(vnni tile_int8_pc_q8_0_vnni, 4, 4);
            same_as_dot::<4, 4>(f, d, io, "vnni", &mut rng);
        }
    }
}

//! AVX2 tiles of R weight rows x T tokens for Q4_0, Q5_0, Q8_0 (x Q8_0) and Q4_1 (x Q8_1): each
//! weight block is unpacked once per tile, and every pair keeps `legacy.rs`'s float ops exactly.

use std::arch::x86_64::*;

use super::util::*;

/// The shared loop of the signed formats with Q8_0 activations: `$unpack(x)` turns a weight
/// block into 32 signed bytes; per pair `fma(dx * dy, mul_sum_i8_pairs(qx, qy), acc)` as
/// `legacy.rs` does, with `sign(qx, qx)` computed once per row.
macro_rules! signed_tile {
    ($n:ident, $w:ident, $w_row:ident, $a:ident, $a_row:ident, $out:ident, $wb:literal,
     |$x:ident| $unpack:expr) => {{
        let nb = $n / 32;
        check_tile::<R, T>(($w, $w_row, nb * $wb), ($a, $a_row, nb * 34), $out);
        let mut acc = [[_mm256_setzero_ps(); R]; T];
        for b in 0..nb {
            let mut dx = [0.0f32; R];
            let mut qx = [_mm256_setzero_si256(); R];
            let mut ax = [_mm256_setzero_si256(); R];
            for r in 0..R {
                let $x = &$w[r * $w_row + b * $wb..][..$wb];
                dx[r] = f16_at($x, 0);
                qx[r] = $unpack;
                ax[r] = _mm256_sign_epi8(qx[r], qx[r]);
            }
            for (t, acc_t) in acc.iter_mut().enumerate() {
                let y = &$a[t * $a_row + b * 34..][..34];
                let dy = f16_at(y, 0);
                let qy = load32(y, 2);
                for r in 0..R {
                    let q = mul_sum_us8_pairs_float(ax[r], _mm256_sign_epi8(qy, qx[r]));
                    acc_t[r] = _mm256_fmadd_ps(_mm256_set1_ps(dx[r] * dy), q, acc_t[r]);
                }
            }
        }
        for (t, acc_t) in acc.iter().enumerate() {
            for r in 0..R {
                $out[t * R + r] = hsum_f32_8(acc_t[r]);
            }
        }
    }};
}

/// Q4_0 x Q8_0, R rows x T tokens (see `TileFn`).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn tile_q4_0_q8_0<const R: usize, const T: usize>(
    n: usize,
    w: &[u8],
    w_row: usize,
    a: &[u8],
    a_row: usize,
    out: &mut [f32],
) {
    signed_tile!(n, w, w_row, a, a_row, out, 18, |x| _mm256_sub_epi8(
        bytes_from_nibbles_32(x, 2),
        _mm256_set1_epi8(8)
    ))
}

/// Q5_0 x Q8_0, R rows x T tokens.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn tile_q5_0_q8_0<const R: usize, const T: usize>(
    n: usize,
    w: &[u8],
    w_row: usize,
    a: &[u8],
    a_row: usize,
    out: &mut [f32],
) {
    signed_tile!(n, w, w_row, a, a_row, out, 22, |x| {
        let qh = u32::from_le_bytes([x[2], x[3], x[4], x[5]]);
        // Where the fifth bit is clear, OR in 0xF0: the byte then reads as nibble - 16.
        let hi = _mm256_andnot_si256(bytes_from_bits_32(qh), _mm256_set1_epi8(0xf0u8 as i8));
        _mm256_or_si256(bytes_from_nibbles_32(x, 6), hi)
    })
}

/// Q8_0 x Q8_0, R rows x T tokens.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn tile_q8_0_q8_0<const R: usize, const T: usize>(
    n: usize,
    w: &[u8],
    w_row: usize,
    a: &[u8],
    a_row: usize,
    out: &mut [f32],
) {
    signed_tile!(n, w, w_row, a, a_row, out, 34, |x| load32(x, 2))
}

/// Q4_1 x Q8_1, R rows x T tokens: `summs += mx * my` per pair in block order, as `legacy.rs`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn tile_q4_1_q8_1<const R: usize, const T: usize>(
    n: usize,
    w: &[u8],
    w_row: usize,
    a: &[u8],
    a_row: usize,
    out: &mut [f32],
) {
    let nb = n / 32;
    check_tile::<R, T>((w, w_row, nb * 20), (a, a_row, nb * 36), out);
    let mut acc = [[_mm256_setzero_ps(); R]; T];
    let mut summs = [[0.0f32; R]; T];
    for b in 0..nb {
        let mut dx = [0.0f32; R];
        let mut mx = [0.0f32; R];
        let mut qx = [_mm256_setzero_si256(); R];
        for r in 0..R {
            let x = &w[r * w_row + b * 20..][..20];
            dx[r] = f16_at(x, 0);
            mx[r] = f16_at(x, 2);
            qx[r] = bytes_from_nibbles_32(x, 4);
        }
        for (t, (acc_t, summs_t)) in acc.iter_mut().zip(&mut summs).enumerate() {
            let y = &a[t * a_row + b * 36..][..36];
            let (dy, my) = (f16_at(y, 0), f16_at(y, 2));
            let qy = load32(y, 4);
            for r in 0..R {
                summs_t[r] += mx[r] * my;
                let q = mul_sum_us8_pairs_float(qx[r], qy);
                acc_t[r] = _mm256_fmadd_ps(_mm256_set1_ps(dx[r] * dy), q, acc_t[r]);
            }
        }
    }
    for (t, (acc_t, summs_t)) in acc.iter().zip(&summs).enumerate() {
        for r in 0..R {
            out[t * R + r] = hsum_f32_8(acc_t[r]) + summs_t[r];
        }
    }
}

//! The OCP microscaling formats: MXFP4 (ggml's `block_mxfp4`, byte-identical to its `_ref`
//! encoder) and MXFP8 (llmopt's own id), plus the E8M0 / E4M3 / E2M1 element codecs they share.
//!
//! Layouts: mxfp4 `{e: E8M0, qs[16]}` (nibble `j` of `qs` holds element `j` low and `j + 16`
//! high, each an E2M1 code; values are ggml's doubled `kvalues_mxfp4` times `2^(e - 128)`);
//! mxfp8 `{e: E8M0, q[32]: E4M3}` (value `E4M3(q) * 2^(e - 127)`). E8M0 0xFF (NaN) and E4M3
//! 0x7F/0xFF (NaN) are never written.

use super::check_blocks;
use crate::QK;

/// E2M1 values doubled (ggml's `kvalues_mxfp4`): code `c` means `E2M1_VALUES[c] / 2`.
pub const E2M1_VALUES: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/// `2^(e - 127)`, ggml's `ggml_e8m0_to_fp32` (`e = 0` gives the subnormal `2^-127`).
#[inline]
pub fn e8m0_to_f32(e: u8) -> f32 {
    f32::from_bits(if e == 0 { 0x0040_0000 } else { u32::from(e) << 23 })
}

/// `2^(e - 128)`, ggml's `ggml_e8m0_to_fp32_half` (MXFP4's scale for its doubled values).
#[inline]
pub fn e8m0_half_to_f32(e: u8) -> f32 {
    f32::from_bits(if e < 2 { 0x0020_0000 << e } else { u32::from(e - 1) << 23 })
}

const fn e4m3_value(b: u8) -> f32 {
    let (e, m) = ((b >> 3) & 15, b & 7);
    let mag = if e == 15 && m == 7 {
        f32::NAN
    } else if e == 0 {
        // m * 2^-9: exact.
        m as f32 * f32::from_bits((127 - 9) << 23)
    } else {
        (8 + m) as f32 * f32::from_bits(((e as u32) + 127 - 10) << 23)
    };
    if b & 0x80 != 0 {
        -mag
    } else {
        mag
    }
}

/// Every E4M3 byte's value (OCP FP8 E4M3: bias 7, no infinities, 0x7F/0xFF NaN, max 448).
pub static E4M3_TO_F32: [f32; 256] = {
    let mut t = [0.0f32; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = e4m3_value(i as u8);
        i += 1;
    }
    t
};

/// The largest finite E4M3 magnitude.
pub const E4M3_MAX: f32 = 448.0;

/// f32 to E4M3, round to nearest even, saturating to ±448 (the OCP spec's saturating mode).
#[inline]
pub fn f32_to_e4m3(x: f32) -> u8 {
    let sign = if x.is_sign_negative() { 0x80 } else { 0 };
    let a = x.abs();
    if a >= E4M3_MAX || a.is_nan() {
        return sign | 0x7e;
    }
    if a < 0.015_625 {
        // Subnormal steps of 2^-9 (8 rounds up into the smallest normal, code 0x08).
        return sign | (a * 512.0).round_ties_even() as u8;
    }
    let bits = a.to_bits();
    let r = (bits + 0x7_ffff + ((bits >> 20) & 1)) & 0xfff0_0000;
    let e = (r >> 23) as i32 - 127 + 7;
    sign | ((e as u8) << 3) | ((r >> 20) & 7) as u8
}

pub(crate) fn mxfp4_to_f32(src: &[u8], dst: &mut [f32]) {
    check_blocks(src.len(), dst.len(), 17, QK);
    for (b, y) in src.chunks_exact(17).zip(dst.chunks_exact_mut(QK)) {
        let d = e8m0_half_to_f32(b[0]);
        for j in 0..QK / 2 {
            y[j] = f32::from(E2M1_VALUES[usize::from(b[1 + j] & 0x0f)]) * d;
            y[j + QK / 2] = f32::from(E2M1_VALUES[usize::from(b[1 + j] >> 4)]) * d;
        }
    }
}

/// ggml's `best_index_mxfp4`: the code nearest `x` at scale `d`, the first of equals.
#[inline]
fn best_e2m1(x: f32, d: f32) -> u8 {
    let (mut best, mut best_err) = (0u8, (f32::from(E2M1_VALUES[0]) * d - x).abs());
    for (i, &v) in E2M1_VALUES.iter().enumerate().skip(1) {
        let err = (f32::from(v) * d - x).abs();
        if err < best_err {
            (best, best_err) = (i as u8, err);
        }
    }
    best
}

fn amax(x: &[f32]) -> f32 {
    x.iter().fold(0.0f32, |m, v| if m < v.abs() { v.abs() } else { m })
}

/// MXFP4's shared exponent byte for `amax`, as `quantize_row_mxfp4_ref`: `floor(log2(amax)) - 2`
/// (the largest doubled value, 12, then lands in [8, 16) x 2^-1).
fn mxfp4_exponent(amax: f32) -> u8 {
    if amax > 0.0 {
        (amax.log2().floor() - 2.0 + 127.0) as u8
    } else {
        0
    }
}

fn mxfp4_block(x: &[f32], e: u8, b: &mut [u8]) {
    let d = e8m0_half_to_f32(e);
    b[0] = e;
    for j in 0..QK / 2 {
        b[1 + j] = best_e2m1(x[j], d) | (best_e2m1(x[j + QK / 2], d) << 4);
    }
}

pub(crate) fn mxfp4_from_f32(src: &[f32], dst: &mut [u8]) {
    check_blocks(dst.len(), src.len(), 17, QK);
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(17)) {
        mxfp4_block(x, mxfp4_exponent(amax(x)), b);
    }
}

/// The weighted exponent search of both MX formats: each block of `B` bytes is first encoded at
/// its reference exponent `e0`, then at each of `others(e0)`; the one with the least
/// `sum w (x - decoded)^2` is kept, `w = qw * sqrt(sigma2 + x^2)` as ggml weights the legacy
/// formats (the reference wins ties, so a flat importance rarely changes a block).
fn weighted_exponents<const B: usize>(
    src: &[f32],
    qw: &[f32],
    dst: &mut [u8],
    reference_exponent: fn(&[f32]) -> u8,
    others: fn(u8) -> [u8; 2],
    encode: fn(&[f32], u8, &mut [u8]),
    decode: fn(&[u8], &mut [f32]),
) {
    assert_eq!(qw.len(), src.len(), "codec: one importance per column");
    check_blocks(dst.len(), src.len(), B, QK);
    let sigma2 = src.iter().map(|v| v * v).sum::<f32>() / src.len().max(1) as f32;
    let mut trial = [0u8; B];
    let mut deq = [0.0f32; QK];
    for ((x, q), b) in src.chunks_exact(QK).zip(qw.chunks_exact(QK)).zip(dst.chunks_exact_mut(B)) {
        let e0 = reference_exponent(x);
        encode(x, e0, b);
        if amax(x) == 0.0 {
            continue;
        }
        let mut err = |blk: &[u8]| {
            decode(blk, &mut deq);
            let mut s = 0.0f64;
            for ((&v, &w), &d) in x.iter().zip(q).zip(deq.iter()) {
                let wi = w * (sigma2 + v * v).sqrt();
                s += f64::from(wi) * f64::from(v - d) * f64::from(v - d);
            }
            s
        };
        let mut best = err(b);
        for e in others(e0) {
            encode(x, e, &mut trial);
            let t = err(&trial);
            if t < best {
                best = t;
                b.copy_from_slice(&trial);
            }
        }
    }
}

/// Importance-weighted MXFP4 (llmopt's; llama-quantize ignores an imatrix for MXFP4): ggml's
/// exponent or one of its two neighbours per block (the levels follow from the exponent).
pub(crate) fn mxfp4_weighted(src: &[f32], qw: &[f32], dst: &mut [u8]) {
    weighted_exponents::<17>(
        src,
        qw,
        dst,
        |x| mxfp4_exponent(amax(x)),
        |e0| [e0.saturating_sub(1), e0.saturating_add(1).min(254)],
        mxfp4_block,
        mxfp4_to_f32,
    );
}

pub(crate) fn mxfp8_to_f32(src: &[u8], dst: &mut [f32]) {
    check_blocks(src.len(), dst.len(), 33, QK);
    for (b, y) in src.chunks_exact(33).zip(dst.chunks_exact_mut(QK)) {
        let d = e8m0_to_f32(b[0]);
        for (v, &q) in y.iter_mut().zip(&b[1..]) {
            *v = E4M3_TO_F32[usize::from(q)] * d;
        }
    }
}

/// OCP MX's shared exponent byte: `floor(log2(amax)) - 8` (8 = E4M3's largest exponent) + 127;
/// an all-zero block stores exponent 0.
fn mxfp8_exponent(x: &[f32]) -> u8 {
    let a = amax(x);
    let e = if a > 0.0 { (a.log2().floor() as i32 - 8).clamp(-127, 127) } else { -127 };
    (e + 127) as u8
}

/// One block at exponent byte `e`: elements `x / 2^(e - 127)` rounded to E4M3, saturating.
fn mxfp8_block(x: &[f32], e: u8, b: &mut [u8]) {
    b[0] = e;
    let e = i32::from(e) - 127;
    // 2^-e is a normal f32 for e in -126..=127; e = -127 (tiny blocks) takes two steps.
    let inv = f32::from_bits(((127 - e.max(-126)) as u32) << 23);
    let inv2 = if e < -126 { 2.0 } else { 1.0 };
    for (q, &v) in b[1..].iter_mut().zip(x) {
        *q = f32_to_e4m3(v * inv * inv2);
    }
}

/// OCP MX: shared scale `2^(floor(log2(amax)) - 8)`, elements `x / scale` rounded to E4M3,
/// saturating at ±448 (so up to the top 1/8 of a block's range is clipped).
pub(crate) fn mxfp8_from_f32(src: &[f32], dst: &mut [u8]) {
    check_blocks(dst.len(), src.len(), 33, QK);
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(33)) {
        mxfp8_block(x, mxfp8_exponent(x), b);
    }
}

/// Importance-weighted MXFP8 (llmopt's): the spec's exponent or the next one up (which never
/// clips: E4M3 keeps its relative precision a binade lower) per block, by weighted error.
pub(crate) fn mxfp8_weighted(src: &[f32], qw: &[f32], dst: &mut [u8]) {
    weighted_exponents::<33>(
        src,
        qw,
        dst,
        mxfp8_exponent,
        |e0| [e0.saturating_add(1).min(254); 2],
        mxfp8_block,
        mxfp8_to_f32,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e4m3_round_trips_every_finite_code_and_rounds_to_nearest_even() {
        for b in 0..=255u8 {
            let v = E4M3_TO_F32[usize::from(b)];
            if v.is_nan() {
                assert!(b & 0x7f == 0x7f);
                continue;
            }
            let back = f32_to_e4m3(v);
            // -0 and +0 both decode to zero; every other code is its own nearest.
            assert_eq!(E4M3_TO_F32[usize::from(back)], v, "{b:#x}");
        }
        assert_eq!(E4M3_TO_F32[0x7e], 448.0);
        assert_eq!(E4M3_TO_F32[0x01], 2f32.powi(-9));
        assert_eq!(E4M3_TO_F32[0x08], 2f32.powi(-6));
        assert_eq!(f32_to_e4m3(1000.0), 0x7e);
        assert_eq!(f32_to_e4m3(-460.0), 0xfe);
        // 1.0625 lies halfway between 1.0 (m=0) and 1.125 (m=1): even mantissa wins.
        assert_eq!(f32_to_e4m3(1.0625), 0x38);
        assert_eq!(f32_to_e4m3(1.1875), 0x3a); // halfway 1.125 / 1.25 -> 1.25 (m=2)
        assert_eq!(f32_to_e4m3(2f32.powi(-10)), 0x00); // half the smallest subnormal: to even
        assert_eq!(f32_to_e4m3(3.0 * 2f32.powi(-10)), 0x02);
    }
}

//! The 256-element K-quant super-blocks: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, and the Q8_K activation
//! format.
//!
//! Byte layouts (`ggml-common.h`, QK_K = 256):
//! - q2_K (84): `scales[16]` (low nibble scale, high nibble min), `qs[64]`, `d`, `dmin`
//! - q3_K (110): `hmask[32]`, `qs[64]`, `scales[12]` (16 x 6-bit, offset 32), `d`
//! - q4_K (144): `d`, `dmin`, `scales[12]` (8 x 6-bit scale + 8 x 6-bit min), `qs[128]`
//! - q5_K (176): `d`, `dmin`, `scales[12]`, `qh[32]`, `qs[128]`
//! - q6_K (210): `ql[128]`, `qh[64]`, `scales[16]: i8`, `d`
//! - q8_K (292): `d: f32`, `qs[256]: i8`, `bsums[16]: i16` (sum of each run of 16 qs)

use super::{check_blocks, rd_f16};
use crate::QK_K;

const Q2K: usize = 84;
const Q3K: usize = 110;
const Q4K: usize = 144;
const Q5K: usize = 176;
const Q6K: usize = 210;
const Q8K: usize = 292;

/// Scale and min of sub-block `j` (0..8) from the 12-byte 6-bit packing of q4_K/q5_K
/// (ggml's `get_scale_min_k4`).
#[inline(always)]
pub fn get_scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// The 16 q3_K sub-block scales, still offset by 32 (0..64), from their 12-byte packing:
/// low 4 bits are the nibbles of bytes 0..8 (all low nibbles, then all high nibbles), high 2 bits
/// are 2-bit field `j / 4` of byte `8 + j % 4`.
#[inline(always)]
pub fn q3_k_scales(s: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (j, o) in out.iter_mut().enumerate() {
        let lo = if j < 8 { s[j] & 0xf } else { s[j - 8] >> 4 };
        let hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        *o = lo | (hi << 4);
    }
    out
}

pub(crate) fn q2_k_to_f32(src: &[u8], dst: &mut [f32]) {
    check_blocks(src.len(), dst.len(), Q2K, QK_K);
    for (b, y) in src.chunks_exact(Q2K).zip(dst.chunks_exact_mut(QK_K)) {
        let (sc, qs) = (&b[..16], &b[16..80]);
        let (d, min) = (rd_f16(b, 80), rd_f16(b, 82));
        let mut o = 0;
        let mut is = 0;
        for half in 0..2 {
            let q = &qs[half * 32..half * 32 + 32];
            for shift in [0, 2, 4, 6] {
                for part in 0..2 {
                    let s = sc[is];
                    is += 1;
                    let dl = d * (s & 0xf) as f32;
                    let ml = min * (s >> 4) as f32;
                    for &qb in &q[part * 16..part * 16 + 16] {
                        y[o] = dl * ((qb >> shift) & 3) as f32 - ml;
                        o += 1;
                    }
                }
            }
        }
    }
}

pub(crate) fn q3_k_to_f32(src: &[u8], dst: &mut [f32]) {
    check_blocks(src.len(), dst.len(), Q3K, QK_K);
    for (b, y) in src.chunks_exact(Q3K).zip(dst.chunks_exact_mut(QK_K)) {
        let (hm, qs) = (&b[..32], &b[32..96]);
        let scales = q3_k_scales(&b[96..108]);
        let d_all = rd_f16(b, 108);
        let mut o = 0;
        let mut is = 0;
        let mut m = 1u8;
        for half in 0..2 {
            let q = &qs[half * 32..half * 32 + 32];
            for shift in [0, 2, 4, 6] {
                for part in 0..2 {
                    let dl = d_all * (scales[is] as i32 - 32) as f32;
                    is += 1;
                    for l in part * 16..part * 16 + 16 {
                        let v = ((q[l] >> shift) & 3) as i32 - if hm[l] & m != 0 { 0 } else { 4 };
                        y[o] = dl * v as f32;
                        o += 1;
                    }
                }
                m <<= 1;
            }
        }
    }
}

pub(crate) fn q4_k_to_f32(src: &[u8], dst: &mut [f32]) {
    check_blocks(src.len(), dst.len(), Q4K, QK_K);
    for (b, y) in src.chunks_exact(Q4K).zip(dst.chunks_exact_mut(QK_K)) {
        let (d, min) = (rd_f16(b, 0), rd_f16(b, 2));
        let (scales, qs) = (&b[4..16], &b[16..]);
        for (j, y64) in y.chunks_exact_mut(64).enumerate() {
            let (sc1, m1) = get_scale_min_k4(2 * j, scales);
            let (sc2, m2) = get_scale_min_k4(2 * j + 1, scales);
            let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
            let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
            let q = &qs[j * 32..j * 32 + 32];
            for l in 0..32 {
                y64[l] = d1 * (q[l] & 0xf) as f32 - m1;
                y64[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
            }
        }
    }
}

pub(crate) fn q5_k_to_f32(src: &[u8], dst: &mut [f32]) {
    check_blocks(src.len(), dst.len(), Q5K, QK_K);
    for (b, y) in src.chunks_exact(Q5K).zip(dst.chunks_exact_mut(QK_K)) {
        let (d, min) = (rd_f16(b, 0), rd_f16(b, 2));
        let (scales, qh, qs) = (&b[4..16], &b[16..48], &b[48..]);
        for (j, y64) in y.chunks_exact_mut(64).enumerate() {
            let (sc1, m1) = get_scale_min_k4(2 * j, scales);
            let (sc2, m2) = get_scale_min_k4(2 * j + 1, scales);
            let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
            let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
            let (u1, u2) = (1u8 << (2 * j), 2u8 << (2 * j));
            let q = &qs[j * 32..j * 32 + 32];
            for l in 0..32 {
                let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
                let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
                y64[l] = d1 * ((q[l] & 0xf) + h1) as f32 - m1;
                y64[l + 32] = d2 * ((q[l] >> 4) + h2) as f32 - m2;
            }
        }
    }
}

/// The 6-bit value (minus 32) of element `l + 32 * k` (`l` in 0..32, `k` in 0..4) of a
/// 128-element half of a q6_K block; `ql` is the half's 64 low-nibble bytes, `qh` its 32 bytes of
/// high bits.
#[inline(always)]
pub fn q6_k_value(ql: &[u8], qh: &[u8], l: usize, k: usize) -> i8 {
    let lo = match k {
        0 => ql[l] & 0xf,
        1 => ql[l + 32] & 0xf,
        2 => ql[l] >> 4,
        _ => ql[l + 32] >> 4,
    };
    let hi = (qh[l] >> (2 * k)) & 3;
    (lo | (hi << 4)) as i8 - 32
}

pub(crate) fn q6_k_to_f32(src: &[u8], dst: &mut [f32]) {
    check_blocks(src.len(), dst.len(), Q6K, QK_K);
    for (b, y) in src.chunks_exact(Q6K).zip(dst.chunks_exact_mut(QK_K)) {
        let d = rd_f16(b, 208);
        for (n, y128) in y.chunks_exact_mut(128).enumerate() {
            let ql = &b[n * 64..n * 64 + 64];
            let qh = &b[128 + n * 32..128 + n * 32 + 32];
            let sc = &b[192 + n * 8..192 + n * 8 + 8];
            for l in 0..32 {
                let is = l / 16;
                for k in 0..4 {
                    let s = sc[is + 2 * k] as i8;
                    y128[l + 32 * k] = d * s as f32 * q6_k_value(ql, qh, l, k) as f32;
                }
            }
        }
    }
}

pub(crate) fn q8_k_to_f32(src: &[u8], dst: &mut [f32]) {
    check_blocks(src.len(), dst.len(), Q8K, QK_K);
    for (b, y) in src.chunks_exact(Q8K).zip(dst.chunks_exact_mut(QK_K)) {
        let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        for (v, &q) in y.iter_mut().zip(&b[4..260]) {
            *v = d * (q as i8) as f32;
        }
    }
}

/// ggml's `quantize_row_q8_K_ref`: scale by `-127 / max` (max = the value of largest magnitude),
/// round to nearest even, clamp to 127, store `d = 1 / iscale` and the 16 block sums. An all-zero
/// block stores `d = 0` and zero quants; unlike ggml we also zero its `bsums` (ggml leaves them
/// as they were).
pub(crate) fn q8_k_from_f32(src: &[f32], dst: &mut [u8]) {
    check_blocks(dst.len(), src.len(), Q8K, QK_K);
    for (x, b) in src.chunks_exact(QK_K).zip(dst.chunks_exact_mut(Q8K)) {
        let (mut amax, mut max) = (0.0f32, 0.0f32);
        for &v in x {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            b.fill(0);
            continue;
        }
        let iscale = -127.0 / max;
        for (q, &v) in b[4..260].iter_mut().zip(x) {
            *q = ((iscale * v).round_ties_even() as i32).min(127) as i8 as u8;
        }
        for j in 0..16 {
            let s: i32 = b[4 + 16 * j..20 + 16 * j].iter().map(|&q| i32::from(q as i8)).sum();
            b[260 + 2 * j..262 + 2 * j].copy_from_slice(&(s as i16).to_le_bytes());
        }
        b[..4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
    }
}

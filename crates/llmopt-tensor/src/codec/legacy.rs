//! The 32-element formats: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1.
//!
//! Layouts (`ggml-common.h`): q4_0 `{d: f16, qs[16]}`, q4_1 `{d, m: f16, qs[16]}`,
//! q5_0 `{d, qh[4], qs[16]}`, q5_1 `{d, m, qh[4], qs[16]}`, q8_0 `{d, qs[32]: i8}`,
//! q8_1 `{d, s: f16 = d * sum(qs), qs[32]}`. Nibble `j` of `qs` holds element `j` (low) and
//! element `j + 16` (high); bit `j` of the little-endian `qh` word is the fifth bit of element `j`.

use super::{check_blocks, rd_f16, wr_f16};
use crate::QK;

const HALF: usize = QK / 2;

/// The value of largest magnitude (sign kept); ggml's strict `<` makes the first one win.
#[inline(always)]
fn signed_absmax(x: &[f32]) -> f32 {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

#[inline(always)]
fn min_max(x: &[f32]) -> (f32, f32) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

#[inline(always)]
fn inv(d: f32) -> f32 {
    if d != 0.0 {
        1.0 / d
    } else {
        0.0
    }
}

pub(crate) fn q4_0_to_f32(src: &[u8], dst: &mut [f32]) {
    check_blocks(src.len(), dst.len(), 18, QK);
    for (b, y) in src.chunks_exact(18).zip(dst.chunks_exact_mut(QK)) {
        let d = rd_f16(b, 0);
        for j in 0..HALF {
            let q = b[2 + j];
            y[j] = ((q & 0x0f) as i32 - 8) as f32 * d;
            y[j + HALF] = ((q >> 4) as i32 - 8) as f32 * d;
        }
    }
}

pub(crate) fn q4_0_from_f32(src: &[f32], dst: &mut [u8]) {
    check_blocks(dst.len(), src.len(), 18, QK);
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(18)) {
        let d = signed_absmax(x) / -8.0;
        let id = inv(d);
        wr_f16(b, 0, d);
        let l: [u8; QK] = std::array::from_fn(|j| ((x[j] * id + 8.5) as i8).min(15) as u8);
        pack_q4(&l, &mut b[2..]);
    }
}

pub(crate) fn q4_1_to_f32(src: &[u8], dst: &mut [f32]) {
    check_blocks(src.len(), dst.len(), 20, QK);
    for (b, y) in src.chunks_exact(20).zip(dst.chunks_exact_mut(QK)) {
        let (d, m) = (rd_f16(b, 0), rd_f16(b, 2));
        for j in 0..HALF {
            let q = b[4 + j];
            y[j] = (q & 0x0f) as f32 * d + m;
            y[j + HALF] = (q >> 4) as f32 * d + m;
        }
    }
}

pub(crate) fn q4_1_from_f32(src: &[f32], dst: &mut [u8]) {
    check_blocks(dst.len(), src.len(), 20, QK);
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(20)) {
        let (min, max) = min_max(x);
        let d = (max - min) / 15.0;
        let id = inv(d);
        wr_f16(b, 0, d);
        wr_f16(b, 2, min);
        let l: [u8; QK] = std::array::from_fn(|j| (((x[j] - min) * id + 0.5) as i8).min(15) as u8);
        pack_q4(&l, &mut b[4..]);
    }
}

/// Pack 32 four-bit levels into 16 bytes: byte `j` holds element `j` (low) and `j + 16` (high).
#[inline(always)]
pub(crate) fn pack_q4(l: &[u8; QK], qs: &mut [u8]) {
    for j in 0..HALF {
        qs[j] = l[j] | (l[j + HALF] << 4);
    }
}

/// Pack 32 five-bit levels into `qh[4]` (bit `j` = fifth bit of element `j`) then `qs[16]`
/// (the low nibbles, as [`pack_q4`]).
#[inline(always)]
pub(crate) fn pack_q5(l: &[u8; QK], b: &mut [u8]) {
    let mut qh = 0u32;
    for j in 0..HALF {
        let (q0, q1) = (l[j], l[j + HALF]);
        b[4 + j] = (q0 & 0x0f) | ((q1 & 0x0f) << 4);
        qh |= u32::from((q0 & 0x10) >> 4) << j;
        qh |= u32::from((q1 & 0x10) >> 4) << (j + HALF);
    }
    b[..4].copy_from_slice(&qh.to_le_bytes());
}

#[inline(always)]
fn rd_qh(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// The two 5-bit values of nibble byte `j` (elements `j` and `j + 16`).
#[inline(always)]
fn q5_pair(qs: u8, qh: u32, j: usize) -> (u8, u8) {
    let h0 = (((qh >> j) << 4) & 0x10) as u8;
    let h1 = ((qh >> (j + 12)) & 0x10) as u8;
    ((qs & 0x0f) | h0, (qs >> 4) | h1)
}

pub(crate) fn q5_0_to_f32(src: &[u8], dst: &mut [f32]) {
    check_blocks(src.len(), dst.len(), 22, QK);
    for (b, y) in src.chunks_exact(22).zip(dst.chunks_exact_mut(QK)) {
        let d = rd_f16(b, 0);
        let qh = rd_qh(b, 2);
        for j in 0..HALF {
            let (q0, q1) = q5_pair(b[6 + j], qh, j);
            y[j] = (q0 as i32 - 16) as f32 * d;
            y[j + HALF] = (q1 as i32 - 16) as f32 * d;
        }
    }
}

pub(crate) fn q5_0_from_f32(src: &[f32], dst: &mut [u8]) {
    check_blocks(dst.len(), src.len(), 22, QK);
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(22)) {
        let d = signed_absmax(x) / -16.0;
        let id = inv(d);
        wr_f16(b, 0, d);
        let l: [u8; QK] = std::array::from_fn(|j| ((x[j] * id + 16.5) as i8).min(31) as u8);
        pack_q5(&l, &mut b[2..]);
    }
}

pub(crate) fn q5_1_to_f32(src: &[u8], dst: &mut [f32]) {
    check_blocks(src.len(), dst.len(), 24, QK);
    for (b, y) in src.chunks_exact(24).zip(dst.chunks_exact_mut(QK)) {
        let (d, m) = (rd_f16(b, 0), rd_f16(b, 2));
        let qh = rd_qh(b, 4);
        for j in 0..HALF {
            let (q0, q1) = q5_pair(b[8 + j], qh, j);
            y[j] = q0 as f32 * d + m;
            y[j + HALF] = q1 as f32 * d + m;
        }
    }
}

pub(crate) fn q5_1_from_f32(src: &[f32], dst: &mut [u8]) {
    check_blocks(dst.len(), src.len(), 24, QK);
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(24)) {
        let (min, max) = min_max(x);
        let d = (max - min) / 31.0;
        let id = inv(d);
        wr_f16(b, 0, d);
        wr_f16(b, 2, min);
        // ggml clamps nothing here: (x - min) * id is at most 31 (+ rounding).
        let l: [u8; QK] = std::array::from_fn(|j| ((x[j] - min) * id + 0.5) as u8);
        pack_q5(&l, &mut b[4..]);
    }
}

pub(crate) fn q8_0_to_f32(src: &[u8], dst: &mut [f32]) {
    check_blocks(src.len(), dst.len(), 34, QK);
    for (b, y) in src.chunks_exact(34).zip(dst.chunks_exact_mut(QK)) {
        let d = rd_f16(b, 0);
        for (v, &q) in y.iter_mut().zip(&b[2..]) {
            *v = (q as i8) as f32 * d;
        }
    }
}

/// Scale and quantize one block of 32 like `quantize_row_q8_0_ref`; returns `(d, sum(qs))`.
#[inline(always)]
fn q8_block(x: &[f32], qs: &mut [u8]) -> (f32, i32) {
    let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = inv(d);
    let mut sum = 0i32;
    for (q, &v) in qs.iter_mut().zip(x) {
        // `roundf`: halfway cases away from zero.
        let r = (v * id).round() as i8;
        sum += i32::from(r);
        *q = r as u8;
    }
    (d, sum)
}

pub(crate) fn q8_0_from_f32(src: &[f32], dst: &mut [u8]) {
    check_blocks(dst.len(), src.len(), 34, QK);
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(34)) {
        let (d, _) = q8_block(x, &mut b[2..]);
        wr_f16(b, 0, d);
    }
}

pub(crate) fn q8_1_to_f32(src: &[u8], dst: &mut [f32]) {
    check_blocks(src.len(), dst.len(), 36, QK);
    for (b, y) in src.chunks_exact(36).zip(dst.chunks_exact_mut(QK)) {
        let d = rd_f16(b, 0);
        for (v, &q) in y.iter_mut().zip(&b[4..]) {
            *v = (q as i8) as f32 * d;
        }
    }
}

pub(crate) fn q8_1_from_f32(src: &[f32], dst: &mut [u8]) {
    check_blocks(dst.len(), src.len(), 36, QK);
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(36)) {
        let (d, sum) = q8_block(x, &mut b[4..]);
        wr_f16(b, 0, d);
        wr_f16(b, 2, sum as f32 * d);
    }
}

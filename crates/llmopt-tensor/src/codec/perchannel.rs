//! Per-output-channel formats (llmopt's own ids): one f32 scale per row in a 4-byte row header,
//! then the row's elements, a byte each. Their codecs take exactly one row.
//!
//! int8_pc: `d = amax / 127`, `q = round(x / d)` (half away from zero, as ggml's Q8_0 `_ref`),
//! value `q * d`. fp8_pc: `d = amax / 448`, `q = E4M3(x / d)` (nearest even), value `E4M3(q) * d`.
//! w8a8: int8_pc's values with an 8-byte header, the scale then `Σ q` as an i32, which the
//! W8A8 kernels subtract once per row where they add 128 to the activations (`vpdpbusd` takes
//! unsigned x signed bytes). int16_pc (W8A16's activations): `d = amax / 32767`, then two bytes
//! per element, `x * 32767 / amax` rounded half to even as int16 (the activation rule of int8_pc
//! with 258 times finer steps), value `q * d`.

use super::mx::{f32_to_e4m3, E4M3_MAX, E4M3_TO_F32};

/// Bytes of the row header (the f32 scale) of int8_pc and fp8_pc.
pub(crate) const HEADER: usize = 4;
/// Bytes of w8a8's row header: the f32 scale, then the i32 sum of the row's quants.
pub(crate) const W8A8_HEADER: usize = 8;

/// Checks that `src_bytes` is one row of `n` elements of `elem` bytes after a `header`.
fn split_row_of(header: usize, elem: usize, src_bytes: usize, n: usize) {
    assert!(
        src_bytes == header + elem * n && n.is_multiple_of(crate::QK),
        "codec: a per-channel row of {n} elements is {} bytes, found {src_bytes}",
        header + elem * n
    );
}

fn split_row_with(header: usize, src_bytes: usize, n: usize) {
    split_row_of(header, 1, src_bytes, n);
}

fn split_row(src_bytes: usize, n: usize) {
    split_row_with(HEADER, src_bytes, n);
}

fn amax(x: &[f32]) -> f32 {
    x.iter().fold(0.0f32, |m, v| m.max(v.abs()))
}

/// The row scale stored in the first 4 bytes.
#[inline]
pub fn row_scale(row: &[u8]) -> f32 {
    f32::from_le_bytes([row[0], row[1], row[2], row[3]])
}

/// One row: each element byte's value times the row scale.
#[inline(always)]
fn decode_row(src: &[u8], dst: &mut [f32], value: impl Fn(u8) -> f32) {
    split_row(src.len(), dst.len());
    let d = row_scale(src);
    for (v, &q) in dst.iter_mut().zip(&src[HEADER..]) {
        *v = value(q) * d;
    }
}

pub(crate) fn int8_pc_to_f32(src: &[u8], dst: &mut [f32]) {
    decode_row(src, dst, |q| f32::from(q as i8));
}

pub(crate) fn int8_pc_from_f32(src: &[f32], dst: &mut [u8]) {
    split_row(dst.len(), src.len());
    int8_row(src, dst);
}

/// The scale into `dst[..4]` and the quants after `dst[..header]`; returns `Σ q`.
fn int8_row(src: &[f32], dst: &mut [u8]) -> i32 {
    let d = amax(src) / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    dst[..4].copy_from_slice(&d.to_le_bytes());
    let header = dst.len() - src.len();
    let mut sum = 0i32;
    for (q, &v) in dst[header..].iter_mut().zip(src) {
        let qi = (v * id).round() as i8;
        sum += i32::from(qi);
        *q = qi as u8;
    }
    sum
}

pub(crate) fn w8a8_to_f32(src: &[u8], dst: &mut [f32]) {
    split_row_with(W8A8_HEADER, src.len(), dst.len());
    let d = row_scale(src);
    for (v, &q) in dst.iter_mut().zip(&src[W8A8_HEADER..]) {
        *v = f32::from(q as i8) * d;
    }
}

pub(crate) fn w8a8_from_f32(src: &[f32], dst: &mut [u8]) {
    split_row_with(W8A8_HEADER, dst.len(), src.len());
    let sum = int8_row(src, dst);
    dst[4..W8A8_HEADER].copy_from_slice(&sum.to_le_bytes());
}

pub(crate) fn fp8_pc_to_f32(src: &[u8], dst: &mut [f32]) {
    decode_row(src, dst, |q| E4M3_TO_F32[usize::from(q)]);
}

pub(crate) fn fp8_pc_from_f32(src: &[f32], dst: &mut [u8]) {
    split_row(dst.len(), src.len());
    let d = amax(src) / E4M3_MAX;
    dst[..HEADER].copy_from_slice(&d.to_le_bytes());
    for (q, &v) in dst[HEADER..].iter_mut().zip(src) {
        *q = if d != 0.0 { f32_to_e4m3(v / d) } else { 0 };
    }
}

pub(crate) fn int16_pc_to_f32(src: &[u8], dst: &mut [f32]) {
    split_row_of(HEADER, 2, src.len(), dst.len());
    let d = row_scale(src);
    for (v, q) in dst.iter_mut().zip(src[HEADER..].chunks_exact(2)) {
        *v = f32::from(i16::from_le_bytes([q[0], q[1]])) * d;
    }
}

pub(crate) fn int16_pc_from_f32(src: &[f32], dst: &mut [u8]) {
    split_row_of(HEADER, 2, dst.len(), src.len());
    let a = amax(src);
    let id = if a != 0.0 { 32767.0 / a } else { 0.0 };
    dst[..HEADER].copy_from_slice(&(a / 32767.0).to_le_bytes());
    for (q, &v) in dst[HEADER..].chunks_exact_mut(2).zip(src) {
        let i = (v * id).round_ties_even().clamp(-32767.0, 32767.0) as i16;
        q.copy_from_slice(&i.to_le_bytes());
    }
}

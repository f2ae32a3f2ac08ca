//! K-quant encoders equal to ggml's `quantize_row_q{2..6}_K_ref`, and the block-finishing steps
//! (requantize against the stored scales, pack the bits) shared with the weighted encoders.
//!
//! Every super-block is encoded on its own: sub-block scales from a scale search
//! ([`super::scale_search`]), quantized to 4/6/8 bits against one f16 super-scale, then every value
//! requantized with the scale it will be decoded with. Layouts are documented in `kquants.rs`.

use super::kquants::{get_scale_min_k4, q3_k_scales};
use super::scale_search::{
    make_q3_quants, make_qkx_quants, make_qx_quants, nearest_int, KxGrid, GROUP_MAX_EPS,
};
use super::{check_blocks, rd_f16, wr_f16};
use crate::QK_K;

pub(crate) const Q2K: usize = 84;
pub(crate) const Q3K: usize = 110;
pub(crate) const Q4K: usize = 144;
pub(crate) const Q5K: usize = 176;
pub(crate) const Q6K: usize = 210;

const Q2K_GRID: KxGrid = KxGrid { rmin: -0.5, rdelta: 0.1, nstep: 15, use_mad: true };
const Q4K_GRID: KxGrid = KxGrid { rmin: -1.0, rdelta: 0.1, nstep: 20, use_mad: false };
const Q5K_GRID: KxGrid = KxGrid { rmin: -0.5, rdelta: 0.1, nstep: 15, use_mad: false };

/// Pack 256 two-bit levels: byte `l` of each 32-byte quarter-run holds elements `l`, `l + 32`,
/// `l + 64`, `l + 96` of its 128-element half, low bits first (q2_K and q3_K `qs`).
fn pack_2bit(l: &[u8; QK_K], qs: &mut [u8]) {
    for (lh, q) in l.chunks_exact(128).zip(qs.chunks_exact_mut(32)) {
        for (i, qi) in q.iter_mut().enumerate() {
            *qi = lh[i] | (lh[i + 32] << 2) | (lh[i + 64] << 4) | (lh[i + 96] << 6);
        }
    }
}

/// q2_K after its scales, mins, `d` and `dmin` are stored: requantize every sub-block whose scale
/// is non-zero (the others keep the levels of their scale search) and pack.
pub(crate) fn q2_k_finish(x: &[f32], l: &mut [u8; QK_K], b: &mut [u8]) {
    let (d_all, m_all) = (rd_f16(b, 80), rd_f16(b, 82));
    for (j, &sc) in b[..16].iter().enumerate() {
        let d = d_all * (sc & 0xf) as f32;
        if d == 0.0 {
            continue;
        }
        let dm = m_all * (sc >> 4) as f32;
        for i in 16 * j..16 * j + 16 {
            l[i] = nearest_int((x[i] + dm) / d).clamp(0, 3) as u8;
        }
    }
    pack_2bit(l, &mut b[16..80]);
}

pub(crate) fn q2_k_from_f32(src: &[f32], dst: &mut [u8]) {
    check_blocks(dst.len(), src.len(), Q2K, QK_K);
    for (x, b) in src.chunks_exact(QK_K).zip(dst.chunks_exact_mut(Q2K)) {
        let mut l = [0u8; QK_K];
        let (mut scales, mut mins) = ([0.0f32; 16], [0.0f32; 16]);
        let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
        for j in 0..16 {
            let xs = &x[16 * j..16 * j + 16];
            let w: [f32; 16] = std::array::from_fn(|i| xs[i].abs());
            (scales[j], mins[j]) =
                make_qkx_quants(3, xs, &w, &mut l[16 * j..16 * j + 16], &Q2K_GRID);
            if scales[j] > max_scale {
                max_scale = scales[j];
            }
            if mins[j] > max_min {
                max_min = mins[j];
            }
        }
        if max_scale > 0.0 {
            let iscale = 15.0 / max_scale;
            for j in 0..16 {
                b[j] = nearest_int(iscale * scales[j]) as u8;
            }
            wr_f16(b, 80, max_scale / 15.0);
        } else {
            b[..16].fill(0);
            wr_f16(b, 80, 0.0);
        }
        if max_min > 0.0 {
            let iscale = 15.0 / max_min;
            for j in 0..16 {
                b[j] |= (nearest_int(iscale * mins[j]) << 4) as u8;
            }
            wr_f16(b, 82, max_min / 15.0);
        } else {
            wr_f16(b, 82, 0.0);
        }
        q2_k_finish(x, &mut l, b);
    }
}

/// The 12-byte packing of 16 six-bit q3_K scales (`0..64`, offset 32); inverse of `q3_k_scales`.
pub(crate) fn pack_q3_k_scales(ls: &[u8; 16], s: &mut [u8]) {
    s[..12].fill(0);
    for (j, &l) in ls.iter().enumerate() {
        if j < 8 {
            s[j] = l & 0xf;
        } else {
            s[j - 8] |= (l & 0xf) << 4;
        }
        s[8 + j % 4] |= (l >> 4) << (2 * (j / 4));
    }
}

/// q3_K after its scales and `d` are stored: requantize with the decoded sub-block scales, move
/// the third bit of every level into `hmask`, pack the low two bits.
pub(crate) fn q3_k_finish(x: &[f32], l: &mut [i8; QK_K], b: &mut [u8]) {
    let d_all = rd_f16(b, 108);
    let scales = q3_k_scales(&b[96..108]);
    for (j, &sc) in scales.iter().enumerate() {
        let d = d_all * (i32::from(sc) - 32) as f32;
        if d == 0.0 {
            continue;
        }
        for i in 16 * j..16 * j + 16 {
            l[i] = (nearest_int(x[i] / d).clamp(-4, 3) + 4) as i8;
        }
    }
    let hmask = &mut b[..32];
    hmask.fill(0);
    let mut low = [0u8; QK_K];
    for (j, (&v, lo)) in l.iter().zip(low.iter_mut()).enumerate() {
        let mut v = v as u8;
        if v > 3 {
            hmask[j % 32] |= 1 << (j / 32);
            v -= 4;
        }
        *lo = v;
    }
    pack_2bit(&low, &mut b[32..96]);
}

pub(crate) fn q3_k_from_f32(src: &[f32], dst: &mut [u8]) {
    check_blocks(dst.len(), src.len(), Q3K, QK_K);
    for (x, b) in src.chunks_exact(QK_K).zip(dst.chunks_exact_mut(Q3K)) {
        let mut l = [0i8; QK_K];
        let mut scales = [0.0f32; 16];
        let (mut max_scale, mut amax) = (0.0f32, 0.0f32);
        for j in 0..16 {
            scales[j] = make_q3_quants(4, &x[16 * j..16 * j + 16], &mut l[16 * j..16 * j + 16]);
            if scales[j].abs() > amax {
                amax = scales[j].abs();
                max_scale = scales[j];
            }
        }
        if max_scale != 0.0 {
            let iscale = -32.0 / max_scale;
            // ggml stores the rounded value in an int8_t before clamping.
            let ls = scales.map(|s| ((nearest_int(iscale * s) as i8).clamp(-32, 31) + 32) as u8);
            pack_q3_k_scales(&ls, &mut b[96..108]);
            wr_f16(b, 108, 1.0 / iscale);
        } else {
            b[96..108].fill(0);
            wr_f16(b, 108, 0.0);
        }
        q3_k_finish(x, &mut l, b);
    }
}

/// Pack 8 six-bit scales and mins into q4_K/q5_K's 12 bytes (inverse of `get_scale_min_k4`);
/// like ggml, bits above the sixth are not masked.
pub(crate) fn pack_k4_scales(ls: &[u8; 8], lm: &[u8; 8], s: &mut [u8]) {
    for j in 0..8 {
        if j < 4 {
            s[j] = ls[j];
            s[j + 4] = lm[j];
        } else {
            s[j + 4] = (ls[j] & 0xf) | ((lm[j] & 0xf) << 4);
            s[j - 4] |= (ls[j] >> 4) << 6;
            s[j] |= (lm[j] >> 4) << 6;
        }
    }
}

/// q4_K/q5_K after `d`, `dmin` and the scales are stored: requantize to `0..=nmax` with the
/// decoded sub-block scale and min (sub-blocks with a zero scale keep their search levels).
fn k4_requantize(x: &[f32], l: &mut [u8; QK_K], b: &[u8], nmax: i32) {
    let (d_all, m_all) = (rd_f16(b, 0), rd_f16(b, 2));
    for j in 0..8 {
        let (sc, m) = get_scale_min_k4(j, &b[4..16]);
        let d = d_all * sc as f32;
        if d == 0.0 {
            continue;
        }
        let dm = m_all * m as f32;
        for i in 32 * j..32 * j + 32 {
            l[i] = nearest_int((x[i] + dm) / d).clamp(0, nmax) as u8;
        }
    }
}

/// q4_K: requantize, then nibbles: byte `i` of each 32-byte run holds elements `i` and `i + 32`
/// of its 64.
pub(crate) fn q4_k_finish(x: &[f32], l: &mut [u8; QK_K], b: &mut [u8]) {
    k4_requantize(x, l, b, 15);
    for (l64, q) in l.chunks_exact(64).zip(b[16..].chunks_exact_mut(32)) {
        for (i, qi) in q.iter_mut().enumerate() {
            *qi = l64[i] | (l64[i + 32] << 4);
        }
    }
}

/// q5_K: requantize, then as q4_K with the fifth bits in `qh` (bits `2k`, `2k + 1` for run `k`).
pub(crate) fn q5_k_finish(x: &[f32], l: &mut [u8; QK_K], b: &mut [u8]) {
    k4_requantize(x, l, b, 31);
    let (qh, qs) = b[16..].split_at_mut(32);
    qh.fill(0);
    for (k, (l64, q)) in l.chunks_exact(64).zip(qs.chunks_exact_mut(32)).enumerate() {
        let (m1, m2) = (1u8 << (2 * k), 2u8 << (2 * k));
        for (i, qi) in q.iter_mut().enumerate() {
            let (mut l1, mut l2) = (l64[i], l64[i + 32]);
            if l1 > 15 {
                l1 -= 16;
                qh[i] |= m1;
            }
            if l2 > 15 {
                l2 -= 16;
                qh[i] |= m2;
            }
            *qi = l1 | (l2 << 4);
        }
    }
}

/// The scale search of `quantize_row_q4_K_ref` / `q5_K_ref`: weights `rms + |x|` per sub-block,
/// scales and mins quantized to 6 bits against the largest of each, `d` and `dmin` stored.
fn k4_ref_scales(x: &[f32], nmax: i32, grid: &KxGrid, l: &mut [u8; QK_K], b: &mut [u8]) {
    let (mut scales, mut mins) = ([0.0f32; 8], [0.0f32; 8]);
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    for j in 0..8 {
        let xs = &x[32 * j..32 * j + 32];
        let mut sum_x2 = 0.0f32;
        for &v in xs {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        let w: [f32; 32] = std::array::from_fn(|i| av_x + xs[i].abs());
        (scales[j], mins[j]) = make_qkx_quants(nmax, xs, &w, &mut l[32 * j..32 * j + 32], grid);
        if scales[j] > max_scale {
            max_scale = scales[j];
        }
        if mins[j] > max_min {
            max_min = mins[j];
        }
    }
    let inv_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    // ggml stores the rounded value in a uint8_t before taking the min with 63.
    let ls = scales.map(|s| (nearest_int(inv_scale * s) as u8).min(63));
    let lm = mins.map(|m| (nearest_int(inv_min * m) as u8).min(63));
    pack_k4_scales(&ls, &lm, &mut b[4..16]);
    wr_f16(b, 0, max_scale / 63.0);
    wr_f16(b, 2, max_min / 63.0);
}

pub(crate) fn q4_k_from_f32(src: &[f32], dst: &mut [u8]) {
    check_blocks(dst.len(), src.len(), Q4K, QK_K);
    for (x, b) in src.chunks_exact(QK_K).zip(dst.chunks_exact_mut(Q4K)) {
        let mut l = [0u8; QK_K];
        k4_ref_scales(x, 15, &Q4K_GRID, &mut l, b);
        q4_k_finish(x, &mut l, b);
    }
}

pub(crate) fn q5_k_from_f32(src: &[f32], dst: &mut [u8]) {
    check_blocks(dst.len(), src.len(), Q5K, QK_K);
    for (x, b) in src.chunks_exact(QK_K).zip(dst.chunks_exact_mut(Q5K)) {
        let mut l = [0u8; QK_K];
        k4_ref_scales(x, 31, &Q5K_GRID, &mut l, b);
        q5_k_finish(x, &mut l, b);
    }
}

/// One q6_K super-block; `qw` (the block's 256 importances) is the only difference between
/// `quantize_row_q6_K_ref` (`None`: `x^2` weights) and the imatrix path.
pub(crate) fn q6_k_block(x: &[f32], qw: Option<&[f32]>, b: &mut [u8]) {
    let mut l = [0i8; QK_K];
    let mut scales = [0.0f32; 16];
    let (mut max_scale, mut max_abs) = (0.0f32, 0.0f32);
    for (j, scale) in scales.iter_mut().enumerate() {
        let r = 16 * j..16 * j + 16;
        *scale = make_qx_quants(32, &x[r.clone()], &mut l[r.clone()], qw.map(|w| &w[r]));
        if scale.abs() > max_abs {
            max_abs = scale.abs();
            max_scale = *scale;
        }
    }
    if max_abs < GROUP_MAX_EPS {
        b.fill(0);
        return;
    }
    let iscale = -128.0 / max_scale;
    wr_f16(b, 208, 1.0 / iscale);
    for (s, &sc) in b[192..208].iter_mut().zip(&scales) {
        *s = nearest_int(iscale * sc).min(127) as i8 as u8;
    }
    let d_all = rd_f16(b, 208);
    for j in 0..16 {
        let d = d_all * (b[192 + j] as i8) as f32;
        if d == 0.0 {
            continue;
        }
        for i in 16 * j..16 * j + 16 {
            l[i] = (nearest_int(x[i] / d).clamp(-32, 31) + 32) as i8;
        }
    }
    let (ql, rest) = b.split_at_mut(128);
    let qh = &mut rest[..64];
    for (n, l128) in l.chunks_exact(128).enumerate() {
        let q = |i: usize| l128[i] as u8;
        for i in 0..32 {
            ql[64 * n + i] = (q(i) & 0xf) | ((q(i + 64) & 0xf) << 4);
            ql[64 * n + i + 32] = (q(i + 32) & 0xf) | ((q(i + 96) & 0xf) << 4);
            qh[32 * n + i] = (q(i) >> 4)
                | ((q(i + 32) >> 4) << 2)
                | ((q(i + 64) >> 4) << 4)
                | ((q(i + 96) >> 4) << 6);
        }
    }
}

pub(crate) fn q6_k_from_f32(src: &[f32], dst: &mut [u8]) {
    check_blocks(dst.len(), src.len(), Q6K, QK_K);
    for (x, b) in src.chunks_exact(QK_K).zip(dst.chunks_exact_mut(Q6K)) {
        q6_k_block(x, None, b);
    }
}

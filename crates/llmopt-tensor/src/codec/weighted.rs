//! Importance-weighted encoders: what llama.cpp writes when `llama-quantize` is given an imatrix
//! (`quantize_row_{q4_0,q4_1,q5_0,q5_1,q2_K,q3_K,q4_K,q5_K,q6_K}_impl` with `quant_weights`).
//!
//! Each function encodes one row; `qw` holds one importance per column (`qw.len() == src.len()`),
//! as an imatrix entry does. Importances are mixed with the data as ggml does: `qw * sqrt(sigma2 +
//! x^2)`, with `sigma2` the mean square of the row (legacy formats) or twice that of the super-block
//! (q3_K, q4_K, q5_K; q2_K once), except q6_K, which uses `qw` as it is.
//!
//! Without an imatrix, `ggml_quantize_chunk` sends every one of these types to its `_ref`
//! quantizer (our `from_f32`): `quantize_q{2..6}_K` and `quantize_q{4,5}_{0,1}` test
//! `quant_weights == NULL` first, so the unweighted branches inside ggml's `_impl` functions are
//! never reached from llama-quantize and are not ported. Q8_0 ignores the imatrix altogether.

use super::kquants_encode::{
    pack_k4_scales, pack_q3_k_scales, q2_k_finish, q3_k_finish, q4_k_finish, q5_k_finish,
    q6_k_block, Q2K, Q3K, Q4K, Q5K, Q6K,
};
use super::legacy::{pack_q4, pack_q5};
use super::scale_search::{make_qkx_quants, make_qp_quants, make_qx_quants, KxGrid};
use super::{check_blocks, wr_f16};
use crate::{QK, QK_K};

/// The trial grid every weighted `make_qkx3_quants` call uses.
const GRID: KxGrid = KxGrid { rmin: -0.9, rdelta: 0.05, nstep: 36, use_mad: false };

/// Sum of squares, accumulated in order as ggml does.
fn sum_sq(x: &[f32]) -> f32 {
    let mut s = 0.0f32;
    for &v in x {
        s += v * v;
    }
    s
}

/// `qw[i] * sqrt(sigma2 + x[i]^2)` into `w`; returns the sum of `w` (in order).
fn mix(x: &[f32], qw: &[f32], sigma2: f32, w: &mut [f32]) -> f32 {
    let mut sum = 0.0f32;
    for ((wi, &v), &q) in w.iter_mut().zip(x).zip(qw) {
        *wi = q * (sigma2 + v * v).sqrt();
        sum += *wi;
    }
    sum
}

fn check_row(src: &[f32], qw: &[f32], dst: &[u8], block_bytes: usize, block_len: usize) {
    assert_eq!(qw.len(), src.len(), "codec: one importance per column");
    check_blocks(dst.len(), src.len(), block_bytes, block_len);
}

/// The weighted legacy formats share one shape: row `sigma2`, then one search per 32 values.
fn legacy_rows(
    src: &[f32],
    qw: &[f32],
    dst: &mut [u8],
    block_bytes: usize,
    mut block: impl FnMut(&[f32], &[f32], &mut [u8]),
) {
    check_row(src, qw, dst, block_bytes, QK);
    let sigma2 = sum_sq(src) / src.len() as f32;
    let mut w = [0.0f32; QK];
    for ((x, q), b) in
        src.chunks_exact(QK).zip(qw.chunks_exact(QK)).zip(dst.chunks_exact_mut(block_bytes))
    {
        mix(x, q, sigma2, &mut w);
        block(x, &w, b);
    }
}

pub(crate) fn q4_0_weighted(src: &[f32], qw: &[f32], dst: &mut [u8]) {
    legacy_rows(src, qw, dst, 18, |x, w, b| {
        let mut l = [0i8; QK];
        let d = make_qx_quants(8, x, &mut l, Some(w));
        wr_f16(b, 0, d);
        pack_q4(&l.map(|v| v as u8), &mut b[2..]);
    });
}

pub(crate) fn q4_1_weighted(src: &[f32], qw: &[f32], dst: &mut [u8]) {
    legacy_rows(src, qw, dst, 20, |x, w, b| {
        let mut l = [0u8; QK];
        let (d, min) = make_qkx_quants(15, x, w, &mut l, &GRID);
        wr_f16(b, 0, d);
        wr_f16(b, 2, -min);
        pack_q4(&l, &mut b[4..]);
    });
}

pub(crate) fn q5_0_weighted(src: &[f32], qw: &[f32], dst: &mut [u8]) {
    legacy_rows(src, qw, dst, 22, |x, w, b| {
        let mut l = [0i8; QK];
        let d = make_qx_quants(16, x, &mut l, Some(w));
        wr_f16(b, 0, d);
        pack_q5(&l.map(|v| v as u8), &mut b[2..]);
    });
}

pub(crate) fn q5_1_weighted(src: &[f32], qw: &[f32], dst: &mut [u8]) {
    legacy_rows(src, qw, dst, 24, |x, w, b| {
        let mut l = [0u8; QK];
        let (d, min) = make_qkx_quants(31, x, w, &mut l, &GRID);
        wr_f16(b, 0, d);
        wr_f16(b, 2, -min);
        pack_q5(&l, &mut b[4..]);
    });
}

/// Super-blocks of one row with their 256 importances each.
fn super_blocks<'a>(
    src: &'a [f32],
    qw: &'a [f32],
    dst: &'a mut [u8],
    block_bytes: usize,
) -> impl Iterator<Item = ((&'a [f32], &'a [f32]), &'a mut [u8])> {
    check_row(src, qw, dst, block_bytes, QK_K);
    src.chunks_exact(QK_K).zip(qw.chunks_exact(QK_K)).zip(dst.chunks_exact_mut(block_bytes))
}

pub(crate) fn q2_k_weighted(src: &[f32], qw: &[f32], dst: &mut [u8]) {
    for ((x, qw), b) in super_blocks(src, qw, dst, Q2K) {
        let sigma2 = sum_sq(x) / QK_K as f32;
        let mut l = [0u8; QK_K];
        let (mut scales, mut mins, mut sw) = ([0.0f32; 16], [0.0f32; 16], [0.0f32; 16]);
        let mut w = [0.0f32; 16];
        for j in 0..16 {
            let r = 16 * j..16 * j + 16;
            sw[j] = mix(&x[r.clone()], &qw[r.clone()], sigma2, &mut w);
            (scales[j], mins[j]) = make_qkx_quants(3, &x[r.clone()], &w, &mut l[r], &GRID);
        }
        let (mut ls, mut lm) = ([0u8; 16], [0u8; 16]);
        let dm = make_qp_quants(15, &scales, &mut ls, &sw);
        let mm = make_qp_quants(15, &mins, &mut lm, &sw);
        wr_f16(b, 80, dm);
        wr_f16(b, 82, mm);
        for j in 0..16 {
            b[j] = ls[j] | (lm[j] << 4);
        }
        q2_k_finish(x, &mut l, b);
    }
}

pub(crate) fn q3_k_weighted(src: &[f32], qw: &[f32], dst: &mut [u8]) {
    for ((x, qw), b) in super_blocks(src, qw, dst, Q3K) {
        let sigma2 = 2.0 * sum_sq(x) / QK_K as f32;
        let mut l = [0i8; QK_K];
        let (mut scales, mut sw) = ([0.0f32; 16], [0.0f32; 16]);
        let mut w = [0.0f32; 16];
        for j in 0..16 {
            let r = 16 * j..16 * j + 16;
            sw[j] = mix(&x[r.clone()], &qw[r.clone()], sigma2, &mut w);
            scales[j] = make_qx_quants(4, &x[r.clone()], &mut l[r], Some(&w));
        }
        let mut ls = [0i8; 16];
        let d_block = make_qx_quants(32, &scales, &mut ls, Some(&sw));
        pack_q3_k_scales(&ls.map(|v| v as u8), &mut b[96..108]);
        wr_f16(b, 108, d_block);
        q3_k_finish(x, &mut l, b);
    }
}

/// q4_K and q5_K: per-32 weighted searches, then 6-bit scales and mins from `make_qp_quants`.
/// ggml caps those levels at 63 for q5_K only (`cap`); they exceed it only if a sub-block scale
/// came out negative, when the wrapped level goes into the packing as it is.
fn k4_weighted_scales(
    x: &[f32],
    qw: &[f32],
    nmax: i32,
    cap: bool,
    l: &mut [u8; QK_K],
    b: &mut [u8],
) {
    let sigma2 = 2.0 * sum_sq(x) / QK_K as f32;
    let (mut scales, mut mins, mut sw) = ([0.0f32; 8], [0.0f32; 8], [0.0f32; 8]);
    let mut w = [0.0f32; 32];
    for j in 0..8 {
        let r = 32 * j..32 * j + 32;
        sw[j] = mix(&x[r.clone()], &qw[r.clone()], sigma2, &mut w);
        (scales[j], mins[j]) = make_qkx_quants(nmax, &x[r.clone()], &w, &mut l[r], &GRID);
    }
    let (mut ls, mut lm) = ([0u8; 8], [0u8; 8]);
    let d_block = make_qp_quants(63, &scales, &mut ls, &sw);
    let m_block = make_qp_quants(63, &mins, &mut lm, &sw);
    if cap {
        ls = ls.map(|v| v.min(63));
        lm = lm.map(|v| v.min(63));
    }
    pack_k4_scales(&ls, &lm, &mut b[4..16]);
    wr_f16(b, 0, d_block);
    wr_f16(b, 2, m_block);
}

pub(crate) fn q4_k_weighted(src: &[f32], qw: &[f32], dst: &mut [u8]) {
    for ((x, qw), b) in super_blocks(src, qw, dst, Q4K) {
        let mut l = [0u8; QK_K];
        k4_weighted_scales(x, qw, 15, false, &mut l, b);
        q4_k_finish(x, &mut l, b);
    }
}

pub(crate) fn q5_k_weighted(src: &[f32], qw: &[f32], dst: &mut [u8]) {
    for ((x, qw), b) in super_blocks(src, qw, dst, Q5K) {
        let mut l = [0u8; QK_K];
        k4_weighted_scales(x, qw, 31, true, &mut l, b);
        q5_k_finish(x, &mut l, b);
    }
}

pub(crate) fn q6_k_weighted(src: &[f32], qw: &[f32], dst: &mut [u8]) {
    for ((x, qw), b) in super_blocks(src, qw, dst, Q6K) {
        q6_k_block(x, Some(qw), b);
    }
}

//! INT4_G128 (llmopt's id): 4-bit asymmetric groups of 128, an f16 scale and an f16 min each,
//! value `q * d + m`: Q4_1's layout and arithmetic with 4x longer groups (4.25 bits per weight).
//!
//! Layout `{d: f16, m: f16, qs[64]}`, nibble `j` of `qs` holding element `j` (low) and `j + 64`
//! (high). INT4 with groups of 32 is exactly Q4_1 (`-f int4_g32` writes Q4_1).

use super::scale_search::{make_qkx_quants, KxGrid};
use super::{check_blocks, rd_f16, wr_f16};

/// Elements per group.
pub const G128: usize = 128;
const BYTES: usize = 68;
const HALF: usize = G128 / 2;

/// The trial grid of ggml's weighted `make_qkx3_quants` (what Q4_1 uses with an imatrix).
const GRID: KxGrid = KxGrid { rmin: -0.9, rdelta: 0.05, nstep: 36, use_mad: false };

pub(crate) fn int4_g128_to_f32(src: &[u8], dst: &mut [f32]) {
    check_blocks(src.len(), dst.len(), BYTES, G128);
    for (b, y) in src.chunks_exact(BYTES).zip(dst.chunks_exact_mut(G128)) {
        let (d, m) = (rd_f16(b, 0), rd_f16(b, 2));
        for j in 0..HALF {
            let q = b[4 + j];
            y[j] = (q & 0x0f) as f32 * d + m;
            y[j + HALF] = (q >> 4) as f32 * d + m;
        }
    }
}

fn pack(l: &[u8; G128], qs: &mut [u8]) {
    for j in 0..HALF {
        qs[j] = l[j] | (l[j + HALF] << 4);
    }
}

/// As ggml's `quantize_row_q4_1_ref` per group: `d = (max - min) / 15`, `q = (x - min) / d`
/// rounded half up, at most 15.
pub(crate) fn int4_g128_from_f32(src: &[f32], dst: &mut [u8]) {
    check_blocks(dst.len(), src.len(), BYTES, G128);
    for (x, b) in src.chunks_exact(G128).zip(dst.chunks_exact_mut(BYTES)) {
        let (mut min, mut max) = (f32::MAX, -f32::MAX);
        for &v in x {
            min = min.min(v);
            max = max.max(v);
        }
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        wr_f16(b, 0, d);
        wr_f16(b, 2, min);
        let l: [u8; G128] =
            std::array::from_fn(|j| (((x[j] - min) * id + 0.5) as i8).min(15) as u8);
        pack(&l, &mut b[4..]);
    }
}

/// Importance-weighted: ggml's `make_qkx3_quants` search (as Q4_1 with an imatrix) per group,
/// with weights `qw * sqrt(sigma2 + x^2)`, `sigma2` the row's mean square.
pub(crate) fn int4_g128_weighted(src: &[f32], qw: &[f32], dst: &mut [u8]) {
    assert_eq!(qw.len(), src.len(), "codec: one importance per column");
    check_blocks(dst.len(), src.len(), BYTES, G128);
    let sigma2 = src.iter().map(|v| v * v).sum::<f32>() / src.len().max(1) as f32;
    let mut w = [0.0f32; G128];
    for ((x, q), b) in
        src.chunks_exact(G128).zip(qw.chunks_exact(G128)).zip(dst.chunks_exact_mut(BYTES))
    {
        for ((wi, &v), &qi) in w.iter_mut().zip(x).zip(q) {
            *wi = qi * (sigma2 + v * v).sqrt();
        }
        let mut l = [0u8; G128];
        let (d, neg_min) = make_qkx_quants(15, x, &w, &mut l, &GRID);
        wr_f16(b, 0, d);
        wr_f16(b, 2, -neg_min);
        pack(&l, &mut b[4..]);
    }
}

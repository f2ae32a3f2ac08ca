//! NF4 (llmopt's id): bitsandbytes' 16 normal-float levels, 64 values per block scaled by the
//! block's absmax, stored as f16.
//!
//! Layout `{d: f16, qs[32]}`: nibble `j` of `qs` holds element `j` (low) and `j + 32` (high)
//! (bitsandbytes packs two neighbours high-first; the split halves here let SIMD decode a block
//! with two shuffles). Value `NF4_LEVELS[q] * d`.

use super::{check_blocks, rd_f16, wr_f16};

/// Elements per NF4 block.
pub const NF4_BLOCK: usize = 64;
const BYTES: usize = 34;

/// bitsandbytes' NF4 code book (`create_normal_map`), as the f32 values its kernels use.
#[allow(clippy::excessive_precision)]
pub const NF4_LEVELS: [f32; 16] = [
    -1.0,
    -0.696_192_800_998_687_7,
    -0.525_073_051_452_636_7,
    -0.394_917_488_098_144_53,
    -0.284_441_381_692_886_35,
    -0.184_773_430_228_233_34,
    -0.091_050_036_251_544_95,
    0.0,
    0.079_580_299_556_255_34,
    0.160_930_201_411_247_25,
    0.246_112_301_945_686_34,
    0.337_915_241_718_292_24,
    0.440_709_829_330_444_34,
    0.562_617_003_917_694_1,
    0.722_956_836_223_602_3,
    1.0,
];

/// The level nearest `v` (a value already divided by the scale): the first of equals.
#[inline]
fn nearest(v: f32) -> u8 {
    // Midpoints between neighbouring levels; the answer is how many of them lie below `v`.
    let mut q = 0u8;
    for i in 0..15 {
        q += u8::from(v > 0.5 * (NF4_LEVELS[i] + NF4_LEVELS[i + 1]));
    }
    q
}

pub(crate) fn nf4_to_f32(src: &[u8], dst: &mut [f32]) {
    check_blocks(src.len(), dst.len(), BYTES, NF4_BLOCK);
    for (b, y) in src.chunks_exact(BYTES).zip(dst.chunks_exact_mut(NF4_BLOCK)) {
        let d = rd_f16(b, 0);
        for j in 0..NF4_BLOCK / 2 {
            y[j] = NF4_LEVELS[usize::from(b[2 + j] & 0x0f)] * d;
            y[j + NF4_BLOCK / 2] = NF4_LEVELS[usize::from(b[2 + j] >> 4)] * d;
        }
    }
}

/// One block at scale `d` (already representable as f16): stores `d` and the nearest levels.
fn block(x: &[f32], d: f32, b: &mut [u8]) {
    wr_f16(b, 0, d);
    let d = rd_f16(b, 0);
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    for j in 0..NF4_BLOCK / 2 {
        b[2 + j] = nearest(x[j] * id) | (nearest(x[j + NF4_BLOCK / 2] * id) << 4);
    }
}

fn absmax(x: &[f32]) -> f32 {
    x.iter().fold(0.0f32, |m, v| m.max(v.abs()))
}

pub(crate) fn nf4_from_f32(src: &[f32], dst: &mut [u8]) {
    check_blocks(dst.len(), src.len(), BYTES, NF4_BLOCK);
    for (x, b) in src.chunks_exact(NF4_BLOCK).zip(dst.chunks_exact_mut(BYTES)) {
        block(x, absmax(x), b);
    }
}

/// Importance-weighted NF4: per block, 21 trial scales from 0.8 to 1.2 x absmax, each followed
/// by the weighted least-squares scale for the levels it chose; the pair (scale, levels) with the
/// least `sum w (x - d * level)^2`, `w = qw * sqrt(sigma2 + x^2)`, is stored.
pub(crate) fn nf4_weighted(src: &[f32], qw: &[f32], dst: &mut [u8]) {
    assert_eq!(qw.len(), src.len(), "codec: one importance per column");
    check_blocks(dst.len(), src.len(), BYTES, NF4_BLOCK);
    let sigma2 = src.iter().map(|v| v * v).sum::<f32>() / src.len().max(1) as f32;
    let mut w = [0.0f32; NF4_BLOCK];
    let mut trial = [0u8; BYTES];
    let mut y = [0.0f32; NF4_BLOCK];
    for ((x, q), b) in
        src.chunks_exact(NF4_BLOCK).zip(qw.chunks_exact(NF4_BLOCK)).zip(dst.chunks_exact_mut(BYTES))
    {
        for ((wi, &v), &qi) in w.iter_mut().zip(x).zip(q) {
            *wi = qi * (sigma2 + v * v).sqrt();
        }
        let err = |blk: &[u8], y: &mut [f32; NF4_BLOCK]| {
            nf4_to_f32(blk, y);
            x.iter()
                .zip(y.iter())
                .zip(&w)
                .map(|((&a, &c), &wi)| wi * (a - c) * (a - c))
                .sum::<f32>()
        };
        let amax = absmax(x);
        block(x, amax, b);
        if amax == 0.0 {
            continue;
        }
        let mut best = err(b, &mut y);
        for step in -10..=10 {
            let d = amax * (1.0 + 0.02 * step as f32);
            block(x, d, &mut trial);
            // The least-squares scale for these levels.
            let (mut sxl, mut sll) = (0.0f32, 0.0f32);
            for j in 0..NF4_BLOCK {
                let byte = trial[2 + j % 32];
                let l = NF4_LEVELS[usize::from(if j < 32 { byte & 0x0f } else { byte >> 4 })];
                sxl += w[j] * x[j] * l;
                sll += w[j] * l * l;
            }
            for d in [d, if sll > 0.0 { sxl / sll } else { d }] {
                block(x, d, &mut trial);
                let e = err(&trial, &mut y);
                if e < best {
                    best = e;
                    b.copy_from_slice(&trial);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_nearest_and_a_block_round_trips() {
        for (i, &l) in NF4_LEVELS.iter().enumerate() {
            assert_eq!(usize::from(nearest(l)), i);
        }
        let x: Vec<f32> = (0..128).map(|i| ((i * 53 % 128) as f32 - 63.5) * 0.01).collect();
        let mut q = [0u8; 68];
        nf4_from_f32(&x, &mut q);
        let mut y = [0.0f32; 128];
        nf4_to_f32(&q, &mut y);
        // The widest gap between levels is 0.30 of the scale: errors stay under half of it.
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() <= 0.16 * 0.64, "{a} {b}");
        }
        let ones = vec![1.0f32; 128];
        let mut qw = [0u8; 68];
        nf4_weighted(&x, &ones, &mut qw);
        let mut yw = [0.0f32; 128];
        nf4_to_f32(&qw, &mut yw);
        // The search starts from the reference block, so its weighted error is never larger.
        let s2 = x.iter().map(|v| v * v).sum::<f32>() / 128.0;
        let se = |y: &[f32]| {
            x.iter().zip(y).map(|(a, b)| (s2 + a * a).sqrt() * (a - b) * (a - b)).sum::<f32>()
        };
        assert!(se(&yw) <= se(&y), "{} > {}", se(&yw), se(&y));
    }
}

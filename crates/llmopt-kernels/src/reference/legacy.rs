//! Dots of the 32-element formats with their Q8_0 / Q8_1 activations
//! (ggml's `ggml_vec_dot_{q4_0,q5_0,q8_0}_q8_0_generic`, `ggml_vec_dot_{q4_1,q5_1}_q8_1_generic`).

use super::rd_f16;

const QK: usize = 32;

fn blocks<'a>(
    n: usize,
    w: &'a [u8],
    wb: usize,
    a: &'a [u8],
    ab: usize,
) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
    assert!(n.is_multiple_of(QK), "vec_dot: n = {n} is not a multiple of {QK}");
    let nb = n / QK;
    assert!(w.len() >= nb * wb && a.len() >= nb * ab, "vec_dot: rows shorter than {n}");
    w.chunks_exact(wb).zip(a.chunks_exact(ab)).take(nb)
}

/// `(sum of the low-nibble products, sum of the high-nibble products)` with `q(x)` decoding
/// nibble byte `j` into elements `j` and `j + 16`.
#[inline(always)]
fn nibble_sums(qs: &[u8], y: &[u8], q: impl Fn(usize, u8) -> (i32, i32)) -> i32 {
    let (mut s0, mut s1) = (0i32, 0i32);
    for j in 0..QK / 2 {
        let (v0, v1) = q(j, qs[j]);
        s0 += v0 * i32::from(y[j] as i8);
        s1 += v1 * i32::from(y[j + QK / 2] as i8);
    }
    s0 + s1
}

#[inline(always)]
fn rd_qh(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// Q4_0 weights (18-byte blocks) times Q8_0 activations (34-byte blocks).
pub fn vec_dot_q4_0_q8_0(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in blocks(n, w, 18, a, 34) {
        let sumi =
            nibble_sums(&x[2..], &y[2..], |_, q| (i32::from(q & 0x0f) - 8, i32::from(q >> 4) - 8));
        sumf += sumi as f32 * rd_f16(x, 0) * rd_f16(y, 0);
    }
    sumf
}

/// Q4_1 weights (20-byte blocks) times Q8_1 activations (36-byte blocks).
pub fn vec_dot_q4_1_q8_1(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in blocks(n, w, 20, a, 36) {
        let sumi = nibble_sums(&x[4..], &y[4..], |_, q| (i32::from(q & 0x0f), i32::from(q >> 4)));
        sumf += (rd_f16(x, 0) * rd_f16(y, 0)) * sumi as f32 + rd_f16(x, 2) * rd_f16(y, 2);
    }
    sumf
}

#[inline(always)]
fn q5(qh: u32, j: usize, q: u8) -> (i32, i32) {
    let h0 = ((qh >> j) << 4) & 0x10;
    let h1 = (qh >> (j + 12)) & 0x10;
    (i32::from(q & 0x0f) | h0 as i32, i32::from(q >> 4) | h1 as i32)
}

/// Q5_0 weights (22-byte blocks) times Q8_0 activations.
pub fn vec_dot_q5_0_q8_0(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in blocks(n, w, 22, a, 34) {
        let qh = rd_qh(x, 2);
        let sumi = nibble_sums(&x[6..], &y[2..], |j, q| {
            let (v0, v1) = q5(qh, j, q);
            (v0 - 16, v1 - 16)
        });
        sumf += (rd_f16(x, 0) * rd_f16(y, 0)) * sumi as f32;
    }
    sumf
}

/// Q5_1 weights (24-byte blocks) times Q8_1 activations.
pub fn vec_dot_q5_1_q8_1(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in blocks(n, w, 24, a, 36) {
        let qh = rd_qh(x, 4);
        let sumi = nibble_sums(&x[8..], &y[4..], |j, q| q5(qh, j, q));
        sumf += (rd_f16(x, 0) * rd_f16(y, 0)) * sumi as f32 + rd_f16(x, 2) * rd_f16(y, 2);
    }
    sumf
}

/// Q8_0 weights times Q8_0 activations.
pub fn vec_dot_q8_0_q8_0(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in blocks(n, w, 34, a, 34) {
        let sumi: i32 = x[2..]
            .iter()
            .zip(&y[2..])
            .map(|(&p, &q)| i32::from(p as i8) * i32::from(q as i8))
            .sum();
        sumf += sumi as f32 * (rd_f16(x, 0) * rd_f16(y, 0));
    }
    sumf
}

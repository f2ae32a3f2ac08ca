//! Dots of llmopt's own integer and NF4 formats: INT8_PC with Q8_0 activations (integer block
//! sums times the activation scale, the row scale once at the end), INT4_G128 with Q8_1 (Q4_1's
//! arithmetic over 4 activation blocks per group), NF4 with f32 activations (levels by table),
//! W8A8 with INT8_PC activations (one integer dot over the whole row, then both scales), W8A16
//! with INT16_PC (Q8_0's integer block sums with 16-bit activations, the token scale at the end).

use llmopt_tensor::NF4_LEVELS;

use super::{rd_f16, rd_f32};

const QK: usize = 32;

/// INT8_PC weights (f32 row scale, then int8 values) times Q8_0 activations.
pub fn vec_dot_int8_pc_q8_0(n: usize, w: &[u8], a: &[u8]) -> f32 {
    assert!(n.is_multiple_of(QK), "vec_dot: n = {n} is not a multiple of {QK}");
    assert!(w.len() >= 4 + n && a.len() >= n / QK * 34, "vec_dot: rows shorter than {n}");
    let mut sumf = 0.0f32;
    for (x, y) in w[4..4 + n].chunks_exact(QK).zip(a.chunks_exact(34)) {
        let sumi: i32 =
            x.iter().zip(&y[2..]).map(|(&p, &q)| i32::from(p as i8) * i32::from(q as i8)).sum();
        sumf += sumi as f32 * rd_f16(y, 0);
    }
    sumf * rd_f32(w, 0)
}

/// W8A8 weights (f32 row scale, i32 quant sum, then int8 values) times INT8_PC activations (f32
/// token scale, then int8 values): `Σ w·a` as one exact i32, times `d_w · d_a`.
pub fn vec_dot_w8a8_int8_pc(n: usize, w: &[u8], a: &[u8]) -> f32 {
    assert!(n.is_multiple_of(QK), "vec_dot: n = {n} is not a multiple of {QK}");
    assert!(w.len() >= 8 + n && a.len() >= 4 + n, "vec_dot: rows shorter than {n}");
    let sumi: i32 = w[8..8 + n]
        .iter()
        .zip(&a[4..4 + n])
        .map(|(&p, &q)| i32::from(p as i8) * i32::from(q as i8))
        .sum();
    sumi as f32 * (rd_f32(w, 0) * rd_f32(a, 0))
}

/// W8A16 weights (Q8_0's blocks: f16 scale, 32 int8) times INT16_PC activations (f32 token
/// scale, then int16 values): per block the exact i32 sum times the block's scale, summed in f32
/// in block order, times the token scale once at the end.
pub fn vec_dot_w8a16_int16_pc(n: usize, w: &[u8], a: &[u8]) -> f32 {
    assert!(n.is_multiple_of(QK), "vec_dot: n = {n} is not a multiple of {QK}");
    assert!(w.len() >= n / QK * 34 && a.len() >= 4 + 2 * n, "vec_dot: rows shorter than {n}");
    let mut sumf = 0.0f32;
    for (x, y) in w.chunks_exact(34).zip(a[4..4 + 2 * n].chunks_exact(2 * QK)) {
        let sumi: i32 = x[2..]
            .iter()
            .zip(y.chunks_exact(2))
            .map(|(&p, q)| i32::from(p as i8) * i32::from(i16::from_le_bytes([q[0], q[1]])))
            .sum();
        sumf += sumi as f32 * rd_f16(x, 0);
    }
    sumf * rd_f32(a, 0)
}

/// INT4_G128 weights (68-byte groups) times Q8_1 activations (36-byte blocks, 4 per group).
pub fn vec_dot_int4_g128_q8_1(n: usize, w: &[u8], a: &[u8]) -> f32 {
    assert!(n.is_multiple_of(128), "vec_dot: n = {n} is not a multiple of 128");
    let ng = n / 128;
    assert!(w.len() >= ng * 68 && a.len() >= ng * 4 * 36, "vec_dot: rows shorter than {n}");
    let mut sumf = 0.0f32;
    for (x, ys) in w.chunks_exact(68).zip(a.chunks_exact(4 * 36)).take(ng) {
        let (d, m) = (rd_f16(x, 0), rd_f16(x, 2));
        for (k, y) in ys.chunks_exact(36).enumerate() {
            let qs = &x[4 + (k % 2) * QK..][..QK];
            let shift = if k < 2 { 0 } else { 4 };
            let sumi: i32 = qs
                .iter()
                .zip(&y[4..])
                .map(|(&q, &v)| i32::from((q >> shift) & 0x0f) * i32::from(v as i8))
                .sum();
            sumf += (d * rd_f16(y, 0)) * sumi as f32 + m * rd_f16(y, 2);
        }
    }
    sumf
}

/// NF4 weights (34-byte blocks of 64) times f32 activations: per block the f32 dot of the levels
/// (low nibbles, then high), times the block's f16 absmax.
pub fn vec_dot_nf4_f32(n: usize, w: &[u8], a: &[u8]) -> f32 {
    assert!(n.is_multiple_of(64), "vec_dot: n = {n} is not a multiple of 64");
    let nb = n / 64;
    assert!(w.len() >= nb * 34 && a.len() >= 4 * n, "vec_dot: rows shorter than {n}");
    let mut sumf = 0.0f32;
    for (x, y) in w.chunks_exact(34).zip(a.chunks_exact(4 * 64)).take(nb) {
        let mut s = 0.0f32;
        for j in 0..32 {
            s += NF4_LEVELS[usize::from(x[2 + j] & 0x0f)] * rd_f32(y, 4 * j);
        }
        for j in 0..32 {
            s += NF4_LEVELS[usize::from(x[2 + j] >> 4)] * rd_f32(y, 4 * (j + 32));
        }
        sumf += s * rd_f16(x, 0);
    }
    sumf
}

//! Dots of the microscaling and FP8 formats: MXFP4 with Q8_0 activations (ggml's
//! `ggml_vec_dot_mxfp4_q8_0_generic`), MXFP8 and FP8_PC with f32 activations (E4M3 by table).

use llmopt_tensor::{e8m0_half_to_f32, e8m0_to_f32, E2M1_VALUES, E4M3_TO_F32};

use super::{rd_f16, rd_f32};

const QK: usize = 32;

fn check(n: usize, w: usize, wb: usize, a: usize, ab: usize) -> usize {
    assert!(n.is_multiple_of(QK), "vec_dot: n = {n} is not a multiple of {QK}");
    let nb = n / QK;
    assert!(w >= nb * wb && a >= nb * ab, "vec_dot: rows shorter than {n}");
    nb
}

/// MXFP4 weights (17-byte blocks) times Q8_0 activations (34-byte blocks).
pub fn vec_dot_mxfp4_q8_0(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = check(n, w.len(), 17, a.len(), 34);
    let mut sumf = 0.0f32;
    for (x, y) in w.chunks_exact(17).zip(a.chunks_exact(34)).take(nb) {
        let d = rd_f16(y, 0) * e8m0_half_to_f32(x[0]);
        let (mut s1, mut s2) = (0i32, 0i32);
        for j in 0..QK / 2 {
            s1 += i32::from(y[2 + j] as i8) * i32::from(E2M1_VALUES[usize::from(x[1 + j] & 0x0f)]);
            s2 += i32::from(y[2 + j + QK / 2] as i8)
                * i32::from(E2M1_VALUES[usize::from(x[1 + j] >> 4)]);
        }
        sumf += d * (s1 + s2) as f32;
    }
    sumf
}

/// `sum E4M3(q[j]) * a[j]` in f32, in order.
#[inline(always)]
fn e4m3_dot(q: &[u8], a: &[u8]) -> f32 {
    let mut s = 0.0f32;
    for (j, &b) in q.iter().enumerate() {
        s += E4M3_TO_F32[usize::from(b)] * rd_f32(a, 4 * j);
    }
    s
}

/// MXFP8 weights (33-byte blocks) times f32 activations: per block the f32 dot of the decoded
/// elements, times the block's power-of-two scale.
pub fn vec_dot_mxfp8_f32(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = check(n, w.len(), 33, a.len(), 4 * QK);
    let mut sumf = 0.0f32;
    for (x, y) in w.chunks_exact(33).zip(a.chunks_exact(4 * QK)).take(nb) {
        sumf += e4m3_dot(&x[1..], y) * e8m0_to_f32(x[0]);
    }
    sumf
}

/// FP8_PC weights (f32 row scale, then E4M3 bytes) times f32 activations: f32 dots per 32
/// elements, summed, times the row scale.
pub fn vec_dot_fp8_pc_f32(n: usize, w: &[u8], a: &[u8]) -> f32 {
    check(n, w.len().saturating_sub(4), QK, a.len(), 4 * QK);
    let mut sumf = 0.0f32;
    for (x, y) in w[4..4 + n].chunks_exact(QK).zip(a.chunks_exact(4 * QK)) {
        sumf += e4m3_dot(x, y);
    }
    sumf * rd_f32(w, 0)
}

//! K-quant dots with Q8_K activations, structured like ggml's `ggml_vec_dot_q*_K_q8_K_generic`:
//! the weights are expanded to int8, products summed exactly into 8 integer lanes (`aux32`), and
//! each super-block adds `d * aux32[l]` to 8 float lanes that are summed at the end.

use llmopt_tensor::{get_scale_min_k4, q3_k_scales, q6_k_value, QK_K};

use super::{rd_f16, rd_f32, rd_i16};

const Q8K: usize = 292;

fn blocks<'a>(
    n: usize,
    w: &'a [u8],
    wb: usize,
    a: &'a [u8],
) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
    assert!(n.is_multiple_of(QK_K), "vec_dot: n = {n} is not a multiple of {QK_K}");
    let nb = n / QK_K;
    assert!(w.len() >= nb * wb && a.len() >= nb * Q8K, "vec_dot: rows shorter than {n}");
    w.chunks_exact(wb).zip(a.chunks_exact(Q8K)).take(nb)
}

fn q8(y: &[u8]) -> impl Iterator<Item = i32> + '_ {
    y[4..260].iter().map(|&b| i32::from(b as i8))
}

fn bsum(y: &[u8], j: usize) -> i32 {
    i32::from(rd_i16(y, 260 + 2 * j))
}

/// `aux32[l] += scale(p / group) * a[p] * q8[p]` over the 256 positions, lane `l = p % 8`.
fn lanes(a: &[i8; QK_K], y: &[u8], group: usize, scale: impl Fn(usize) -> i32) -> [i32; 8] {
    let mut aux32 = [0i32; 8];
    for (p, q) in q8(y).enumerate() {
        aux32[p % 8] += scale(p / group) * (q * i32::from(a[p]));
    }
    aux32
}

fn add_lanes(sums: &mut [f32; 8], d: f32, aux32: &[i32; 8]) {
    for (s, &v) in sums.iter_mut().zip(aux32) {
        *s += d * v as f32;
    }
}

/// Q2_K weights (84-byte blocks) times Q8_K activations.
pub fn vec_dot_q2_k_q8_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in blocks(n, w, 84, a) {
        let (sc, q2) = (&x[..16], &x[16..80]);
        let summs: i32 = (0..16).map(|j| bsum(y, j) * i32::from(sc[j] >> 4)).sum();
        let yd = rd_f32(y, 0);
        let dall = yd * rd_f16(x, 80);
        let dmin = yd * rd_f16(x, 82);
        let mut isum = 0i32;
        let mut p = 0; // position in q8
        for half in 0..2 {
            let q = &q2[32 * half..32 * half + 32];
            for shift in [0, 2, 4, 6] {
                for part in 0..2 {
                    let d = i32::from(sc[8 * half + shift + part] & 0xf);
                    let mut isuml = 0;
                    for &ql in &q[16 * part..16 * part + 16] {
                        isuml += i32::from(y[4 + p] as i8) * i32::from((ql >> shift) & 3);
                        p += 1;
                    }
                    isum += d * isuml;
                }
            }
        }
        sumf += dall * isum as f32 - dmin * summs as f32;
    }
    sumf
}

/// Q3_K weights (110-byte blocks) times Q8_K activations.
pub fn vec_dot_q3_k_q8_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut sums = [0.0f32; 8];
    for (x, y) in blocks(n, w, 110, a) {
        let (hm, q3) = (&x[..32], &x[32..96]);
        let mut aq = [0i8; QK_K];
        for (p, v) in aq.iter_mut().enumerate() {
            let (chunk, l) = (p / 32, p % 32); // chunk = 4 * half + shift index
            let (half, s) = (chunk / 4, chunk % 4);
            let low = ((q3[32 * half + l] >> (2 * s)) & 3) as i8;
            *v = low - if hm[l] & (1 << chunk) != 0 { 0 } else { 4 };
        }
        let scales = q3_k_scales(&x[96..108]);
        let aux32 = lanes(&aq, y, 16, |j| i32::from(scales[j]) - 32);
        add_lanes(&mut sums, rd_f16(x, 108) * rd_f32(y, 0), &aux32);
    }
    sums.iter().fold(0.0f32, |acc, s| acc + s)
}

fn kx_lanes_and_mins(x: &[u8], y: &[u8], aq: &[i8; QK_K], sums: &mut [f32; 8], sumf: &mut f32) {
    let scales = &x[4..16];
    let sm: [(u8, u8); 8] = std::array::from_fn(|j| get_scale_min_k4(j, scales));
    let sumi: i32 = (0..16).map(|j| bsum(y, j) * i32::from(sm[j / 2].1)).sum();
    let aux32 = lanes(aq, y, 32, |j| i32::from(sm[j].0));
    let yd = rd_f32(y, 0);
    add_lanes(sums, rd_f16(x, 0) * yd, &aux32);
    let dmin = rd_f16(x, 2) * yd;
    *sumf -= dmin * sumi as f32;
}

/// Q4_K weights (144-byte blocks) times Q8_K activations.
pub fn vec_dot_q4_k_q8_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let (mut sums, mut sumf) = ([0.0f32; 8], 0.0f32);
    for (x, y) in blocks(n, w, 144, a) {
        let q4 = &x[16..144];
        let mut aq = [0i8; QK_K];
        for j in 0..4 {
            for l in 0..32 {
                aq[64 * j + l] = (q4[32 * j + l] & 0xf) as i8;
                aq[64 * j + 32 + l] = (q4[32 * j + l] >> 4) as i8;
            }
        }
        kx_lanes_and_mins(x, y, &aq, &mut sums, &mut sumf);
    }
    sums.iter().fold(sumf, |acc, s| acc + s)
}

/// Q5_K weights (176-byte blocks) times Q8_K activations.
pub fn vec_dot_q5_k_q8_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let (mut sums, mut sumf) = ([0.0f32; 8], 0.0f32);
    for (x, y) in blocks(n, w, 176, a) {
        let (qh, q4) = (&x[16..48], &x[48..176]);
        let mut aq = [0i8; QK_K];
        for j in 0..4 {
            let (m1, m2) = (1u8 << (2 * j), 2u8 << (2 * j));
            for l in 0..32 {
                let h1 = if qh[l] & m1 != 0 { 16 } else { 0 };
                let h2 = if qh[l] & m2 != 0 { 16 } else { 0 };
                aq[64 * j + l] = ((q4[32 * j + l] & 0xf) + h1) as i8;
                aq[64 * j + 32 + l] = ((q4[32 * j + l] >> 4) + h2) as i8;
            }
        }
        kx_lanes_and_mins(x, y, &aq, &mut sums, &mut sumf);
    }
    sums.iter().fold(sumf, |acc, s| acc + s)
}

/// Q6_K weights (210-byte blocks) times Q8_K activations.
pub fn vec_dot_q6_k_q8_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut sums = [0.0f32; 8];
    for (x, y) in blocks(n, w, 210, a) {
        let mut aq = [0i8; QK_K];
        for half in 0..2 {
            let ql = &x[64 * half..64 * half + 64];
            let qh = &x[128 + 32 * half..128 + 32 * half + 32];
            for l in 0..32 {
                for k in 0..4 {
                    aq[128 * half + 32 * k + l] = q6_k_value(ql, qh, l, k);
                }
            }
        }
        let sc = &x[192..208];
        let aux32 = lanes(&aq, y, 16, |j| i32::from(sc[j] as i8));
        add_lanes(&mut sums, rd_f16(x, 208) * rd_f32(y, 0), &aux32);
    }
    sums.iter().fold(0.0f32, |acc, s| acc + s)
}

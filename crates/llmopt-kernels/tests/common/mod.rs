//! Random weights and activations shared by the kernel tests: weights encoded from gaussians (or
//! random bytes with sane scales where no encoder exists), activations with a few outliers.

use llmopt_tensor::{f32_to_f16, GgmlType};
use rand::rngs::StdRng;
use rand::Rng;
use rand_distr::{Distribution, Normal};

fn f16_le(v: f32) -> [u8; 2] {
    f32_to_f16(v).to_le_bytes()
}

/// Random weights: encoded from gaussians where an encoder exists, else random bytes with sane
/// f16 super-block scales.
pub fn random_weights(ty: GgmlType, rows: usize, cols: usize, rng: &mut StdRng) -> Vec<u8> {
    let n = rows * cols;
    let mut out = vec![0u8; ty.row_bytes(cols).unwrap() * rows];
    if let Some(enc) = ty.spec().from_f32 {
        let normal = Normal::new(0.0f32, 0.05).unwrap();
        let x: Vec<f32> = (0..n).map(|_| normal.sample(rng)).collect();
        enc(&x, &mut out);
        return out;
    }
    rng.fill(&mut out[..]);
    let bb = ty.spec().block_bytes;
    let scale_offsets: &[usize] = match ty {
        GgmlType::Q2_K => &[80, 82],
        GgmlType::Q3_K => &[108],
        GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
        GgmlType::Q6_K => &[208],
        _ => unreachable!("{ty} has an encoder"),
    };
    for b in out.chunks_exact_mut(bb) {
        for &o in scale_offsets {
            b[o..o + 2].copy_from_slice(&f16_le(rng.random_range(1e-4f32..2e-3)));
        }
    }
    out
}

pub fn random_acts(n: usize, rng: &mut StdRng) -> Vec<f32> {
    let normal = Normal::new(0.0f32, 1.0).unwrap();
    (0..n).map(|i| normal.sample(rng) * if i % 97 == 0 { 20.0 } else { 1.0 }).collect()
}

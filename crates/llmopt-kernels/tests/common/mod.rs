//! Random weights and activations shared by the kernel tests: weights encoded from gaussians by
//! each format's encoder, activations with a few outliers.

use llmopt_tensor::GgmlType;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal};

/// Random weights: gaussians encoded by the format's own encoder (every weight format has one).
pub fn random_weights(ty: GgmlType, rows: usize, cols: usize, rng: &mut StdRng) -> Vec<u8> {
    let mut out = vec![0u8; ty.row_bytes(cols).unwrap() * rows];
    assert!(ty.spec().from_f32.is_some(), "{ty} has no encoder");
    let normal = Normal::new(0.0f32, 0.05).unwrap();
    let x: Vec<f32> = (0..rows * cols).map(|_| normal.sample(rng)).collect();
    ty.rows_from_f32(&x, &mut out, cols).unwrap();
    out
}

pub fn random_acts(n: usize, rng: &mut StdRng) -> Vec<f32> {
    let normal = Normal::new(0.0f32, 1.0).unwrap();
    (0..n).map(|i| normal.sample(rng) * if i % 97 == 0 { 20.0 } else { 1.0 }).collect()
}

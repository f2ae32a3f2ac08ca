//! The kernels of MXFP4 and llmopt's own formats (MXFP8, INT8_PC, FP8_PC, NF4, INT4_G128):
//! scalar references against an f64 dot of the dequantized rows, AVX2 against the references,
//! and matmul against a one-dot-at-a-time loop, on random rows of odd lengths and row counts.
//!
//! Tolerance as `kernels.rs`: |fast - reference| <= 1e-5 * sum |w_i * a_i| + 1e-6 (integer dots
//! differ only in float summation order; f32-activation dots sum 8 lanes instead of in order).

mod common;

use common::{random_acts, random_weights};
use llmopt_kernels::{matmul_with, Isa, Kernels, ThreadPool, WeightView};
use llmopt_tensor::GgmlType;
use rand::rngs::StdRng;
use rand::SeedableRng;

const TYPES: [GgmlType; 6] = {
    use GgmlType::*;
    [MXFP4, MXFP8, INT8_PC, FP8_PC, NF4, INT4_G128]
};

fn cols_for(ty: GgmlType) -> &'static [usize] {
    match ty.spec().block_len {
        128 => &[128, 640, 896, 1536],
        64 => &[64, 576, 640, 896],
        _ => &[32, 576, 640, 800, 896],
    }
}

fn quantize(ty: GgmlType, x: &[f32]) -> Vec<u8> {
    let vdt = ty.spec().vec_dot_type;
    if vdt == GgmlType::F32 {
        return x.iter().flat_map(|v| v.to_le_bytes()).collect();
    }
    let mut a = vec![0u8; vdt.row_bytes(x.len()).unwrap()];
    (Kernels::get(Isa::Scalar).unwrap().quantize(vdt).unwrap())(x, &mut a);
    a
}

fn f64_dot(ty: GgmlType, w: &[u8], a: &[u8], n: usize) -> (f64, f64) {
    let (mut wv, mut av) = (vec![0.0f32; n], vec![0.0f32; n]);
    ty.to_f32(w, &mut wv).unwrap();
    ty.spec().vec_dot_type.to_f32(a, &mut av).unwrap();
    wv.iter().zip(&av).fold((0.0, 0.0), |(s, m), (&p, &q)| {
        let t = f64::from(p) * f64::from(q);
        (s + t, m + t.abs())
    })
}

#[test]
fn references_match_f64_dot_of_dequantized() {
    let mut rng = StdRng::seed_from_u64(21);
    let k = Kernels::get(Isa::Scalar).unwrap();
    for ty in TYPES {
        for &n in cols_for(ty) {
            let w = random_weights(ty, 1, n, &mut rng);
            let a = quantize(ty, &random_acts(n, &mut rng));
            let got = f64::from((k.vec_dot(ty).unwrap())(n, &w, &a));
            let (want, mag) = f64_dot(ty, &w, &a, n);
            // INT4_G128 reads Q8_1's f16 `s = d * sum(qs)`: allow 2^-10 of |m * s| per block.
            let f16_s = if ty == GgmlType::INT4_G128 { mag * 2f64.powi(-9) } else { 0.0 };
            assert!((got - want).abs() <= 1e-5 * mag + f16_s + 1e-6, "{ty} n={n}: {got} vs {want}");
        }
    }
}

#[test]
fn avx2_matches_reference() {
    if !Isa::Avx2.is_available() {
        return; // Nothing to compare on this CPU; the scalar tests still run.
    }
    let mut rng = StdRng::seed_from_u64(22);
    let (fast, slow) = (Kernels::get(Isa::Avx2).unwrap(), Kernels::get(Isa::Scalar).unwrap());
    for ty in TYPES {
        assert!(fast.is_simd_vec_dot(ty), "{ty}");
        for &n in cols_for(ty) {
            for _ in 0..4 {
                let w = random_weights(ty, 1, n, &mut rng);
                let a = quantize(ty, &random_acts(n, &mut rng));
                let got = f64::from((fast.vec_dot(ty).unwrap())(n, &w, &a));
                let want = f64::from((slow.vec_dot(ty).unwrap())(n, &w, &a));
                let (_, mag) = f64_dot(ty, &w, &a, n);
                assert!((got - want).abs() <= 1e-5 * mag + 1e-6, "{ty} n={n}: {got} vs {want}");
            }
        }
    }
}

#[test]
fn matmul_equals_naive_loop() {
    let mut rng = StdRng::seed_from_u64(23);
    let pools = [ThreadPool::new(1), ThreadPool::new(2)];
    let mut scratch = Vec::new();
    let k = Kernels::get(Isa::Scalar).unwrap();
    for ty in TYPES {
        let cols = if ty.spec().block_len == 128 { 640 } else { 576 };
        let row = ty.row_bytes(cols).unwrap();
        for rows in [1usize, 37, 130] {
            let data = random_weights(ty, rows, cols, &mut rng);
            let w = WeightView::new(ty, rows, cols, &data);
            for n_tok in [1usize, 3, 17] {
                let x = random_acts(n_tok * cols, &mut rng);
                let mut want = vec![0.0f32; n_tok * rows];
                for t in 0..n_tok {
                    let a = quantize(ty, &x[t * cols..(t + 1) * cols]);
                    for r in 0..rows {
                        let wr = &data[r * row..(r + 1) * row];
                        want[t * rows + r] = (k.vec_dot(ty).unwrap())(cols, wr, &a);
                    }
                }
                for pool in &pools {
                    for isa in [Isa::Scalar, Isa::best()] {
                        let mut y = vec![f32::NAN; n_tok * rows];
                        matmul_with(isa, pool, &w, &x, n_tok, &mut scratch, &mut y).unwrap();
                        for (i, (g, e)) in y.iter().zip(&want).enumerate() {
                            let ok = if isa == Isa::Scalar {
                                g.to_bits() == e.to_bits()
                            } else {
                                (g - e).abs() <= 1e-4 * e.abs().max(1.0)
                            };
                            assert!(ok, "{ty} {isa:?} rows={rows} n_tok={n_tok} i={i}: {g} vs {e}");
                        }
                    }
                }
            }
        }
    }
}

//! W8A8 x INT8_PC is one exact i32 sum per row and token, so the AVX2 `vec_dot`, its prefill tiles
//! and `matmul` must equal the scalar reference bit for bit, on encoded weights and quants at ±127.

mod common;

use common::{random_acts, random_weights};
use llmopt_kernels::{matmul_with, Isa, Kernels, ThreadPool, WeightView};
use llmopt_tensor::GgmlType;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const W8A8: GgmlType = GgmlType::W8A8;

/// `rows` W8A8 rows: the encoder's (gaussians), with row 0 set to uniform raw quants in
/// -127..=127 and row 1 to all -127 (the header's scale kept, its quant sum recomputed).
fn weights(rows: usize, n: usize, rng: &mut StdRng) -> Vec<u8> {
    let mut w = random_weights(W8A8, rows, n, rng);
    for (i, row) in w.chunks_exact_mut(8 + n).take(2).enumerate() {
        let mut sum = 0i32;
        for q in &mut row[8..] {
            let v: i8 = if i == 0 { rng.random_range(-127..=127) } else { -127 };
            sum += i32::from(v);
            *q = v as u8;
        }
        row[4..8].copy_from_slice(&sum.to_le_bytes());
    }
    w
}

/// `n_tok` activation rows: random values with outliers, token 1 (where it exists) all ±1 (every
/// quant ±127).
fn acts(n_tok: usize, n: usize, rng: &mut StdRng) -> Vec<f32> {
    let mut x = random_acts(n_tok * n, rng);
    if n_tok > 1 {
        x[n..2 * n]
            .iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = if i % 3 == 0 { -1.0 } else { 1.0 });
    }
    x
}

#[test]
fn avx2_vec_dot_equals_reference_bitwise() {
    if !Isa::Avx2.is_available() {
        return;
    }
    let mut rng = StdRng::seed_from_u64(205);
    let (fast, slow) = (Kernels::get(Isa::Avx2).unwrap(), Kernels::get(Isa::Scalar).unwrap());
    assert!(fast.is_simd_vec_dot(W8A8) && fast.is_simd_quantize(GgmlType::INT8_PC));
    let quant = slow.quantize(GgmlType::INT8_PC).unwrap();
    for n in [32usize, 576, 640, 896, 1536, 4864] {
        let rows = 7;
        let w = weights(rows, n, &mut rng);
        let x = acts(3, n, &mut rng);
        for xt in x.chunks_exact(n) {
            let mut a = vec![0u8; 4 + n];
            quant(xt, &mut a);
            for (r, wr) in w.chunks_exact(8 + n).enumerate() {
                let got = (fast.vec_dot(W8A8).unwrap())(n, wr, &a);
                let want = (slow.vec_dot(W8A8).unwrap())(n, wr, &a);
                assert_ne!(want, 0.0, "n={n} r={r}: test data must not cancel");
                assert_eq!(got.to_bits(), want.to_bits(), "n={n} r={r}: {got} vs {want}");
            }
        }
    }
}

#[test]
fn avx2_matmul_equals_scalar_bitwise() {
    if !Isa::Avx2.is_available() {
        return;
    }
    let mut rng = StdRng::seed_from_u64(206);
    let tile = Kernels::get(Isa::Avx2).unwrap().tile(W8A8).expect("W8A8 has an AVX2 tile");
    let pools = [ThreadPool::new(1), ThreadPool::new(2)];
    let mut scratch = Vec::new();
    for cols in [576usize, 1536] {
        for rows in [5usize, 37, 131] {
            assert!(!rows.is_multiple_of(tile.rows), "rows={rows}: leave rows outside the tiles");
            let data = weights(rows, cols, &mut rng);
            let w = WeightView::new(W8A8, rows, cols, &data);
            for n_tok in [1usize, 3, 17, 64] {
                let x = acts(n_tok, cols, &mut rng);
                let mut want = vec![f32::NAN; n_tok * rows];
                matmul_with(Isa::Scalar, &pools[0], &w, &x, n_tok, &mut scratch, &mut want)
                    .unwrap();
                for pool in &pools {
                    let mut y = vec![f32::NAN; n_tok * rows];
                    matmul_with(Isa::Avx2, pool, &w, &x, n_tok, &mut scratch, &mut y).unwrap();
                    for (i, (g, e)) in y.iter().zip(&want).enumerate() {
                        let at = format!("cols={cols} rows={rows} n_tok={n_tok} i={i}");
                        assert_eq!(g.to_bits(), e.to_bits(), "{at}: {g} vs {e}");
                    }
                }
            }
        }
    }
}

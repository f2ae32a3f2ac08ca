//! The prefill tile kernels and `matmul_many` against the per-pair path: tiles must equal the same
//! Isa's `vec_dot` bit for bit (so prefill and decode agree with llama.cpp's per-pair numerics),
//! and `matmul_many` must equal separate `matmul` calls bit for bit.

mod common;

use common::{random_acts, random_weights};
use llmopt_kernels::{matmul_many_with, matmul_with, Isa, Kernels, ThreadPool, WeightView};
use llmopt_tensor::GgmlType;
use rand::rngs::StdRng;
use rand::SeedableRng;

const TILED: [GgmlType; 14] = {
    use GgmlType::*;
    [Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q6_K, W8A8, W8A16, INT8_PC, MXFP4, MXFP8, FP8_PC, NF4, INT4_G128]
};

/// llmopt's own formats with tiles (and MXFP4): `matmul` against the scalar reference.
const OWN: [GgmlType; 7] = {
    use GgmlType::*;
    [INT8_PC, MXFP4, MXFP8, FP8_PC, NF4, INT4_G128, W8A16]
};

fn widths(ty: GgmlType) -> &'static [usize] {
    match ty.spec().block_len {
        256 => &[256, 768, 2048],
        128 => &[640, 896, 1536],
        _ => &[576, 640, 1536],
    }
}

fn quantize(isa: Isa, ty: GgmlType, x: &[f32], n_tok: usize) -> Vec<u8> {
    let vdt = ty.spec().vec_dot_type;
    let cols = x.len() / n_tok;
    let a_row = vdt.row_bytes(cols).unwrap();
    let mut a = vec![0u8; n_tok * a_row];
    let q = Kernels::get(isa).unwrap().quantize(vdt).unwrap();
    for (xt, at) in x.chunks_exact(cols).zip(a.chunks_exact_mut(a_row)) {
        q(xt, at);
    }
    a
}

/// `y[t * rows + r]` by `isa`'s `vec_dot`, one pair at a time.
fn pairs(isa: Isa, w: &WeightView<'_>, x: &[f32], n_tok: usize) -> Vec<f32> {
    let dot = Kernels::get(isa).unwrap().vec_dot(w.ty).unwrap();
    let a = quantize(isa, w.ty, x, n_tok);
    let (w_row, a_row) = (w.ty.row_bytes(w.cols).unwrap(), a.len() / n_tok);
    let mut y = vec![0.0f32; n_tok * w.rows];
    for t in 0..n_tok {
        for r in 0..w.rows {
            let wr = &w.data[r * w_row..(r + 1) * w_row];
            y[t * w.rows + r] = dot(w.cols, wr, &a[t * a_row..(t + 1) * a_row]);
        }
    }
    y
}

#[test]
fn every_tiled_format_has_an_avx2_tile() {
    if !Isa::Avx2.is_available() {
        return;
    }
    let k = Kernels::get(Isa::Avx2).unwrap();
    for ty in TILED {
        let tk = k.tile(ty).unwrap_or_else(|| panic!("{ty}: no tile"));
        assert!(tk.rows * tk.toks <= 16, "{ty}: {tk:?}");
    }
    assert!(GgmlType::ALL.iter().all(|&ty| Kernels::get(Isa::Scalar).unwrap().tile(ty).is_none()));
}

#[test]
fn tile_kernels_equal_vec_dot_bitwise() {
    if !Isa::Avx2.is_available() {
        return;
    }
    let mut rng = StdRng::seed_from_u64(10);
    let k = Kernels::get(Isa::Avx2).unwrap();
    for ty in TILED {
        let tk = k.tile(ty).unwrap();
        for &cols in widths(ty) {
            let data = random_weights(ty, tk.rows, cols, &mut rng);
            let w = WeightView { ty, rows: tk.rows, cols, data: &data, packed: None };
            let x = random_acts(tk.toks * cols, &mut rng);
            let want = pairs(Isa::Avx2, &w, &x, tk.toks);
            let a = quantize(Isa::Avx2, ty, &x, tk.toks);
            let mut got = vec![f32::NAN; tk.rows * tk.toks];
            let w_row = ty.row_bytes(cols).unwrap();
            (tk.f)(cols, &data, w_row, &a, a.len() / tk.toks, &mut got);
            for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                assert_eq!(g.to_bits(), e.to_bits(), "{ty} cols={cols} i={i}: {g} vs {e}");
            }
        }
    }
}

#[test]
fn matmul_tile_path_equals_pairs_and_reference() {
    let mut rng = StdRng::seed_from_u64(11);
    let pools = [ThreadPool::new(1), ThreadPool::new(2), ThreadPool::new(3)];
    let mut scratch = Vec::new();
    for ty in TILED {
        for &cols in widths(ty) {
            for rows in [3usize, 37, 130] {
                let data = random_weights(ty, rows, cols, &mut rng);
                let w = WeightView { ty, rows, cols, data: &data, packed: None };
                for n_tok in [1usize, 2, 3, 5, 17, 33] {
                    let x = random_acts(n_tok * cols, &mut rng);
                    let reference = pairs(Isa::Scalar, &w, &x, n_tok);
                    let fast = pairs(Isa::best(), &w, &x, n_tok);
                    for pool in &pools {
                        let mut y = vec![f32::NAN; n_tok * rows];
                        matmul_with(Isa::best(), pool, &w, &x, n_tok, &mut scratch, &mut y)
                            .unwrap();
                        for (i, ((g, f), e)) in y.iter().zip(&fast).zip(&reference).enumerate() {
                            let at = format!("{ty} cols={cols} rows={rows} n_tok={n_tok} i={i}");
                            assert_eq!(g.to_bits(), f.to_bits(), "{at}: {g} vs pairs {f}");
                            assert!((g - e).abs() <= 1e-4 * e.abs().max(1.0), "{at}: {g} vs {e}");
                        }
                    }
                }
            }
        }
    }
}

/// `sum_i |w_i a_i|` of token `t` with row `r`, both dequantized (the scale of tests/kernels.rs's
/// tolerance).
fn magnitude(w: &WeightView<'_>, a: &[u8], a_row: usize, r: usize, t: usize) -> f64 {
    let (ty, n) = (w.ty, w.cols);
    let w_row = ty.row_bytes(n).unwrap();
    let (mut wv, mut av) = (vec![0.0f32; n], vec![0.0f32; n]);
    ty.to_f32(&w.data[r * w_row..(r + 1) * w_row], &mut wv).unwrap();
    ty.spec().vec_dot_type.to_f32(&a[t * a_row..(t + 1) * a_row], &mut av).unwrap();
    wv.iter().zip(&av).map(|(&p, &q)| (f64::from(p) * f64::from(q)).abs()).sum()
}

/// The tiled matmul of llmopt's own formats: equal to the AVX2 `vec_dot` per pair bit for bit,
/// and to the scalar matmul within tests/kernels.rs's tolerance (`1e-5 sum |w a| + 1e-6`), with
/// row counts that leave rows over after the tiles and token counts from decode to 4 token tiles.
#[test]
fn own_formats_matmul_avx2_equals_scalar() {
    if !Isa::Avx2.is_available() {
        return;
    }
    let mut rng = StdRng::seed_from_u64(13);
    let pool = ThreadPool::new(2);
    let mut scratch = Vec::new();
    for ty in OWN {
        let tk = Kernels::get(Isa::Avx2).unwrap().tile(ty).unwrap();
        for cols in [640usize, 1536] {
            for rows in [37usize, 131] {
                assert!(rows % tk.rows != 0, "{ty}: {rows} rows leave none over");
                let data = random_weights(ty, rows, cols, &mut rng);
                let w = WeightView { ty, rows, cols, data: &data, packed: None };
                for n_tok in [1usize, 3, 17, 64] {
                    let x = random_acts(n_tok * cols, &mut rng);
                    let run = |isa: Isa, scratch: &mut Vec<u8>| {
                        let mut y = vec![f32::NAN; n_tok * rows];
                        matmul_with(isa, &pool, &w, &x, n_tok, scratch, &mut y).unwrap();
                        y
                    };
                    let (fast, slow) =
                        (run(Isa::Avx2, &mut scratch), run(Isa::Scalar, &mut scratch));
                    let want = pairs(Isa::Avx2, &w, &x, n_tok);
                    let a = quantize(Isa::Scalar, ty, &x, n_tok);
                    let a_row = a.len() / n_tok;
                    for (i, ((g, p), s)) in fast.iter().zip(&want).zip(&slow).enumerate() {
                        let at = format!("{ty} cols={cols} rows={rows} n_tok={n_tok} i={i}");
                        assert_eq!(g.to_bits(), p.to_bits(), "{at}: {g} vs AVX2 pairs {p}");
                        let mag = magnitude(&w, &a, a_row, i % rows, i / rows);
                        let err = (f64::from(*g) - f64::from(*s)).abs();
                        assert!(err <= 1e-5 * mag + 1e-6, "{at}: {g} vs scalar {s}");
                    }
                }
            }
        }
    }
}

#[test]
fn matmul_many_equals_separate_matmuls() {
    let mut rng = StdRng::seed_from_u64(12);
    let cols = 768;
    let types = {
        use GgmlType::*;
        [Q4_K, Q6_K, Q8_0, Q4_1, F32, F16, Q5_0, Q4_K, Q6_K, Q4_0, Q5_1]
    };
    let shapes: Vec<(GgmlType, usize, Vec<u8>)> = types
        .iter()
        .enumerate()
        .map(|(i, &ty)| (ty, 5 + 13 * i, random_weights(ty, 5 + 13 * i, cols, &mut rng)))
        .collect();
    let ws: Vec<WeightView<'_>> = shapes
        .iter()
        .map(|(ty, rows, d)| WeightView { ty: *ty, rows: *rows, cols, data: d, packed: None })
        .collect();
    for isa in [Isa::Scalar, Isa::best()] {
        for threads in [1, 3] {
            let pool = ThreadPool::new(threads);
            for n_tok in [1usize, 6, 33] {
                let x = random_acts(n_tok * cols, &mut rng);
                for take in [1, 3, ws.len()] {
                    let mut scratch = Vec::new();
                    let mut ys: Vec<Vec<f32>> =
                        ws[..take].iter().map(|w| vec![f32::NAN; n_tok * w.rows]).collect();
                    let mut refs: Vec<&mut [f32]> = ys.iter_mut().map(|y| &mut y[..]).collect();
                    matmul_many_with(isa, &pool, &ws[..take], &x, n_tok, &mut scratch, &mut refs)
                        .unwrap();
                    for (w, y) in ws.iter().zip(&ys) {
                        let mut want = vec![f32::NAN; n_tok * w.rows];
                        matmul_with(isa, &pool, w, &x, n_tok, &mut scratch, &mut want).unwrap();
                        let same = y.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(same, "{isa:?} {} n_tok={n_tok} take={take}", w.ty);
                    }
                }
            }
        }
    }
}

#[test]
fn matmul_many_rejects_mismatched_inputs() {
    let pool = ThreadPool::new(1);
    let data = vec![0u8; 18 * 2];
    let w = WeightView { ty: GgmlType::Q4_0, rows: 2, cols: 32, data: &data, packed: None };
    let mut s = Vec::new();
    let (mut y0, mut y1) = (vec![0.0; 2], vec![0.0; 3]);
    let x = [0.0; 32];
    assert!(matmul_many_with(Isa::Scalar, &pool, &[w, w], &x, 1, &mut s, &mut [&mut y0]).is_err());
    let r = matmul_many_with(Isa::Scalar, &pool, &[w, w], &x, 1, &mut s, &mut [&mut y0, &mut y1]);
    assert!(r.is_err());
    let w64 = WeightView { ty: GgmlType::Q4_0, rows: 1, cols: 64, data: &data, packed: None };
    let r = matmul_many_with(Isa::Scalar, &pool, &[w, w64], &x, 1, &mut s, &mut [&mut y0, &mut y1]);
    assert!(r.is_err());
    assert!(matmul_many_with(Isa::Scalar, &pool, &[], &x, 1, &mut s, &mut []).is_ok());
}

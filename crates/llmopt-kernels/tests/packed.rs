//! The 8-row interleaved (packed) weights: `matmul` through them against the scalar reference
//! `vec_dot` per pair (within float reassociation), and `matmul_many` over a mix of packed and
//! plain weights against separate `matmul` calls (bit for bit).

mod common;

use common::{random_acts, random_weights};
use llmopt_kernels::{
    matmul_many_with, matmul_with, Isa, Kernels, PackedWeight, ThreadPool, WeightView,
};
use llmopt_tensor::GgmlType;
use rand::rngs::StdRng;
use rand::SeedableRng;

const PACKED: [GgmlType; 5] =
    [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::Q5_0, GgmlType::W8A16];

/// `y[t * rows + r]` by the scalar reference `vec_dot`, one pair at a time.
fn reference(w: &WeightView<'_>, x: &[f32], n_tok: usize) -> Vec<f32> {
    let k = Kernels::get(Isa::Scalar).unwrap();
    let vdt = w.ty.spec().vec_dot_type;
    let (w_row, a_row) = (w.ty.row_bytes(w.cols).unwrap(), vdt.row_bytes(w.cols).unwrap());
    let mut a = vec![0u8; n_tok * a_row];
    for (xt, at) in x.chunks_exact(w.cols).zip(a.chunks_exact_mut(a_row)) {
        k.quantize(vdt).unwrap()(xt, at);
    }
    let dot = k.vec_dot(w.ty).unwrap();
    let mut y = vec![0.0f32; n_tok * w.rows];
    for t in 0..n_tok {
        for r in 0..w.rows {
            y[t * w.rows + r] =
                dot(w.cols, &w.data[r * w_row..(r + 1) * w_row], &a[t * a_row..(t + 1) * a_row]);
        }
    }
    y
}

/// Whether this CPU runs the packed Q4_K kernel (AVX-512 VNNI + VL only).
fn vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512vnni")
            && is_x86_feature_detected!("avx512vl")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// The packed types this CPU runs, and the widths to test each at (Q4_K's are multiples of 256).
fn packed_types() -> Vec<(GgmlType, &'static [usize])> {
    let mut v: Vec<(GgmlType, &'static [usize])> = PACKED
        .iter()
        .map(|&ty| match ty {
            GgmlType::W8A16 => (ty, &[32usize, 576, 640, 896, 1536][..]),
            _ => (ty, &[576usize, 640, 896, 1536][..]),
        })
        .collect();
    if vnni() {
        v.push((GgmlType::Q4_K, &[256, 1536, 2048]));
        v.push((GgmlType::Q6_K, &[256, 1536, 2048]));
        v.push((GgmlType::W8A8, &[32, 576, 1536]));
    }
    v
}

#[test]
fn supports_only_where_kernels_exist() {
    assert!(PACKED.iter().all(|&ty| !PackedWeight::supports(Isa::Scalar, ty)));
    assert!(!PackedWeight::supports(Isa::Scalar, GgmlType::Q4_K));
    if Isa::Avx2.is_available() {
        assert!(PACKED.iter().all(|&ty| PackedWeight::supports(Isa::Avx2, ty)));
        assert!(!PackedWeight::supports(Isa::Avx2, GgmlType::INT16_PC));
        assert_eq!(PackedWeight::supports(Isa::Avx2, GgmlType::Q4_K), vnni());
        assert_eq!(PackedWeight::supports(Isa::Avx2, GgmlType::Q6_K), vnni());
        assert_eq!(PackedWeight::supports(Isa::Avx2, GgmlType::W8A8), vnni());
        assert!(!PackedWeight::supports(Isa::Avx2, GgmlType::Q5_K));
        let data = vec![0u8; 2 * 176];
        let w = WeightView::new(GgmlType::Q5_K, 2, 256, &data);
        assert!(PackedWeight::new(Isa::Avx2, &w).is_none());
    }
}

#[test]
fn packed_matmul_equals_reference() {
    if !Isa::Avx2.is_available() {
        return;
    }
    let mut rng = StdRng::seed_from_u64(21);
    let pools = [ThreadPool::new(1), ThreadPool::new(2), ThreadPool::new(3)];
    let mut scratch = Vec::new();
    for (ty, widths) in packed_types() {
        for &cols in widths {
            for rows in [1usize, 7, 8, 9, 37, 130] {
                let data = random_weights(ty, rows, cols, &mut rng);
                let plain = WeightView::new(ty, rows, cols, &data);
                let p = PackedWeight::new(Isa::Avx2, &plain).unwrap();
                assert!(p.matches(&plain));
                let bytes = match ty {
                    // Q4_0's record and 4 bytes of 5th bits per row and block.
                    GgmlType::Q5_0 => cols / 32 * 22,
                    // The record unpacks the 12 bytes of 6-bit scales and mins to 16.
                    GgmlType::Q4_K => cols / 256 * 148,
                    // The row scale, not the quant sum, then the quants.
                    GgmlType::W8A8 => 4 + cols,
                    _ => ty.row_bytes(cols).unwrap(),
                };
                assert_eq!(p.n_bytes(), rows.div_ceil(8) * 8 * bytes);
                let w = WeightView { packed: Some(&p), ..plain };
                for n_tok in [1usize, 2, 3, 4, 5, 17] {
                    let x = random_acts(n_tok * cols, &mut rng);
                    let want = reference(&plain, &x, n_tok);
                    let mag = want.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-3);
                    let mut first: Option<Vec<f32>> = None;
                    for pool in &pools {
                        let mut y = vec![f32::NAN; n_tok * rows];
                        matmul_with(Isa::Avx2, pool, &w, &x, n_tok, &mut scratch, &mut y).unwrap();
                        for (i, (g, e)) in y.iter().zip(&want).enumerate() {
                            let at = format!("{ty} cols={cols} rows={rows} n_tok={n_tok} i={i}");
                            assert!((g - e).abs() <= 1e-4 * mag, "{at}: {g} vs {e} (mag {mag})");
                        }
                        // Thread counts split rows and tokens differently: same bits.
                        match &first {
                            None => first = Some(y),
                            Some(f) => {
                                assert!(f.iter().zip(&y).all(|(a, b)| a.to_bits() == b.to_bits()))
                            }
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn stale_packed_is_ignored_and_scalar_ignores_packed() {
    let mut rng = StdRng::seed_from_u64(22);
    let (rows, cols, n_tok) = (20, 576, 3);
    let ty = GgmlType::Q4_1;
    let old = random_weights(ty, rows, cols, &mut rng);
    let new = random_weights(ty, rows, cols, &mut rng);
    let x = random_acts(n_tok * cols, &mut rng);
    let pool = ThreadPool::new(2);
    let mut scratch = Vec::new();
    let Some(p) = PackedWeight::new(Isa::best(), &WeightView::new(ty, rows, cols, &old)) else {
        return;
    };
    // `p` was built from `old`: a view of `new` must not use it.
    let w = WeightView { packed: Some(&p), ..WeightView::new(ty, rows, cols, &new) };
    let mut y = vec![0.0; n_tok * rows];
    let mut plain = vec![0.0; n_tok * rows];
    matmul_with(Isa::best(), &pool, &w, &x, n_tok, &mut scratch, &mut y).unwrap();
    let wn = WeightView::new(ty, rows, cols, &new);
    matmul_with(Isa::best(), &pool, &wn, &x, n_tok, &mut scratch, &mut plain).unwrap();
    assert!(y.iter().zip(&plain).all(|(a, b)| a.to_bits() == b.to_bits()));
    // The scalar path has no packed kernels: the packed view gives the reference bits.
    let wo = WeightView { packed: Some(&p), ..WeightView::new(ty, rows, cols, &old) };
    matmul_with(Isa::Scalar, &pool, &wo, &x, n_tok, &mut scratch, &mut y).unwrap();
    let want = reference(&WeightView::new(ty, rows, cols, &old), &x, n_tok);
    assert!(y.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()));
}

#[test]
fn matmul_many_mixes_packed_and_plain() {
    if !Isa::Avx2.is_available() {
        return;
    }
    let mut rng = StdRng::seed_from_u64(23);
    let cols = 768;
    let types = {
        use GgmlType::*;
        [Q4_0, Q4_K, Q4_1, Q8_0, Q8_0, F32, Q4_0, Q6_K, Q4_1, Q5_0, W8A8, W8A8, W8A16, W8A16]
    };
    let datas: Vec<(GgmlType, usize, Vec<u8>)> = types
        .iter()
        .enumerate()
        .map(|(i, &ty)| (ty, 3 + 11 * i, random_weights(ty, 3 + 11 * i, cols, &mut rng)))
        .collect();
    let packs: Vec<Option<PackedWeight>> = datas
        .iter()
        .enumerate()
        .map(|(i, (ty, rows, d))| {
            // Every other packable weight stays plain.
            let p = PackedWeight::new(Isa::Avx2, &WeightView::new(*ty, *rows, cols, d));
            p.filter(|_| i % 3 != 2)
        })
        .collect();
    let ws: Vec<WeightView<'_>> = datas
        .iter()
        .zip(&packs)
        .map(|((ty, rows, d), p)| WeightView {
            packed: p.as_ref(),
            ..WeightView::new(*ty, *rows, cols, d)
        })
        .collect();
    for threads in [1, 2, 3] {
        let pool = ThreadPool::new(threads);
        let mut scratch = Vec::new();
        for n_tok in [1usize, 5, 17] {
            let x = random_acts(n_tok * cols, &mut rng);
            let mut separate: Vec<Vec<f32>> = Vec::new();
            for w in &ws {
                let mut y = vec![f32::NAN; n_tok * w.rows];
                matmul_with(Isa::Avx2, &pool, w, &x, n_tok, &mut scratch, &mut y).unwrap();
                separate.push(y);
            }
            let mut outs: Vec<Vec<f32>> =
                ws.iter().map(|w| vec![f32::NAN; n_tok * w.rows]).collect();
            let mut refs: Vec<&mut [f32]> = outs.iter_mut().map(|v| &mut v[..]).collect();
            matmul_many_with(Isa::Avx2, &pool, &ws, &x, n_tok, &mut scratch, &mut refs).unwrap();
            for (k, (a, b)) in outs.iter().zip(&separate).enumerate() {
                assert!(
                    a.iter().zip(b).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "weight {k} ({}) threads={threads} n_tok={n_tok}",
                    types[k]
                );
            }
        }
    }
}

/// Packs random `ty` weights of each shape, with `extremes(data, rows, w_row)` setting some rows
/// to the extreme quants, and checks the packed matmul (with `plain_too`, the plain path as well)
/// against the scalar reference bit for bit, for several token counts (token 0 all +1, token 1
/// all -1) on 1 and 2 threads. `packed_row` is a row's packed bytes from its plain bytes.
fn assert_packed_bitwise(
    ty: GgmlType,
    seed: u64,
    (widths, row_counts): (&[usize], &[usize]),
    extremes: impl Fn(&mut [u8], usize, usize),
    packed_row: impl Fn(usize) -> Option<usize>,
    plain_too: bool,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let pools = [ThreadPool::new(1), ThreadPool::new(2)];
    let mut scratch = Vec::new();
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    for &cols in widths {
        for &rows in row_counts {
            let mut data = random_weights(ty, rows, cols, &mut rng);
            let w_row = ty.row_bytes(cols).unwrap();
            extremes(&mut data, rows, w_row);
            let plain = WeightView::new(ty, rows, cols, &data);
            let p = PackedWeight::new(Isa::Avx2, &plain).unwrap();
            if let Some(b) = packed_row(w_row) {
                assert_eq!(p.n_bytes(), rows.div_ceil(8) * 8 * b);
            }
            let w = WeightView { packed: Some(&p), ..plain };
            for n_tok in [1usize, 2, 3, 4, 5, 17, 64] {
                let mut x = random_acts(n_tok * cols, &mut rng);
                x[..cols].fill(1.0);
                if n_tok > 1 {
                    x[cols..2 * cols].fill(-1.0);
                }
                let want = bits(&reference(&plain, &x, n_tok));
                for pool in &pools {
                    let mut y = vec![f32::NAN; n_tok * rows];
                    matmul_with(Isa::Avx2, pool, &w, &x, n_tok, &mut scratch, &mut y).unwrap();
                    let at = format!("cols={cols} rows={rows} n_tok={n_tok}");
                    assert_eq!(bits(&y), want, "packed vs reference, {at}");
                    if plain_too {
                        matmul_with(Isa::Avx2, pool, &plain, &x, n_tok, &mut scratch, &mut y)
                            .unwrap();
                        assert_eq!(bits(&y), want, "plain vs reference, {at}");
                    }
                }
            }
        }
    }
}

/// W8A8 packed (VNNI CPUs) keeps the reference's arithmetic exactly: one i32 sum per row and
/// token, times `d_w * d_a`, so equal bits to the scalar reference and to the plain path (tiles
/// and `vec_dot`), including the extreme quants -128 and 127 against +-127.
#[test]
fn packed_w8a8_equals_reference_bitwise() {
    if !(Isa::Avx2.is_available() && vnni()) {
        return;
    }
    // Rows 0 and 1 at the extremes (the header's sum made to match).
    let extremes = |data: &mut [u8], _rows: usize, w_row: usize| {
        let cols = w_row - 8;
        for (r, v) in [(0usize, i8::MIN), (1, 127i8)] {
            let row = &mut data[r * w_row..(r + 1) * w_row];
            row[8..].fill(v as u8);
            row[4..8].copy_from_slice(&(i32::from(v) * cols as i32).to_le_bytes());
        }
    };
    // The packed rows drop the 4-byte quant sum.
    let shapes = (&[32usize, 576, 1536][..], &[8usize, 13, 37][..]);
    assert_packed_bitwise(GgmlType::W8A8, 205, shapes, extremes, |w_row| Some(w_row - 4), true);
}

/// W8A16 packed keeps the reference's arithmetic (exact i32 block sums, times the row scale and
/// added in block order, times the token scale at the end): equal bits to the scalar reference
/// for every token count, so a token's result does not depend on its batch; the extremes -128 and
/// 127 against +-32767 included.
#[test]
fn packed_w8a16_equals_reference_bitwise() {
    if !Isa::Avx2.is_available() {
        return;
    }
    // Row 0 all -128, the last row all 127 (where there are two).
    let extremes = |data: &mut [u8], rows: usize, w_row: usize| {
        for (r, v) in [(0usize, 0x80u8), (rows - 1, 127)] {
            if r > 0 || v == 0x80 {
                let row = &mut data[r * w_row..(r + 1) * w_row];
                row.chunks_exact_mut(34).for_each(|b| b[2..].fill(v));
            }
        }
    };
    let shapes = (&[32usize, 576, 640, 896, 1536][..], &[1usize, 8, 13, 37][..]);
    assert_packed_bitwise(GgmlType::W8A16, 206, shapes, extremes, |_| None, false);
}

#[test]
fn extreme_quants_do_not_overflow() {
    if !Isa::Avx2.is_available() {
        return;
    }
    let pool = ThreadPool::new(2);
    let mut scratch = Vec::new();
    let (rows, cols) = (9, 1792);
    // The largest weight magnitudes (Q4_0: nibble 15, Q5_0: 31, Q8_0: -128; Q4_K: nibble 15 with
    // scale and min 63) against activations quantized to +-127 everywhere: the i16 sums' worst case.
    // W8A16: -128 against +-32767 (the i32 lane sums' worst case).
    let mut cases = vec![
        (GgmlType::Q4_0, 0xffu8),
        (GgmlType::Q5_0, 0xff),
        (GgmlType::Q8_0, 0x80),
        (GgmlType::W8A16, 0x80),
    ];
    if vnni() {
        cases.push((GgmlType::Q4_K, 0xff));
        cases.push((GgmlType::Q6_K, 0xff));
    }
    for (ty, fill) in cases {
        let bb = ty.spec().block_bytes;
        let mut data = vec![fill; rows * ty.row_bytes(cols).unwrap()];
        for b in data.chunks_exact_mut(bb) {
            b[..2].copy_from_slice(&llmopt_tensor::f32_to_f16(1.0).to_le_bytes());
            if ty == GgmlType::Q4_K {
                // dmin
                b[2..4].copy_from_slice(&llmopt_tensor::f32_to_f16(0.5).to_le_bytes());
            }
            if ty == GgmlType::Q6_K {
                // d is last; the scales stay 0xff (-1).
                b[..2].fill(0xff);
                b[208..].copy_from_slice(&llmopt_tensor::f32_to_f16(1.0).to_le_bytes());
            }
        }
        let plain = WeightView::new(ty, rows, cols, &data);
        let p = PackedWeight::new(Isa::Avx2, &plain).unwrap();
        let w = WeightView { packed: Some(&p), ..plain };
        for sign in [1.0f32, -1.0] {
            let x = vec![sign; 3 * cols];
            let want = reference(&plain, &x, 3);
            let mut y = vec![f32::NAN; 3 * rows];
            matmul_with(Isa::Avx2, &pool, &w, &x, 3, &mut scratch, &mut y).unwrap();
            for (g, e) in y.iter().zip(&want) {
                assert!((g - e).abs() <= 1e-4 * e.abs().max(1.0), "{ty} {sign}: {g} vs {e}");
            }
        }
    }
}

//! Every fast path against its scalar reference on random data and odd shapes, the scalar
//! references against an f64 dot of dequantized values, and matmul against a naive loop; for
//! every weight format, ggml's and llmopt's own.
//!
//! Tolerances (|fast - reference| <= TOL * sum_i |w_i * a_i| + 1e-6, with w, a dequantized):
//! integer formats share the exact integer block sums and differ only in float summation order
//! and FMA, so 1e-5 is ample; F32/F16 dots (and the f32-activation MXFP8, FP8_PC and NF4 dots)
//! differ from the f64-accumulated reference by f32 rounding over up to ~1500 terms, also within
//! 1e-5 relative to the absolute sum.
//! Activation quantizers must match the scalar bytes exactly.

mod common;

use common::{random_acts, random_weights};
use llmopt_kernels::{matmul_with, Isa, Kernels, ThreadPool, WeightView};
use llmopt_tensor::GgmlType;
use rand::rngs::StdRng;
use rand::SeedableRng;

const TOL: f64 = 1e-5;

fn quantize(isa: Isa, ty: GgmlType, x: &[f32]) -> Vec<u8> {
    let vdt = ty.spec().vec_dot_type;
    let mut a = vec![0u8; vdt.row_bytes(x.len()).unwrap()];
    (Kernels::get(isa).unwrap().quantize(vdt).unwrap())(x, &mut a);
    a
}

fn deq(ty: GgmlType, b: &[u8], n: usize) -> Vec<f32> {
    let mut v = vec![0.0f32; n];
    ty.to_f32(b, &mut v).unwrap();
    v
}

fn rd16(b: &[u8], off: usize) -> f64 {
    f64::from(llmopt_tensor::f16_to_f32(u16::from_le_bytes([b[off], b[off + 1]])))
}

/// (f64 dot, sum of |terms|) of the dequantized rows.
fn f64_dot(ty: GgmlType, w: &[u8], a: &[u8], n: usize) -> (f64, f64) {
    let (wv, av) = (deq(ty, w, n), deq(ty.spec().vec_dot_type, a, n));
    wv.iter().zip(&av).fold((0.0, 0.0), |(s, m), (&p, &q)| {
        (s + f64::from(p) * f64::from(q), m + (f64::from(p) * f64::from(q)).abs())
    })
}

/// ggml's weight formats, then MXFP4 and llmopt's own (MXFP8, INT8_PC, FP8_PC, NF4, INT4_G128,
/// W8A8, W8A16).
const WEIGHT_TYPES: [GgmlType; 21] = {
    use GgmlType::*;
    [
        F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, MXFP4, MXFP8,
        INT8_PC, FP8_PC, NF4, INT4_G128, W8A8, W8A16,
    ]
};

fn cols_for(ty: GgmlType) -> &'static [usize] {
    match ty.spec().block_len {
        256 => &[256, 768, 1536],
        128 => &[128, 640, 896, 1536],
        64 => &[64, 576, 640, 896],
        32 => &[32, 576, 640, 896, 768],
        _ => &[1, 7, 33, 576, 640, 896, 768],
    }
}

#[test]
fn reference_vec_dot_matches_f64_dot_of_dequantized() {
    let mut rng = StdRng::seed_from_u64(1);
    let k = Kernels::get(Isa::Scalar).unwrap();
    for ty in WEIGHT_TYPES {
        for &n in cols_for(ty) {
            let w = random_weights(ty, 1, n, &mut rng);
            let a = quantize(Isa::Scalar, ty, &random_acts(n, &mut rng));
            let got = f64::from((k.vec_dot(ty).unwrap())(n, &w, &a));
            let (want, mag) = f64_dot(ty, &w, &a, n);
            // f32 scaling of exact integer sums: a few f32 roundings per block. Q4_1/Q5_1 also
            // use Q8_1's `s = d * sum(qs)`, which is stored as f16: allow 2^-10 of |m * s|.
            // INT4_G128 likewise, over the four activation blocks of each group.
            let f16_s = if matches!(ty, GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::INT4_G128) {
                let (wb, per) = (ty.spec().block_bytes, ty.spec().block_len / 32);
                a.chunks(36)
                    .enumerate()
                    .map(|(k, y)| (rd16(&w[k / per * wb..], 2) * rd16(y, 2)).abs())
                    .sum::<f64>()
                    * 2f64.powi(-10)
            } else {
                0.0
            };
            assert!((got - want).abs() <= 1e-5 * mag + f16_s + 1e-6, "{ty} n={n}: {got} vs {want}");
        }
    }
}

#[test]
fn simd_vec_dot_matches_reference() {
    if !Isa::Avx2.is_available() {
        return; // Nothing to compare on this CPU; the scalar tests still run.
    }
    let mut rng = StdRng::seed_from_u64(2);
    let (fast, slow) = (Kernels::get(Isa::Avx2).unwrap(), Kernels::get(Isa::Scalar).unwrap());
    let mut n_simd = 0;
    for ty in WEIGHT_TYPES {
        n_simd += usize::from(fast.is_simd_vec_dot(ty));
        for &n in cols_for(ty) {
            for _ in 0..4 {
                let w = random_weights(ty, 1, n, &mut rng);
                let a = quantize(Isa::Scalar, ty, &random_acts(n, &mut rng));
                let got = f64::from((fast.vec_dot(ty).unwrap())(n, &w, &a));
                let want = f64::from((slow.vec_dot(ty).unwrap())(n, &w, &a));
                let (_, mag) = f64_dot(ty, &w, &a, n);
                assert!((got - want).abs() <= TOL * mag + 1e-6, "{ty} n={n}: {got} vs {want}");
            }
        }
    }
    assert_eq!(
        n_simd, 18,
        "AVX2: F32 F16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q4_K Q5_K Q6_K MXFP4 MXFP8 INT8_PC FP8_PC NF4 \
         INT4_G128 W8A8 W8A16"
    );
}

#[test]
fn simd_quantizers_equal_reference_bytes() {
    if !Isa::Avx2.is_available() {
        return;
    }
    let mut rng = StdRng::seed_from_u64(3);
    let (fast, slow) = (Kernels::get(Isa::Avx2).unwrap(), Kernels::get(Isa::Scalar).unwrap());
    use GgmlType::{F16, INT16_PC, INT8_PC, Q8_0, Q8_1, Q8_K};
    for ty in [Q8_0, Q8_1, Q8_K, F16, INT8_PC, INT16_PC] {
        assert!(fast.is_simd_quantize(ty), "{ty}");
        let lens: &[usize] =
            if ty == GgmlType::Q8_K { &[256, 768, 1536] } else { &[256, 576, 640, 768, 896, 1536] };
        for &n in lens {
            let mut x = random_acts(n, &mut rng);
            // Exact .5 ties after scaling, zero blocks, and a block whose extremes tie in |v|.
            x[..32].iter_mut().enumerate().for_each(|(i, v)| *v = i as f32 - 15.5);
            x[0] = 127.0;
            x[32..64].fill(0.0);
            x[256..512.min(n)].fill(0.0);
            if n > 600 {
                x[512] = 3.0;
                x[513] = -3.0;
                x[514..768.min(n)].iter_mut().for_each(|v| *v *= 0.1);
            }
            let mut a = vec![0u8; ty.row_bytes(n).unwrap()];
            let mut b = a.clone();
            (fast.quantize(ty).unwrap())(&x, &mut a);
            (slow.quantize(ty).unwrap())(&x, &mut b);
            assert_eq!(a, b, "{ty} n={n}");
            // A row of zeros (INT8_PC, INT16_PC: amax 0 for the whole row), and one without ties.
            for x in [vec![0.0; n], random_acts(n, &mut rng)] {
                (fast.quantize(ty).unwrap())(&x, &mut a);
                (slow.quantize(ty).unwrap())(&x, &mut b);
                assert_eq!(a, b, "{ty} n={n}");
            }
        }
    }
}

/// INT16_PC's AVX2 quantizer on rows the random ones miss, byte for byte against the codec: amax
/// 32767 (multiplier 1, so .5 values are ties), an amax so small that `32767 / amax` overflows
/// (every product clamped, zeros NaN), subnormals, and rows holding NaN or infinities.
#[test]
fn int16_pc_simd_quantizer_equals_codec_on_edge_rows() {
    if !Isa::Avx2.is_available() {
        return;
    }
    let ty = GgmlType::INT16_PC;
    let (fast, slow) = (Kernels::get(Isa::Avx2).unwrap(), Kernels::get(Isa::Scalar).unwrap());
    let mut rng = StdRng::seed_from_u64(207);
    let ties: Vec<f32> = (0..96).map(|i| (i as f32 - 47.5) * 3.0).chain([32767.0; 32]).collect();
    let mut rows = vec![ties, vec![1e-39; 64], vec![f32::MIN_POSITIVE * 0.25; 32]];
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut x = random_acts(640, &mut rng);
        x[37] = bad;
        rows.push(x);
    }
    rows[1][5] = 0.0;
    rows[1][6] = -1e-39;
    for x in &rows {
        let (mut a, mut b) = (vec![0u8; 4 + 2 * x.len()], vec![0u8; 4 + 2 * x.len()]);
        (fast.quantize(ty).unwrap())(x, &mut a);
        (slow.quantize(ty).unwrap())(x, &mut b);
        assert_eq!(a, b, "n={} x[..4]={:?}", x.len(), &x[..4]);
    }
    // The scalar path is the tensor codec; ties went to even.
    let mut c = vec![0u8; 4 + 2 * 128];
    ty.from_f32(&rows[0], &mut c).unwrap();
    let q = |i: usize| i16::from_le_bytes([c[4 + 2 * i], c[5 + 2 * i]]);
    assert_eq!([q(0), q(1), q(47), q(48), q(96)], [-142, -140, -2, 2, 32767]);
}

#[test]
fn int8_pc_activations_round_half_to_even_over_the_row() {
    let k = Kernels::get(Isa::Scalar).unwrap();
    let q = k.quantize(GgmlType::INT8_PC).unwrap();
    // amax 127: the multiplier is exactly 1, so .5 values are ties.
    let mut x = vec![0.0f32; 64];
    x[..6].copy_from_slice(&[127.0, 2.5, 3.5, -2.5, -3.5, 0.5]);
    x[40] = -126.5;
    let mut y = vec![0u8; 4 + 64];
    q(&x, &mut y);
    assert_eq!(f32::from_le_bytes([y[0], y[1], y[2], y[3]]), 1.0);
    let v = |i: usize| y[4 + i] as i8;
    assert_eq!([v(0), v(1), v(2), v(3), v(4), v(5), v(40)], [127, 2, 4, -2, -4, 0, -126]);
    // Random rows: every value within d / 2 of its input, the row's extreme at ±127.
    let mut rng = StdRng::seed_from_u64(5);
    for n in [32usize, 576, 896, 1536] {
        let x = random_acts(n, &mut rng);
        let mut y = vec![0u8; 4 + n];
        q(&x, &mut y);
        let d = f32::from_le_bytes([y[0], y[1], y[2], y[3]]);
        assert!(y[4..].iter().any(|&b| (b as i8).unsigned_abs() == 127), "n={n}");
        for (i, (&b, &v)) in y[4..].iter().zip(&x).enumerate() {
            assert!((f32::from(b as i8) * d - v).abs() <= 0.5001 * d, "n={n} i={i}");
        }
    }
}

/// y[t * rows + r] with the scalar kernels, one dot at a time.
fn naive(w: &WeightView<'_>, x: &[f32], n_tok: usize) -> Vec<f32> {
    let k = Kernels::get(Isa::Scalar).unwrap();
    let row = w.ty.row_bytes(w.cols).unwrap();
    let mut y = vec![0.0f32; n_tok * w.rows];
    for t in 0..n_tok {
        let a = quantize(Isa::Scalar, w.ty, &x[t * w.cols..(t + 1) * w.cols]);
        for r in 0..w.rows {
            y[t * w.rows + r] =
                (k.vec_dot(w.ty).unwrap())(w.cols, &w.data[r * row..(r + 1) * row], &a);
        }
    }
    y
}

#[test]
fn matmul_equals_naive_loop_1_and_2_threads() {
    let mut rng = StdRng::seed_from_u64(4);
    let pools = [ThreadPool::new(1), ThreadPool::new(2)];
    let mut scratch = Vec::new();
    for ty in WEIGHT_TYPES {
        let cols = match ty.spec().block_len {
            256 => 768,
            128 => 640,
            _ => 576,
        };
        for rows in [1usize, 37, 130] {
            let data = random_weights(ty, rows, cols, &mut rng);
            let w = WeightView { ty, rows, cols, data: &data, packed: None };
            for n_tok in [1usize, 3, 17] {
                let x = random_acts(n_tok * cols, &mut rng);
                let want = naive(&w, &x, n_tok);
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

#[test]
fn matmul_rejects_bad_shapes() {
    let pool = ThreadPool::new(1);
    let data = vec![0u8; 18 * 2];
    let w = WeightView { ty: GgmlType::Q4_0, rows: 2, cols: 32, data: &data, packed: None };
    let mut y = vec![0.0; 2];
    let mut s = Vec::new();
    assert!(matmul_with(Isa::Scalar, &pool, &w, &[0.0; 31], 1, &mut s, &mut y).is_err());
    let w = WeightView { ty: GgmlType::Q4_K, rows: 2, cols: 32, data: &data, packed: None };
    assert!(matmul_with(Isa::Scalar, &pool, &w, &[0.0; 32], 1, &mut s, &mut y).is_err());
}

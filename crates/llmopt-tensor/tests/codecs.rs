//! Codecs against gguf-py (fixtures from `scripts/gen-quant-fixtures.py`) and round-trip bounds.
//!
//! Decoding must equal gguf-py's `dequantize` bit for bit: gguf-py evaluates the same f32
//! operations in the same order as ggml's `dequantize_row_*` (multiply, then add/subtract, never
//! fused), and so do we. Encoding with our reference quantizers must give gguf-py's bytes exactly.

use std::path::PathBuf;

use llmopt_tensor::{GgmlType, TensorError};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

struct Fixture {
    ty: GgmlType,
    input: Option<Vec<f32>>,
    quant: Vec<u8>,
    dequant: Vec<f32>,
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn load(ty: GgmlType) -> Fixture {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{}.json", ty.name().to_ascii_lowercase()));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run scripts/gen-quant-fixtures.py", path.display()));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["type"].as_str().unwrap(), ty.to_string());
    let field = |k: &str| v[k].as_str().map(unhex);
    Fixture {
        ty,
        input: field("input_f32").map(|b| f32s(&b)),
        quant: field("quant").unwrap(),
        dequant: f32s(&field("dequant_f32").unwrap()),
    }
}

const FIXTURE_TYPES: [GgmlType; 13] = {
    use GgmlType::*;
    [F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K]
};

#[test]
fn to_f32_equals_gguf_py_bitwise() {
    for ty in FIXTURE_TYPES {
        let f = load(ty);
        assert_eq!(f.ty, ty);
        let mut out = vec![0.0f32; f.dequant.len()];
        ty.to_f32(&f.quant, &mut out).unwrap();
        for (i, (a, b)) in out.iter().zip(&f.dequant).enumerate() {
            assert_eq!(a.to_bits(), b.to_bits(), "{ty} element {i}: ours {a}, gguf-py {b}");
        }
    }
}

#[test]
fn from_f32_equals_gguf_py_bytes() {
    let mut checked = 0;
    for ty in FIXTURE_TYPES {
        let f = load(ty);
        let Some(input) = f.input else { continue };
        let mut q = vec![0u8; ty.row_bytes(input.len()).unwrap()];
        ty.from_f32(&input, &mut q).unwrap();
        let bb = ty.spec().block_bytes;
        for (i, (a, b)) in q.chunks(bb).zip(f.quant.chunks(bb)).enumerate() {
            assert_eq!(a, b, "{ty} block {i} differs from gguf-py");
        }
        checked += 1;
    }
    assert_eq!(checked, 8, "F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 have gguf-py quantizers");
}

/// Largest |x - decode(encode(x))| allowed for one block, from the block's values.
fn bound(ty: GgmlType, x: &[f32]) -> f32 {
    let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let (mn, mx) = x.iter().fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    let range = mx - mn;
    // f16 scales carry a relative error of 2^-11; allow a little more for the products.
    let s = 1.0 + 2e-3;
    match ty {
        GgmlType::F32 => 0.0,
        GgmlType::F16 => amax * 2f32.powi(-11),
        GgmlType::BF16 => amax * 2f32.powi(-8),
        GgmlType::Q8_0 | GgmlType::Q8_1 | GgmlType::W8A16 => amax / 127.0 * 0.5 * s + amax * 2e-3,
        GgmlType::Q8_K => amax / 127.0 * 0.5 * s,
        // The value at -max maps to 16 and is clamped to 15: up to one full step there.
        GgmlType::Q4_0 => amax / 8.0 * s + amax * 2e-3,
        GgmlType::Q5_0 => amax / 16.0 * s + amax * 2e-3,
        GgmlType::Q4_1 => range / 15.0 * 0.5 * s + amax * 4e-3,
        GgmlType::Q5_1 => range / 31.0 * 0.5 * s + amax * 4e-3,
        // K-quants (per 256-block): the scale search trades clipped extremes for a finer step, and
        // sub-block scales are themselves quantized, so the worst element is not half a step. These
        // are the largest |error| / amax seen on gaussian rows (0.34, 0.21, 0.085, 0.065, 0.043)
        // with some margin.
        GgmlType::Q2_K => amax * 0.45,
        GgmlType::Q3_K => amax * 0.27,
        GgmlType::Q4_K => amax * 0.11,
        GgmlType::Q5_K => amax * 0.085,
        GgmlType::Q6_K => amax * 0.056,
        // MXFP4: scale s = 2^floor(log2 amax) / 4, values {0..6} x s in steps of at most 2s;
        // amax up to 8s is clipped to 6s: at most 2s <= amax / 2.
        GgmlType::MXFP4 => amax * 0.5,
        // OCP MXFP8 saturates: amax / 2^X lies in [256, 512) and 448 is the largest element, so
        // the top of a block loses up to amax / 8; elsewhere half a 3-bit mantissa step (1/16).
        GgmlType::MXFP8 => amax / 8.0 * 1.001,
        GgmlType::INT8_PC | GgmlType::W8A8 => amax / 127.0 * 0.5 * s,
        // Half a step, plus f32 rounding of `x * id` and `q * d` (each 2^-24 of up to amax).
        GgmlType::INT16_PC => amax / 32767.0 * 0.5 + amax * 2.0 * 2f32.powi(-24),
        // E4M3 per row: half a 3-bit mantissa step of the row's largest value.
        GgmlType::FP8_PC => amax / 16.0 * s,
        // The widest gap between NF4 levels is 0.304 of the f16 absmax.
        GgmlType::NF4 => amax * 0.153,
        GgmlType::INT4_G128 => range / 15.0 * 0.5 * s + amax * 4e-3,
    }
}

#[test]
fn round_trip_within_named_bounds() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let normal = Normal::new(0.0f32, 1.0).unwrap();
    for spec in llmopt_tensor::FORMATS.iter().filter(|s| s.from_f32.is_some()) {
        let ty = spec.ty;
        let n = 256 * 4;
        for scale in [1e-3f32, 1.0, 300.0] {
            let x: Vec<f32> = (0..n).map(|_| normal.sample(&mut rng) * scale).collect();
            let mut q = vec![0u8; ty.row_bytes(n).unwrap()];
            ty.from_f32(&x, &mut q).unwrap();
            let mut y = vec![0.0f32; n];
            ty.to_f32(&q, &mut y).unwrap();
            // A per-channel format scales by the whole row.
            let bl = if spec.row_header > 0 { n } else { spec.block_len.max(32) };
            for (xb, yb) in x.chunks(bl).zip(y.chunks(bl)) {
                let b = bound(ty, xb);
                for (a, c) in xb.iter().zip(yb) {
                    assert!((a - c).abs() <= b, "{ty} scale {scale}: {a} -> {c}, bound {b}");
                }
            }
        }
    }
}

#[test]
fn edge_blocks_zero_negative_huge() {
    for spec in llmopt_tensor::FORMATS.iter().filter(|s| s.from_f32.is_some()) {
        let ty = spec.ty;
        let n = spec.block_len.max(256);
        let cases: [(&str, Vec<f32>); 4] = [
            ("zero", vec![0.0; n]),
            ("negative", (0..n).map(|i| -1.0 - i as f32 * 0.01).collect()),
            ("constant", vec![-3.25; n]),
            ("huge", (0..n).map(|i| if i % 7 == 0 { -6.0e4 } else { i as f32 }).collect()),
        ];
        for (what, x) in cases {
            let mut q = vec![0xAAu8; ty.row_bytes(n).unwrap()];
            ty.from_f32(&x, &mut q).unwrap();
            let mut y = vec![f32::NAN; n];
            ty.to_f32(&q, &mut y).unwrap();
            // A per-channel format scales by the whole row.
            let bl = if spec.row_header > 0 { n } else { spec.block_len.max(32) };
            for (xb, yb) in x.chunks(bl).zip(y.chunks(bl)) {
                let b = bound(ty, xb);
                for (a, c) in xb.iter().zip(yb) {
                    assert!(c.is_finite(), "{ty} {what}: {a} decoded to {c}");
                    assert!((a - c).abs() <= b.max(0.0), "{ty} {what}: {a} -> {c} (bound {b})");
                }
            }
            if what == "zero" {
                assert!(y.iter().all(|v| *v == 0.0), "{ty}: zero block must decode to zeros");
                if ty == GgmlType::Q8_K {
                    assert!(q.iter().all(|b| *b == 0), "Q8_K zero block: d, qs and bsums zero");
                }
            }
        }
    }
}

#[test]
fn q8_0_rounds_half_away_from_zero_like_roundf() {
    // amax 127 -> d = 1, id = 1: the scaled values are exactly the inputs.
    let mut x = [0.0f32; 32];
    x[0] = 127.0;
    x[1] = 0.5;
    x[2] = -0.5;
    x[3] = 2.5;
    x[4] = -2.5;
    let mut q = [0u8; 34];
    GgmlType::Q8_0.from_f32(&x, &mut q).unwrap();
    assert_eq!(&q[2..7], &[127, 1, (-1i8) as u8, 3, (-3i8) as u8]);
}

#[test]
fn q8_k_bsums_and_scale() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let x: Vec<f32> = (0..256).map(|_| rng.random_range(-2.0f32..2.0)).collect();
    let mut q = vec![0u8; 292];
    GgmlType::Q8_K.from_f32(&x, &mut q).unwrap();
    for j in 0..16 {
        let s: i32 = q[4 + 16 * j..20 + 16 * j].iter().map(|&b| i32::from(b as i8)).sum();
        assert_eq!(i16::from_le_bytes([q[260 + 2 * j], q[261 + 2 * j]]) as i32, s);
    }
    // The element of largest magnitude maps to -127 (ggml scales by -127 / max).
    let imax = (0..256).max_by(|&a, &b| x[a].abs().total_cmp(&x[b].abs())).unwrap();
    assert_eq!(q[4 + imax] as i8, -127);
}

#[test]
fn checked_entry_points_report_lengths() {
    let mut out = vec![0.0f32; 32];
    assert_eq!(
        GgmlType::Q4_0.to_f32(&[0u8; 17], &mut out),
        Err(TensorError::LengthMismatch {
            what: "quantized source",
            expected: 18,
            found: 17,
            unit: "bytes"
        })
    );
    assert!(matches!(
        GgmlType::Q4_K.from_f32(&[0.0; 256], &mut [0u8; 143]),
        Err(TensorError::LengthMismatch { expected: 144, found: 143, .. })
    ));
    assert_eq!(
        GgmlType::Q4_K.quantize_row_weighted(&[0.0; 256], &[1.0; 255], &mut [0u8; 144]),
        Err(TensorError::LengthMismatch {
            what: "importance weights",
            expected: 256,
            found: 255,
            unit: "elements"
        })
    );
    assert!(matches!(
        GgmlType::Q4_0.quantize_row_weighted(&[0.0; 48], &[1.0; 48], &mut [0u8; 36]),
        Err(TensorError::NotBlockMultiple { .. })
    ));
    assert!(matches!(
        GgmlType::Q8_0.to_f32(&[0u8; 34], &mut [0.0; 33]),
        Err(TensorError::NotBlockMultiple { .. })
    ));
}

#[test]
fn w8a8_rows_carry_their_quant_sum_and_int8_pc_values() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let normal = Normal::new(0.0f32, 1.0).unwrap();
    for n in [32usize, 576, 896] {
        let x: Vec<f32> = (0..n).map(|_| normal.sample(&mut rng)).collect();
        let mut w = vec![0u8; GgmlType::W8A8.row_bytes(n).unwrap()];
        let mut p = vec![0u8; GgmlType::INT8_PC.row_bytes(n).unwrap()];
        assert_eq!(w.len(), 8 + n);
        GgmlType::W8A8.from_f32(&x, &mut w).unwrap();
        GgmlType::INT8_PC.from_f32(&x, &mut p).unwrap();
        // Same scale and quants as INT8_PC; the sum in bytes 4..8.
        assert_eq!(w[..4], p[..4]);
        assert_eq!(w[8..], p[4..]);
        let sum: i32 = w[8..].iter().map(|&q| i32::from(q as i8)).sum();
        assert_eq!(i32::from_le_bytes([w[4], w[5], w[6], w[7]]), sum);
        assert_ne!(sum, 0);
        let (mut a, mut b) = (vec![0f32; n], vec![0f32; n]);
        GgmlType::W8A8.to_f32(&w, &mut a).unwrap();
        GgmlType::INT8_PC.to_f32(&p, &mut b).unwrap();
        assert_eq!(a, b);
    }
}

#[test]
fn w8a16_is_q8_0s_bytes_and_int16_pc_rows_round_half_to_even() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    let normal = Normal::new(0.0f32, 1.0).unwrap();
    for n in [32usize, 576, 896] {
        let x: Vec<f32> = (0..n).map(|_| normal.sample(&mut rng)).collect();
        let (mut w, mut q) = (vec![0u8; n / 32 * 34], vec![0u8; n / 32 * 34]);
        GgmlType::W8A16.from_f32(&x, &mut w).unwrap();
        GgmlType::Q8_0.from_f32(&x, &mut q).unwrap();
        assert_eq!(w, q);
        let mut a = vec![0u8; GgmlType::INT16_PC.row_bytes(n).unwrap()];
        assert_eq!(a.len(), 4 + 2 * n);
        GgmlType::INT16_PC.from_f32(&x, &mut a).unwrap();
        let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert_eq!(f32::from_le_bytes([a[0], a[1], a[2], a[3]]), amax / 32767.0);
        let q: Vec<i16> = a[4..].chunks(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
        assert_eq!(q.iter().map(|v| v.unsigned_abs()).max(), Some(32767), "amax takes the top");
        for (&v, &qi) in x.iter().zip(&q) {
            assert_eq!(f32::from(qi), (v * (32767.0 / amax)).round_ties_even());
        }
    }
    // Ties go to even: 0.5 and 1.5 steps of a row whose largest value is 32767 steps.
    let mut x = vec![0f32; 32];
    (x[0], x[1], x[2]) = (32767.0, 0.5, 1.5);
    let mut a = vec![0u8; 4 + 64];
    GgmlType::INT16_PC.from_f32(&x, &mut a).unwrap();
    assert_eq!((a[6], a[8]), (0, 2));
    // An all-zero row: scale 0, quants 0 (no division by zero).
    GgmlType::INT16_PC.from_f32(&[0.0; 32], &mut a).unwrap();
    assert!(a.iter().all(|&b| b == 0));
}

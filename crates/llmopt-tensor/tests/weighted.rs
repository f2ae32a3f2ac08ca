//! Importance-weighted encoding beyond byte equality with ggml (that is `ggml_quants.rs`): the
//! importances must be used sensibly, and odd rows must still decode near the data.

use llmopt_tensor::{GgmlType, FORMATS};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

/// ggml's weighted formats, then llmopt's weighted scale searches (MXFP4's is ours too: ggml
/// encodes MXFP4 without importances).
const WEIGHTED: [GgmlType; 13] = {
    use GgmlType::*;
    [Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, MXFP4, MXFP8, NF4, INT4_G128]
};

fn encode(ty: GgmlType, x: &[f32], w: Option<&[f32]>) -> Vec<u8> {
    let mut q = vec![0u8; ty.row_bytes(x.len()).unwrap()];
    match w {
        Some(w) => ty.quantize_row_weighted(x, w, &mut q).unwrap(),
        None => ty.from_f32(x, &mut q).unwrap(),
    }
    q
}

fn round_trip(ty: GgmlType, x: &[f32], w: Option<&[f32]>) -> Vec<f32> {
    let mut y = vec![f32::NAN; x.len()];
    ty.to_f32(&encode(ty, x, w), &mut y).unwrap();
    y
}

/// `sum w (x - y)^2 / sum w`, in f64.
fn weighted_mse(x: &[f32], y: &[f32], w: &[f32]) -> f64 {
    let num: f64 =
        x.iter().zip(y).zip(w).map(|((a, b), w)| f64::from(*w) * f64::from(a - b).powi(2)).sum();
    num / w.iter().map(|&w| f64::from(w)).sum::<f64>()
}

fn gaussian_rows(rng: &mut StdRng, rows: usize, cols: usize) -> Vec<Vec<f32>> {
    let normal = Normal::new(0.0f32, 1.0).unwrap();
    (0..rows).map(|_| (0..cols).map(|_| normal.sample(rng)).collect()).collect()
}

/// Importances shaped like an imatrix: most small, a few columns 100x the rest.
fn skewed_importances(rng: &mut StdRng, cols: usize) -> Vec<f32> {
    (0..cols)
        .map(|_| {
            let u: f32 = rng.random_range(0.0..1.0);
            u * u * u * u * 100.0 + 0.01
        })
        .collect()
}

#[test]
fn table_has_weighted_encoders_exactly_where_listed() {
    for spec in &FORMATS {
        assert_eq!(spec.from_f32_weighted.is_some(), WEIGHTED.contains(&spec.ty), "{}", spec.ty);
    }
}

#[test]
fn uniform_importances_do_no_worse_than_the_reference() {
    // Measured mean-square ratios 0.80 (Q4_1) to 0.98 (Q4_K): the weighted search is wider.
    let mut rng = StdRng::seed_from_u64(11);
    let rows = gaussian_rows(&mut rng, 16, 1024);
    let ones = vec![1.0f32; 1024];
    for ty in WEIGHTED {
        let (mut reference, mut uniform) = (0.0, 0.0);
        for x in &rows {
            reference += weighted_mse(x, &round_trip(ty, x, None), &ones);
            uniform += weighted_mse(x, &round_trip(ty, x, Some(&ones)), &ones);
        }
        assert!(
            uniform <= reference,
            "{ty}: uniform importances {uniform} > reference {reference}"
        );
    }
}

#[test]
fn importances_lower_the_error_where_they_are_large() {
    // Measured importance-weighted mean-square ratios 0.56 (Q2_K) to 0.77 (Q6_K).
    let mut rng = StdRng::seed_from_u64(12);
    let rows = gaussian_rows(&mut rng, 16, 1024);
    let imp = skewed_importances(&mut rng, 1024);
    for ty in WEIGHTED {
        let (mut reference, mut weighted) = (0.0, 0.0);
        for x in &rows {
            reference += weighted_mse(x, &round_trip(ty, x, None), &imp);
            weighted += weighted_mse(x, &round_trip(ty, x, Some(&imp)), &imp);
        }
        let ratio = weighted / reference;
        // The MX formats' levels are fixed once their power-of-two scale is: the weighted search
        // has only the scale's two or three candidates (measured 0.933 MXFP4, 0.844 MXFP8).
        let limit = match ty {
            GgmlType::MXFP4 => 0.95,
            GgmlType::MXFP8 => 0.9,
            _ => 0.85,
        };
        assert!(
            ratio <= limit,
            "{ty}: importance-weighted error only {ratio:.3} of the reference's"
        );
    }
}

#[test]
fn only_relative_importances_matter() {
    // Scaling by a power of two is exact in f32, and every decision compares ratios of sums.
    let mut rng = StdRng::seed_from_u64(13);
    let x = &gaussian_rows(&mut rng, 1, 512)[0];
    let imp = skewed_importances(&mut rng, 512);
    for ty in WEIGHTED {
        let base = encode(ty, x, Some(&imp));
        for k in [0.25f32, 4.0] {
            let scaled: Vec<f32> = imp.iter().map(|w| w * k).collect();
            assert_eq!(encode(ty, x, Some(&scaled)), base, "{ty}: importances x {k}");
        }
    }
}

#[test]
fn types_without_a_weighted_encoder_ignore_importances() {
    use GgmlType::*;
    let mut rng = StdRng::seed_from_u64(14);
    let x = &gaussian_rows(&mut rng, 1, 256)[0];
    let imp = skewed_importances(&mut rng, 256);
    for ty in [F32, F16, BF16, Q8_0, Q8_1, Q8_K] {
        assert_eq!(encode(ty, x, Some(&imp)), encode(ty, x, None), "{ty}");
    }
}

/// Largest |error| / block amax allowed for the weighted path on the rows below: the worst seen
/// (in brackets) with margin. Low-importance values may be clipped, so these are not half a step.
fn weighted_bound(ty: GgmlType) -> f32 {
    use GgmlType::*;
    match ty {
        Q4_0 => 0.15,  // (0.119)
        Q4_1 => 0.1,   // (0.078)
        Q5_0 => 0.06,  // (0.045)
        Q5_1 => 0.045, // (0.034)
        Q2_K => 0.42,  // (0.332)
        Q3_K => 0.2,   // (0.150)
        Q4_K => 0.075, // (0.055)
        Q5_K => 0.04,  // (0.028)
        Q6_K => 0.025, // (0.016)
        MXFP4 => 0.5,
        MXFP8 => 0.13,
        NF4 => 0.3,
        INT4_G128 => 0.2,
        _ => unreachable!("{ty} has no weighted encoder"),
    }
}

#[test]
fn odd_rows_round_trip_near_the_data() {
    let mut rng = StdRng::seed_from_u64(15);
    let n = 512;
    let normal = Normal::new(0.0f32, 1.0).unwrap();
    let rows: [(&str, Vec<f32>); 6] = [
        ("zero", vec![0.0; n]),
        ("negative", (0..n).map(|i| -1.0 - i as f32 * 0.01).collect()),
        ("constant", vec![-3.25; n]),
        (
            "one huge",
            (0..n).map(|i| if i == 300 { 3.0e4 } else { normal.sample(&mut rng) * 0.01 }).collect(),
        ),
        ("tiny", (0..n).map(|_| normal.sample(&mut rng) * 1e-4).collect()),
        ("gaussian", (0..n).map(|_| normal.sample(&mut rng)).collect()),
    ];
    let imp: Vec<f32> = (0..n).map(|_| rng.random_range(0.1f32..10.0)).collect();
    for ty in WEIGHTED {
        let bl = ty.spec().block_len;
        for (what, x) in &rows {
            let y = round_trip(ty, x, Some(&imp));
            assert!(y.iter().all(|v| v.is_finite()), "{ty} {what}: non-finite output");
            if *what == "zero" {
                assert!(y.iter().all(|v| *v == 0.0), "{ty}: zero row must decode to zeros");
            }
            for (xb, yb) in x.chunks(bl).zip(y.chunks(bl)) {
                let amax = xb.iter().fold(0.0f32, |a, v| a.max(v.abs()));
                let err = xb.iter().zip(yb).fold(0.0f32, |a, (p, q)| a.max((p - q).abs()));
                // Tiny rows get f16-subnormal super-scales: a coarse d, but never a blow-up.
                let bound = if *what == "tiny" { 0.5 } else { weighted_bound(ty) };
                assert!(err <= bound * amax, "{ty} {what}: error {err}, amax {amax}");
            }
        }
    }
}

#[test]
fn non_finite_values_and_importances_do_not_panic() {
    // ggml's quantizers do not check their input; ours must at least never panic on it.
    let mut x: Vec<f32> = (0..512).map(|i| (i as f32 * 0.37).sin()).collect();
    x[3] = f32::NAN;
    x[40] = f32::INFINITY;
    x[300] = f32::NEG_INFINITY;
    x[301] = f32::MAX;
    let mut imp = vec![1.0f32; 512];
    imp[7] = f32::NAN;
    imp[8] = -2.0;
    imp[9] = f32::INFINITY;
    for spec in FORMATS.iter().filter(|s| s.from_f32.is_some()) {
        let ty = spec.ty;
        let n = spec.block_len.max(256) * 2;
        round_trip(ty, &x[..n], None);
        round_trip(ty, &x[..n], Some(&imp[..n]));
    }
}

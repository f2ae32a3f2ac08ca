//! Element-wise and row-wise steps of the decoder (norms, rope, gated activations), written to follow
//! ggml's arithmetic (f64 sum in RMSNorm, rope angles advanced by repeated multiplication) so that
//! results track llama.cpp's closely; SwiGLU is the kernels crate's ([`act::swiglu`], vectorized).

use half::f16;
use llmopt_kernels::{act, Isa};

use crate::arch::{Activation, RopeStyle};

/// In-place RMSNorm of each `width`-wide row of `x`, multiplied by `weight`.
pub fn rms_norm_rows(x: &mut [f32], width: usize, weight: &[f32], eps: f32) {
    debug_assert_eq!(weight.len(), width);
    for row in x.chunks_exact_mut(width) {
        rms_norm_row(row, weight, eps);
    }
}

/// RMSNorm of one row from `src` into `dst`, multiplied by `weight`.
pub fn rms_norm_into(src: &[f32], dst: &mut [f32], weight: &[f32], eps: f32) {
    let scale = rms_scale(src, eps);
    for ((d, &s), &w) in dst.iter_mut().zip(src).zip(weight) {
        *d = (s * scale) * w;
    }
}

fn rms_scale(row: &[f32], eps: f32) -> f32 {
    let sum: f64 = row.iter().map(|&v| f64::from(v * v)).sum();
    let mean = (sum / row.len() as f64) as f32;
    1.0 / (mean + eps).sqrt()
}

/// In-place RMSNorm of one row.
pub fn rms_norm_row(row: &mut [f32], weight: &[f32], eps: f32) {
    let scale = rms_scale(row, eps);
    for (v, &w) in row.iter_mut().zip(weight) {
        *v = (*v * scale) * w;
    }
}

/// Rotary embedding tables for one position: `cos[i]`, `sin[i]` for pair `i` of `rope_dim / 2`.
pub fn rope_angles(
    pos: usize,
    base: f32,
    freq_scale: f32,
    rope_dim: usize,
    cos: &mut [f32],
    sin: &mut [f32],
) {
    let theta_scale = base.powf(-2.0 / rope_dim as f32);
    let mut theta = pos as f32;
    for i in 0..rope_dim / 2 {
        let t = theta * freq_scale;
        cos[i] = t.cos();
        sin[i] = t.sin();
        theta *= theta_scale;
    }
}

/// Rotates the first `rope_dim` dimensions of each `head_dim`-wide head in `row`.
pub fn rope_apply(row: &mut [f32], head_dim: usize, style: RopeStyle, cos: &[f32], sin: &[f32]) {
    let half = cos.len();
    for head in row.chunks_exact_mut(head_dim) {
        match style {
            RopeStyle::Adjacent => {
                for i in 0..half {
                    let (a, b) = (head[2 * i], head[2 * i + 1]);
                    head[2 * i] = a * cos[i] - b * sin[i];
                    head[2 * i + 1] = a * sin[i] + b * cos[i];
                }
            }
            RopeStyle::Halves => {
                for i in 0..half {
                    let (a, b) = (head[i], head[i + half]);
                    head[i] = a * cos[i] - b * sin[i];
                    head[i + half] = a * sin[i] + b * cos[i];
                }
            }
        }
    }
}

/// `gate[i] = act(gate[i]) * up[i]`, with ggml's arithmetic: SiLU through [`act::swiglu`], GELU
/// evaluated on the f16-rounded input and rounded to f16 (ggml looks it up in an f16 table, and
/// so do we: [`gelu_table`]).
pub fn gated_activation(gate: &mut [f32], up: &[f32], act: Activation) {
    match act {
        Activation::Silu => act::swiglu(Isa::best(), gate, up),
        Activation::GeluTanh => {
            let table = gelu_table();
            for (g, &u) in gate.iter_mut().zip(up) {
                let x = *g;
                let y = if x <= -10.0 {
                    0.0
                } else if x >= 10.0 {
                    x
                } else {
                    table[usize::from(f16::from_f32(x).to_bits())].to_f32()
                };
                *g = y * u;
            }
        }
    }
}

/// `gelu_tanh_f16` of every f16 value, indexed by its bits (built once, 128 KiB), as ggml's
/// `ggml_table_gelu_f16`.
pub fn gelu_table() -> &'static [f16] {
    static TABLE: std::sync::OnceLock<Vec<f16>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        (0..=u16::MAX).map(|b| f16::from_f32(gelu_tanh(f16::from_bits(b).to_f32()))).collect()
    })
}

/// GELU as ggml's f16 table gives it: 0 below -10, identity above 10, else gelu of the f16 input,
/// rounded to f16.
pub fn gelu_tanh_f16(x: f32) -> f32 {
    if x <= -10.0 {
        0.0
    } else if x >= 10.0 {
        x
    } else {
        let xh = f16::from_f32(x).to_f32();
        f16::from_f32(gelu_tanh(xh)).to_f32()
    }
}

/// GELU, tanh approximation (as `gelu_pytorch_tanh`).
pub fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6; // the f32 nearest sqrt(2/pi), as ggml's constant
    const COEF_A: f32 = 0.044_715;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + COEF_A * x * x)).tanh())
}

/// `dst += src`.
pub fn add_assign(dst: &mut [f32], src: &[f32]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d += s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llmopt_kernels::act::silu;

    #[test]
    fn rms_norm_gives_unit_rms() {
        let mut x: Vec<f32> = (0..64).map(|i| (i as f32 - 20.0) * 0.37).collect();
        let w = vec![1.0; 64];
        rms_norm_row(&mut x, &w, 0.0);
        let rms = (x.iter().map(|v| v * v).sum::<f32>() / 64.0).sqrt();
        assert!((rms - 1.0).abs() < 1e-5, "rms {rms}");
    }

    #[test]
    fn rope_preserves_norm_and_is_identity_at_zero() {
        let mut cos = vec![0.0; 32];
        let mut sin = vec![0.0; 32];
        rope_angles(0, 10_000.0, 1.0, 64, &mut cos, &mut sin);
        let orig: Vec<f32> = (0..128).map(|i| (i as f32).sin()).collect();
        for style in [RopeStyle::Adjacent, RopeStyle::Halves] {
            let mut x = orig.clone();
            rope_apply(&mut x, 64, style, &cos, &sin);
            assert_eq!(x, orig);
        }
        rope_angles(37, 10_000.0, 1.0, 64, &mut cos, &mut sin);
        for style in [RopeStyle::Adjacent, RopeStyle::Halves] {
            let mut x = orig.clone();
            rope_apply(&mut x, 64, style, &cos, &sin);
            let n0: f32 = orig[..64].iter().map(|v| v * v).sum();
            let n1: f32 = x[..64].iter().map(|v| v * v).sum();
            assert!((n0 - n1).abs() < 1e-3 * n0);
            assert_ne!(x, orig);
        }
    }

    #[test]
    fn rope_rotates_relative_positions_alike() {
        // <rope(q, m), rope(k, n)> depends only on m - n.
        let q: Vec<f32> = (0..64).map(|i| (i as f32 * 0.3).cos()).collect();
        let k: Vec<f32> = (0..64).map(|i| (i as f32 * 0.7).sin()).collect();
        let dot_at = |m: usize, n: usize| {
            let (mut c, mut s) = (vec![0.0; 32], vec![0.0; 32]);
            let (mut a, mut b) = (q.clone(), k.clone());
            rope_angles(m, 10_000.0, 1.0, 64, &mut c, &mut s);
            rope_apply(&mut a, 64, RopeStyle::Halves, &c, &s);
            rope_angles(n, 10_000.0, 1.0, 64, &mut c, &mut s);
            rope_apply(&mut b, 64, RopeStyle::Halves, &c, &s);
            a.iter().zip(&b).map(|(x, y)| x * y).sum::<f32>()
        };
        assert!((dot_at(10, 3) - dot_at(107, 100)).abs() < 1e-3);
    }

    #[test]
    fn fast_activation_paths_equal_the_scalar_definitions() {
        let gate: Vec<f32> = (0..4000).map(|i| (i as f32 - 2000.0) * 0.0123).collect();
        let up: Vec<f32> = (0..4000).map(|i| ((i * 7) as f32).sin()).collect();
        let mut g = gate.clone();
        gated_activation(&mut g, &up, Activation::Silu);
        for ((y, x), u) in g.iter().zip(&gate).zip(&up) {
            assert_eq!(y.to_bits(), (silu(*x) * u).to_bits(), "silu({x})");
        }
        let mut g = gate.clone();
        gated_activation(&mut g, &up, Activation::GeluTanh);
        for ((y, x), u) in g.iter().zip(&gate).zip(&up) {
            assert_eq!(y.to_bits(), (gelu_tanh_f16(*x) * u).to_bits(), "gelu({x})");
        }
    }

    #[test]
    fn activations_match_known_values() {
        assert!((gelu_tanh_f16(1.0) - 0.841_192).abs() < 1e-3);
        assert_eq!(gelu_tanh_f16(-11.0), 0.0);
        assert_eq!(gelu_tanh_f16(12.5), 12.5);
        assert!((silu(1.0) - 0.731_058_6).abs() < 1e-6);
        assert!((gelu_tanh(1.0) - 0.841_192).abs() < 1e-5);
        assert_eq!(gelu_tanh(0.0), 0.0);
    }
}

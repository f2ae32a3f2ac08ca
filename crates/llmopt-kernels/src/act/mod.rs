//! Gated activations of the feed-forward block with ggml's arithmetic: SwiGLU `silu(gate) * up`,
//! `e^x` by the range reduction and polynomial of ggml's vector `expf`.
//!
//! The scalar functions are the reference. The AVX2+FMA path runs the same operations on 8 lanes
//! (the same fused multiply-adds, an IEEE division), so it gives the same bits (tested), as does
//! llama.cpp's `ggml_vec_swiglu_f32`.

#[cfg(target_arch = "x86_64")]
mod avx2;

use crate::Isa;

/// e^x in f32 by the range reduction and degree-5 polynomial of ggml's `ggml_v_expf` (ARM's
/// optimized-routines algorithm, error under 1.5 ulp); the same operations and fused multiply-adds,
/// so results are bit-identical to ggml's vector code.
#[inline(always)]
pub fn expf_poly(x: f32) -> f32 {
    let f = f32::from_bits;
    let r = f(0x4b40_0000); // 0x1.8p23
    let z = x.mul_add(f(0x3fb8_aa3b), r); // log2(e)
    let n = z - r;
    let b = (-n).mul_add(f(0x35bf_be8e), (-n).mul_add(f(0x3f31_7200), x)); // ln2 lo, hi
    let e = z.to_bits() << 23;
    let k = f(e.wrapping_add(1f32.to_bits()));
    let u = b * b;
    let j = f(0x3c07_2010)
        .mul_add(b, f(0x3d2b_9f17))
        .mul_add(u, f(0x3e2a_af33).mul_add(b, f(0x3eff_fedb)))
        .mul_add(u, f(0x3f7f_fff6) * b);
    if n.abs() <= 126.0 {
        return j.mul_add(k, k);
    }
    let g: u32 = if n <= 0.0 { 0x8200_0000 } else { 0 };
    let s1 = f(g.wrapping_add(0x7f00_0000));
    let s2 = f(e.wrapping_sub(g));
    if n.abs() > 192.0 {
        s1 * s1
    } else {
        s2.mul_add(j, s2) * s1
    }
}

/// SiLU: x / (1 + e^-x), with e^x from [`expf_poly`] (ggml's vector SiLU).
#[inline(always)]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + expf_poly(0.0 - x))
}

/// `gate[i] = silu(gate[i]) * up[i]` for `i < gate.len()` (`up` at least as long).
pub fn swiglu(isa: Isa, gate: &mut [f32], up: &[f32]) {
    assert!(up.len() >= gate.len(), "up ({}) shorter than gate ({})", up.len(), gate.len());
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx2 && Isa::Avx2.is_available() {
        // SAFETY: the CPU supports AVX2 and FMA (checked just above); lengths asserted.
        return unsafe { avx2::swiglu(gate, up) };
    }
    let _ = isa;
    swiglu_ref(gate, up);
}

/// The reference [`swiglu`].
fn swiglu_ref(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = silu(*g) * u;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values spread over `[-scale, scale]`, a few exact specials mixed in.
    fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
        let mut s = seed | 1;
        (0..n)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                match i % 97 {
                    13 => 0.0,
                    29 => -0.0,
                    _ => ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale,
                }
            })
            .collect()
    }

    #[test]
    fn polynomial_exp_is_within_two_ulp_of_libm() {
        for i in -2000..2000 {
            let x = i as f32 * 0.0437;
            let (a, b) = (expf_poly(x), x.exp());
            let ulp = (a.to_bits() as i64 - b.to_bits() as i64).abs();
            assert!(ulp <= 2, "x={x}: {a} vs {b} ({ulp} ulp)");
        }
        assert_eq!(expf_poly(-200.0), 0.0);
        assert_eq!(expf_poly(100.0), f32::INFINITY);
        assert!((expf_poly(-100.0) - (-100f32).exp()).abs() <= f32::MIN_POSITIVE);
        assert!((silu(1.0) - 0.731_058_6).abs() < 1e-6);
    }

    #[test]
    fn swiglu_paths_give_the_reference_bits() {
        // Odd lengths (a scalar tail), and inputs past both of the polynomial's range limits
        // (|n| > 126 and > 192: e^-x under- and overflowing), where the vector path blends.
        for (n, scale) in [(1, 3.0), (7, 3.0), (8, 20.0), (37, 100.0), (1536, 8.0), (4099, 300.0)] {
            let gate = values(n, n as u64 * 31 + 7, scale);
            let up = values(n, n as u64 * 17 + 3, 2.0);
            let mut want = gate.clone();
            swiglu_ref(&mut want, &up);
            for isa in [Isa::Scalar, Isa::best()] {
                let mut got = gate.clone();
                swiglu(isa, &mut got, &up);
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert_eq!(g.to_bits(), w.to_bits(), "{isa:?} n={n} i={i} x={}", gate[i]);
                }
            }
        }
    }
}

//! AVX2+FMA SwiGLU: ggml's `ggml_v_expf` and `ggml_v_silu` on 8 lanes, the same operations as the
//! scalar reference, lane by lane, so the same bits.

use std::arch::x86_64::*;

use super::silu;

/// [`super::expf_poly`] on 8 lanes: the polynomial for all, and where some lane's `|n| > 126`
/// the two-scale result (or `s1 * s1` past 192) blended in for those lanes.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn expf8(x: __m256) -> __m256 {
    let c = |b: u32| _mm256_set1_ps(f32::from_bits(b));
    let r = c(0x4b40_0000);
    let z = _mm256_fmadd_ps(x, c(0x3fb8_aa3b), r);
    let n = _mm256_sub_ps(z, r);
    let b = _mm256_fnmadd_ps(n, c(0x35bf_be8e), _mm256_fnmadd_ps(n, c(0x3f31_7200), x));
    let e = _mm256_slli_epi32::<23>(_mm256_castps_si256(z));
    let k = _mm256_castsi256_ps(_mm256_add_epi32(e, _mm256_castps_si256(_mm256_set1_ps(1.0))));
    let u = _mm256_mul_ps(b, b);
    let j = _mm256_fmadd_ps(
        _mm256_fmadd_ps(
            _mm256_fmadd_ps(c(0x3c07_2010), b, c(0x3d2b_9f17)),
            u,
            _mm256_fmadd_ps(c(0x3e2a_af33), b, c(0x3eff_fedb)),
        ),
        u,
        _mm256_mul_ps(c(0x3f7f_fff6), b),
    );
    let fast = _mm256_fmadd_ps(j, k, k);
    let abs_n = _mm256_andnot_ps(_mm256_set1_ps(-0.0), n);
    let big = _mm256_cmp_ps::<_CMP_GT_OQ>(abs_n, _mm256_set1_ps(126.0));
    if _mm256_movemask_ps(big) == 0 {
        return fast;
    }
    let neg = _mm256_cmp_ps::<_CMP_LE_OQ>(n, _mm256_setzero_ps());
    let g = _mm256_and_si256(_mm256_castps_si256(neg), _mm256_set1_epi32(0x8200_0000u32 as i32));
    let s1 = _mm256_castsi256_ps(_mm256_add_epi32(g, _mm256_set1_epi32(0x7f00_0000)));
    let s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, g));
    let huge = _mm256_cmp_ps::<_CMP_GT_OQ>(abs_n, _mm256_set1_ps(192.0));
    let scaled = _mm256_mul_ps(_mm256_fmadd_ps(s2, j, s2), s1);
    let wide = _mm256_blendv_ps(scaled, _mm256_mul_ps(s1, s1), huge);
    _mm256_blendv_ps(fast, wide, big)
}

/// `gate[i] = silu(gate[i]) * up[i]`, 8 at a time, the tail by the scalar definition.
///
/// # Safety
/// AVX2 + FMA; `up.len() >= gate.len()`.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn swiglu(gate: &mut [f32], up: &[f32]) {
    let (one, zero) = (_mm256_set1_ps(1.0), _mm256_setzero_ps());
    let n8 = gate.len() / 8 * 8;
    for (g, u) in gate[..n8].chunks_exact_mut(8).zip(up.chunks_exact(8)) {
        // SAFETY: `g` and `u` are 8 floats each; unaligned loads and store.
        unsafe {
            let x = _mm256_loadu_ps(g.as_ptr());
            let e = expf8(_mm256_sub_ps(zero, x));
            let s = _mm256_div_ps(x, _mm256_add_ps(one, e));
            _mm256_storeu_ps(g.as_mut_ptr(), _mm256_mul_ps(s, _mm256_loadu_ps(u.as_ptr())));
        }
    }
    for (g, &u) in gate[n8..].iter_mut().zip(&up[n8..]) {
        *g = silu(*g) * u;
    }
}

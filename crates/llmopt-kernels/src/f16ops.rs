//! f16 vector steps of attention over an f16 KV cache, with ggml's exact arithmetic: a dot product
//! with 4 x 8 f32 FMA accumulators reduced in ggml's order, and accumulators stored back to f16 after
//! every fused multiply-add. The scalar versions compute the same lanes in the same order, so both
//! paths give bit-identical results (tested), and so does llama.cpp's CPU flash attention.

use half::f16;

use crate::Isa;

/// Elements per step of the ggml f16 loops (4 accumulators of 8 lanes).
const STEP: usize = 32;

/// `sum(a[i] * b[i])` as `ggml_vec_dot_f16` computes it.
pub fn dot_f16(isa: Isa, a: &[f16], b: &[f16]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx2 && Isa::Avx2.is_available() {
        // SAFETY: the CPU supports AVX2, FMA and F16C (checked just above).
        return unsafe { x86::dot_f16(a, b) };
    }
    let _ = isa;
    let np = a.len() & !(STEP - 1);
    let mut acc = [[0f32; 8]; 4];
    for i in (0..np).step_by(STEP) {
        for (j, lanes) in acc.iter_mut().enumerate() {
            for (l, s) in lanes.iter_mut().enumerate() {
                let k = i + j * 8 + l;
                *s = a[k].to_f32().mul_add(b[k].to_f32(), *s);
            }
        }
    }
    let mut sum = f64::from(reduce(acc));
    for k in np..a.len() {
        sum += f64::from(a[k].to_f32() * b[k].to_f32());
    }
    sum as f32
}

/// ggml's GGML_F32x8_REDUCE of four 8-lane accumulators.
fn reduce(x: [[f32; 8]; 4]) -> f32 {
    let a: [f32; 8] = std::array::from_fn(|l| x[0][l] + x[2][l]);
    let b: [f32; 8] = std::array::from_fn(|l| x[1][l] + x[3][l]);
    let c: [f32; 8] = std::array::from_fn(|l| a[l] + b[l]);
    let t0: [f32; 4] = std::array::from_fn(|l| c[l] + c[l + 4]);
    let t1 = [t0[0] + t0[1], t0[2] + t0[3]];
    t1[0] + t1[1]
}

/// `y[i] = f16(fma(x[i], v, y[i]))`, as `ggml_vec_mad_f16`.
pub fn mad_f16(isa: Isa, y: &mut [f16], x: &[f16], v: f32) {
    debug_assert_eq!(y.len(), x.len());
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx2 && Isa::Avx2.is_available() {
        // SAFETY: the CPU supports AVX2, FMA and F16C (checked just above).
        return unsafe { x86::mad_f16(y, x, v) };
    }
    let _ = isa;
    let np = y.len() & !(STEP - 1);
    for (yi, xi) in y[..np].iter_mut().zip(&x[..np]) {
        *yi = f16::from_f32(xi.to_f32().mul_add(v, yi.to_f32()));
    }
    for (yi, xi) in y[np..].iter_mut().zip(&x[np..]) {
        *yi = f16::from_f32(yi.to_f32() + xi.to_f32() * v);
    }
}

/// `y[i] = f16(y[i] * v)`, as `ggml_vec_scale_f16`.
pub fn scale_f16(isa: Isa, y: &mut [f16], v: f32) {
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx2 && Isa::Avx2.is_available() {
        // SAFETY: the CPU supports AVX2, FMA and F16C (checked just above).
        return unsafe { x86::scale_f16(y, v) };
    }
    let _ = isa;
    for yi in y.iter_mut() {
        *yi = f16::from_f32(yi.to_f32() * v);
    }
}

/// One query head `q` (f16) against the cached rows at byte offsets `offsets` (plus `kv_off`
/// elements: the head's place in a row), as ggml's `flash_attn_ext_f16_one_chunk`: per row an f16
/// dot scaled by `scale`, the f16 accumulator `acc` rescaled on a new maximum, the value row added
/// by [`mad_f16`]. Returns the softmax denominator. The loop runs inside one `#[target_feature]`
/// function on AVX2, so the steps inline: the same bits as calling them one by one.
#[allow(clippy::too_many_arguments)]
pub fn attend_head_f16(
    isa: Isa,
    q: &[f16],
    k: &[f16],
    v: &[f16],
    offsets: &[usize],
    kv_off: usize,
    scale: f32,
    acc: &mut [f16],
) -> f32 {
    let hd = q.len();
    assert!(acc.len() == hd);
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx2 && Isa::Avx2.is_available() {
        // SAFETY: the CPU supports AVX2, FMA and F16C (checked just above).
        return unsafe { x86::attend_head((q, k, v, offsets, kv_off, scale, acc)) };
    }
    let _ = isa;
    head_loop(
        (q, k, v, offsets, kv_off, scale, acc),
        |a, b| dot_f16(Isa::Scalar, a, b),
        |y, x, s| mad_f16(Isa::Scalar, y, x, s),
        |y, s| scale_f16(Isa::Scalar, y, s),
    )
}

/// The arguments of [`attend_head_f16`].
type HeadArgs<'a> = (&'a [f16], &'a [f16], &'a [f16], &'a [usize], usize, f32, &'a mut [f16]);

/// [`attend_head_f16`]'s loop over the given steps (inlined into each instruction set's caller).
#[inline(always)]
fn head_loop(
    (q, k, v, offsets, kv_off, scale, acc): HeadArgs<'_>,
    dot: impl Fn(&[f16], &[f16]) -> f32,
    mad: impl Fn(&mut [f16], &[f16], f32),
    rescale: impl Fn(&mut [f16], f32),
) -> f32 {
    let hd = q.len();
    let (mut m, mut l) = (f32::NEG_INFINITY, 0f32);
    for &off in offsets {
        // `off` counts bytes, two per f16.
        let base = off / 2 + kv_off;
        let s = dot(&k[base..base + hd], q) * scale;
        let (mut ms, mut vs) = (1f32, 1f32);
        if s > m {
            ms = (m - s).exp();
            m = s;
            rescale(acc, ms);
        } else {
            vs = (s - m).exp();
        }
        mad(acc, &v[base..base + hd], vs);
        l = l * ms + vs;
    }
    l
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use half::f16;

    use super::STEP;

    #[target_feature(enable = "avx2,fma,f16c")]
    fn load(s: &[f16], i: usize) -> __m256 {
        let s = &s[i..i + 8];
        // SAFETY: `s` holds 8 f16 values (16 bytes), read unaligned.
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(s.as_ptr().cast())) }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn store(d: &mut [f16], i: usize, v: __m256) {
        let d = &mut d[i..i + 8];
        // SAFETY: `d` has room for 8 f16 values (16 bytes), written unaligned.
        unsafe { _mm_storeu_si128(d.as_mut_ptr().cast(), _mm256_cvtps_ph::<0>(v)) }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    pub(super) fn dot_f16(a: &[f16], b: &[f16]) -> f32 {
        let np = a.len() & !(STEP - 1);
        let mut acc = [_mm256_setzero_ps(); 4];
        for i in (0..np).step_by(STEP) {
            for (j, s) in acc.iter_mut().enumerate() {
                *s = _mm256_fmadd_ps(load(a, i + j * 8), load(b, i + j * 8), *s);
            }
        }
        let x0 = _mm256_add_ps(_mm256_add_ps(acc[0], acc[2]), _mm256_add_ps(acc[1], acc[3]));
        let t0 = _mm_add_ps(_mm256_castps256_ps128(x0), _mm256_extractf128_ps::<1>(x0));
        let t1 = _mm_hadd_ps(t0, t0);
        let mut sum = f64::from(_mm_cvtss_f32(_mm_hadd_ps(t1, t1)));
        for k in np..a.len() {
            sum += f64::from(a[k].to_f32() * b[k].to_f32());
        }
        sum as f32
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    pub(super) fn mad_f16(y: &mut [f16], x: &[f16], v: f32) {
        let np = y.len() & !(STEP - 1);
        let vv = _mm256_set1_ps(v);
        for i in (0..np).step_by(8) {
            let r = _mm256_fmadd_ps(load(x, i), vv, load(y, i));
            store(y, i, r);
        }
        for k in np..y.len() {
            y[k] = f16::from_f32(y[k].to_f32() + x[k].to_f32() * v);
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn attend_head(args: super::HeadArgs<'_>) -> f32 {
        super::head_loop(
            args,
            |a, b| dot_f16(a, b),
            |y, x, s| mad_f16(y, x, s),
            |y, s| scale_f16(y, s),
        )
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    pub(super) fn scale_f16(y: &mut [f16], v: f32) {
        let np = y.len() & !7;
        let vv = _mm256_set1_ps(v);
        for i in (0..np).step_by(8) {
            let r = _mm256_mul_ps(load(y, i), vv);
            store(y, i, r);
        }
        for yi in &mut y[np..] {
            *yi = f16::from_f32(yi.to_f32() * v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(n: usize, salt: f32) -> Vec<f16> {
        (0..n).map(|i| f16::from_f32(((i as f32 + salt) * 0.731).sin() * 3.0)).collect()
    }

    #[test]
    fn simd_equals_scalar_bit_for_bit() {
        if !Isa::Avx2.is_available() {
            return; // the scalar path is the only one; nothing to compare (portable build)
        }
        for n in [8, 31, 32, 64, 67, 256] {
            let (a, b) = (vals(n, 0.5), vals(n, 9.0));
            assert_eq!(
                dot_f16(Isa::Scalar, &a, &b).to_bits(),
                dot_f16(Isa::Avx2, &a, &b).to_bits(),
                "dot n={n}"
            );
            let (mut y1, mut y2) = (vals(n, 3.0), vals(n, 3.0));
            for step in 0..20 {
                let v = 0.37 * step as f32 - 2.0;
                mad_f16(Isa::Scalar, &mut y1, &a, v);
                mad_f16(Isa::Avx2, &mut y2, &a, v);
                scale_f16(Isa::Scalar, &mut y1, 0.9);
                scale_f16(Isa::Avx2, &mut y2, 0.9);
            }
            assert_eq!(y1, y2, "mad/scale n={n}");
        }
    }

    #[test]
    fn attend_head_equals_the_steps_one_by_one() {
        let hd = 64;
        let (k, v) = (vals(40 * hd, 0.25), vals(40 * hd, 7.5));
        let q = vals(hd, 2.0);
        // Rows in a scattered order, one head at element offset 0 of 64-element rows.
        let offsets: Vec<usize> = (0..40).map(|i| ((i * 17) % 40) * hd * 2).collect();
        for isa in [Isa::Scalar, Isa::Avx2].into_iter().filter(|i| i.is_available()) {
            let mut want = vec![f16::ZERO; hd];
            let (mut m, mut l) = (f32::NEG_INFINITY, 0f32);
            for &off in &offsets {
                let base = off / 2;
                let s = dot_f16(isa, &k[base..base + hd], &q) * 0.125;
                let (mut ms, mut vs) = (1f32, 1f32);
                if s > m {
                    ms = (m - s).exp();
                    m = s;
                    scale_f16(isa, &mut want, ms);
                } else {
                    vs = (s - m).exp();
                }
                mad_f16(isa, &mut want, &v[base..base + hd], vs);
                l = l * ms + vs;
            }
            let mut got = vec![f16::ZERO; hd];
            let l2 = attend_head_f16(isa, &q, &k, &v, &offsets, 0, 0.125, &mut got);
            assert_eq!((got, l2.to_bits()), (want, l.to_bits()), "{isa:?}");
        }
    }

    #[test]
    fn dot_is_close_to_f64() {
        let (a, b) = (vals(256, 1.0), vals(256, 2.0));
        let exact: f64 =
            a.iter().zip(&b).map(|(x, y)| f64::from(x.to_f32()) * f64::from(y.to_f32())).sum();
        assert!((f64::from(dot_f16(Isa::Scalar, &a, &b)) - exact).abs() < 1e-3);
    }
}

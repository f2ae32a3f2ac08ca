//! The value step of attention over a quantized KV cache, as llama.cpp's CPU flash attention takes
//! it for a V that is not f16: each value row dequantized to f32 (the format's codec, `x = d * q`)
//! and added to an f32 accumulator with one fused multiply-add per element (`ggml_vec_mad_f32`).
//!
//! [`mad_dequant`]'s scalar path is the reference; the AVX2 versions (Q8_0, Q4_0) fuse the decode
//! into the FMA with the same float operations per element, so both give identical bits (tested).
//! [`fwht`] is the Walsh-Hadamard rotation llama.cpp applies to queries, keys and values before a
//! quantized cache (ggml's `fwht`: scale by `1/sqrt(n)`, then add/subtract butterflies).

use llmopt_tensor::GgmlType;

use crate::Isa;

/// Largest block of any format (K-quants' 256 elements): the scalar path's decode buffer.
const MAX_BLOCK: usize = 256;

/// `y[i] = fma(decode(x)[i], v, y[i])` for the row `x` of type `ty` (`y.len()` elements, whole
/// blocks of `ty`).
pub fn mad_dequant(isa: Isa, ty: GgmlType, y: &mut [f32], x: &[u8], v: f32) {
    let spec = ty.spec();
    let nb = y.len() / spec.block_len;
    assert!(
        nb * spec.block_len == y.len() && x.len() >= nb * spec.block_bytes,
        "{ty}: {} values from {} bytes",
        y.len(),
        x.len()
    );
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx2 && Isa::Avx2.is_available() {
        if let Some(f) = x86::mad_dequant(ty) {
            // SAFETY: the CPU supports AVX2, FMA and F16C (checked just above); shapes asserted.
            return unsafe { f(y, x, v) };
        }
    }
    let _ = isa;
    let mut buf = [0f32; MAX_BLOCK];
    let buf = &mut buf[..spec.block_len];
    for (yb, xb) in y.chunks_exact_mut(spec.block_len).zip(x.chunks_exact(spec.block_bytes)) {
        (spec.to_f32)(xb, buf);
        for (yi, &xi) in yb.iter_mut().zip(buf.iter()) {
            *yi = xi.mul_add(v, *yi);
        }
    }
}

/// Rotates every `n`-value chunk of `x` by the orthonormal Walsh-Hadamard matrix (Sylvester
/// order, its own inverse): each value times `1/sqrt(n)`, then butterflies `(u + v, u - v)` over
/// distances 1, 2, 4, ... `n/2`. `n` is a power of two dividing `x.len()`. Every step is exact
/// float add/subtract in a fixed order, so the AVX2 path (distances of 8 and more on 8 lanes) gives
/// the same bits as the scalar one.
pub fn fwht(isa: Isa, x: &mut [f32], n: usize) {
    assert!(n.is_power_of_two() && x.len().is_multiple_of(n), "fwht of {} in {n}s", x.len());
    let scale = 1.0 / (n as f32).sqrt();
    let simd = cfg!(target_arch = "x86_64") && isa == Isa::Avx2 && Isa::Avx2.is_available();
    for c in x.chunks_exact_mut(n) {
        let mut len = 1;
        #[cfg(target_arch = "x86_64")]
        if simd && n >= 8 {
            // SAFETY: AVX2 checked above; `c` holds whole 8-float groups (n is a power of two).
            unsafe { x86::scale_and_first_three(c, scale) };
            len = 8;
        }
        if len == 1 {
            c.iter_mut().for_each(|v| *v *= scale);
        }
        while len < n {
            #[cfg(target_arch = "x86_64")]
            if simd && len >= 8 {
                // SAFETY: AVX2 checked above; `len` is a multiple of 8 within `c`.
                unsafe { x86::butterflies(c, len) };
                len <<= 1;
                continue;
            }
            for i in (0..n).step_by(2 * len) {
                for j in i..i + len {
                    let (u, v) = (c[j], c[j + len]);
                    (c[j], c[j + len]) = (u + v, u - v);
                }
            }
            len <<= 1;
        }
    }
    let _ = simd;
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use half::f16;
    use llmopt_tensor::GgmlType;

    /// `unsafe fn(y, x, v)`: the caller has checked AVX2+FMA+F16C and the lengths.
    pub(super) type MadFn = unsafe fn(&mut [f32], &[u8], f32);

    /// The fused kernel of `ty`, where one is written.
    pub(super) fn mad_dequant(ty: GgmlType) -> Option<MadFn> {
        match ty {
            GgmlType::Q8_0 => Some(mad_q8_0),
            GgmlType::Q4_0 => Some(mad_q4_0),
            _ => None,
        }
    }

    /// The scaling and the passes at distances 1, 2 and 4 within each group of 8 floats of `c`,
    /// in registers: the partner of each lane comes from a permute, the lower lane of a pair
    /// keeps `u + v` and the upper `u - v` by a blend, so every value gets the scalar passes'
    /// operations in their order (the same bits).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn scale_and_first_three(c: &mut [f32], scale: f32) {
        let s = _mm256_set1_ps(scale);
        for g in c.chunks_exact_mut(8) {
            // SAFETY: `g` is 8 floats, read and written unaligned.
            let mut x = unsafe { _mm256_loadu_ps(g.as_ptr()) };
            x = _mm256_mul_ps(x, s);
            // Distance 1: partners are neighbours.
            let y = _mm256_permute_ps::<0b1011_0001>(x);
            x = _mm256_blend_ps::<0b1010_1010>(_mm256_add_ps(x, y), _mm256_sub_ps(y, x));
            // Distance 2: partners two apart.
            let y = _mm256_permute_ps::<0b0100_1110>(x);
            x = _mm256_blend_ps::<0b1100_1100>(_mm256_add_ps(x, y), _mm256_sub_ps(y, x));
            // Distance 4: the other 128-bit half.
            let y = _mm256_permute2f128_ps::<1>(x, x);
            x = _mm256_blend_ps::<0b1111_0000>(_mm256_add_ps(x, y), _mm256_sub_ps(y, x));
            // SAFETY: as above.
            unsafe { _mm256_storeu_ps(g.as_mut_ptr(), x) };
        }
    }

    /// One butterfly pass at distance `len` (a multiple of 8) over `c`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn butterflies(c: &mut [f32], len: usize) {
        let n = c.len();
        for i in (0..n).step_by(2 * len) {
            for j in (i..i + len).step_by(8) {
                let (lo, hi) = c.split_at_mut(j + len);
                let (a, b) = (&mut lo[j..j + 8], &mut hi[..8]);
                // SAFETY: `a` and `b` are 8 floats each, read and written unaligned.
                unsafe {
                    let u = _mm256_loadu_ps(a.as_ptr());
                    let v = _mm256_loadu_ps(b.as_ptr());
                    _mm256_storeu_ps(a.as_mut_ptr(), _mm256_add_ps(u, v));
                    _mm256_storeu_ps(b.as_mut_ptr(), _mm256_sub_ps(u, v));
                }
            }
        }
    }

    fn scale(b: &[u8]) -> f32 {
        f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32()
    }

    /// `y[0..8] = fma(float(q) * d, v, y[0..8])` for 8 signed bytes `q` in the low half of `q8`.
    #[target_feature(enable = "avx2,fma,f16c")]
    fn step(y: &mut [f32], q8: __m128i, d: __m256, v: __m256) {
        let y = &mut y[..8];
        let x = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q8)), d);
        // SAFETY: `y` is 8 floats, read and written unaligned.
        unsafe {
            let r = _mm256_fmadd_ps(x, v, _mm256_loadu_ps(y.as_ptr()));
            _mm256_storeu_ps(y.as_mut_ptr(), r);
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn mad_q8_0(y: &mut [f32], x: &[u8], v: f32) {
        let vv = _mm256_set1_ps(v);
        for (yb, b) in y.chunks_exact_mut(32).zip(x.chunks_exact(34)) {
            let d = _mm256_set1_ps(scale(b));
            for (i, y8) in yb.chunks_exact_mut(8).enumerate() {
                let q = &b[2 + 8 * i..2 + 8 * i + 8];
                // SAFETY: `q` is 8 readable bytes.
                let q8 = unsafe { _mm_loadl_epi64(q.as_ptr().cast()) };
                step(y8, q8, d, vv);
            }
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn mad_q4_0(y: &mut [f32], x: &[u8], v: f32) {
        let vv = _mm256_set1_ps(v);
        let (mask, eight) = (_mm_set1_epi8(0x0f), _mm_set1_epi8(8));
        for (yb, b) in y.chunks_exact_mut(32).zip(x.chunks_exact(18)) {
            let d = _mm256_set1_ps(scale(b));
            let qs = &b[2..18];
            // SAFETY: `qs` is 16 readable bytes.
            let raw = unsafe { _mm_loadu_si128(qs.as_ptr().cast()) };
            // Elements 0..16 are the low nibbles, 16..32 the high ones, each minus 8.
            let lo = _mm_sub_epi8(_mm_and_si128(raw, mask), eight);
            let hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16::<4>(raw), mask), eight);
            let (y0, y1) = yb.split_at_mut(16);
            step(&mut y0[..8], lo, d, vv);
            step(&mut y0[8..], _mm_srli_si128::<8>(lo), d, vv);
            step(&mut y1[..8], hi, d, vv);
            step(&mut y1[8..], _mm_srli_si128::<8>(hi), d, vv);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    fn encoded(rng: &mut StdRng, ty: GgmlType, n: usize) -> Vec<u8> {
        let x: Vec<f32> = (0..n).map(|_| rng.random_range(-3.0f32..3.0)).collect();
        let mut b = vec![0u8; ty.row_bytes(n).unwrap()];
        ty.from_f32(&x, &mut b).unwrap();
        b
    }

    #[test]
    fn scalar_is_decode_then_fma() {
        let mut rng = StdRng::seed_from_u64(5);
        for ty in [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::F16, GgmlType::Q4_K] {
            let n = 3 * ty.spec().block_len;
            let x = encoded(&mut rng, ty, n);
            let mut dec = vec![0f32; n];
            ty.to_f32(&x, &mut dec).unwrap();
            let y0: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let mut y = y0.clone();
            mad_dequant(Isa::Scalar, ty, &mut y, &x, 0.37);
            for i in 0..n {
                assert_eq!(y[i], dec[i].mul_add(0.37, y0[i]), "{ty} [{i}]");
            }
        }
    }

    #[test]
    fn simd_equals_scalar_bit_for_bit() {
        if !Isa::Avx2.is_available() {
            return; // the scalar path is the only one; nothing to compare (portable build)
        }
        let mut rng = StdRng::seed_from_u64(17);
        for ty in [GgmlType::Q8_0, GgmlType::Q4_0] {
            // Odd block counts, head sizes 64/128/256 and a long row.
            for nb in [1usize, 3, 2, 4, 8, 13, 31] {
                let n = nb * 32;
                let mut y1: Vec<f32> = (0..n).map(|_| rng.random_range(-2.0f32..2.0)).collect();
                let mut y2 = y1.clone();
                for step in 0..7 {
                    let x = encoded(&mut rng, ty, n);
                    let v = rng.random_range(-1.5f32..1.5) + step as f32 * 0.01;
                    mad_dequant(Isa::Scalar, ty, &mut y1, &x, v);
                    mad_dequant(Isa::Avx2, ty, &mut y2, &x, v);
                }
                let bits = |y: &[f32]| y.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&y1), bits(&y2), "{ty} n={n}");
            }
        }
    }

    #[test]
    fn fwht_is_the_hadamard_product_and_its_own_inverse() {
        let mut rng = StdRng::seed_from_u64(3);
        for n in [2usize, 4, 8, 16, 64, 256, 512] {
            // Sylvester's matrix, built as llama.cpp's `ggml_gen_hadamard` builds it.
            let mut h = vec![0f64; n * n];
            h[0] = 1.0 / (n as f64).sqrt();
            let mut s = 1;
            while s < n {
                for i in 0..s {
                    for j in 0..s {
                        let v = h[i * n + j];
                        (h[(i + s) * n + j], h[i * n + j + s], h[(i + s) * n + j + s]) = (v, v, -v);
                    }
                }
                s *= 2;
            }
            let x: Vec<f32> = (0..3 * n).map(|_| rng.random_range(-2.0f32..2.0)).collect();
            let (mut a, mut b) = (x.clone(), x.clone());
            fwht(Isa::Scalar, &mut a, n);
            fwht(Isa::Avx2, &mut b, n); // the scalar path again on a CPU without AVX2
            assert_eq!(a, b, "n={n}: SIMD and scalar bits");
            for (c, xc) in a.chunks_exact(n).zip(x.chunks_exact(n)) {
                for i in 0..n {
                    let want: f64 = (0..n).map(|j| h[i * n + j] * f64::from(xc[j])).sum();
                    assert!((f64::from(c[i]) - want).abs() < 1e-5, "n={n} [{i}]");
                }
            }
            fwht(Isa::Scalar, &mut a, n);
            for (r, v) in a.iter().zip(&x) {
                assert!((r - v).abs() < 1e-5, "n={n}: twice is the identity");
            }
        }
    }
}

//! f32 steps of tiled prefill attention: scores of a tile of query rows against a block of keys,
//! and the softmax-weighted sum of a block of values into the query rows' accumulators.
//!
//! The scalar functions are the reference; the AVX2+FMA versions compute the same sums with
//! 8-lane FMAs (so results differ from the reference by float reassociation only, tested).

use crate::Isa;

/// `s[r * n_k + j] = dot(q[r * hd..][..hd], k[j * hd..][..hd])` for `r < n_q`, `j < n_k`.
pub fn scores(isa: Isa, q: &[f32], k: &[f32], hd: usize, s: &mut [f32]) {
    let (n_q, n_k) = (q.len() / hd.max(1), k.len() / hd.max(1));
    assert!(q.len() == n_q * hd && k.len() == n_k * hd && s.len() >= n_q * n_k);
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx2 && Isa::Avx2.is_available() {
        // SAFETY: the CPU supports AVX2 and FMA (checked just above); shapes asserted.
        return unsafe { x86::scores(q, k, hd, s) };
    }
    let _ = isa;
    for (qr, sr) in q.chunks_exact(hd).zip(s.chunks_exact_mut(n_k)) {
        for (kr, sv) in k.chunks_exact(hd).zip(sr.iter_mut()) {
            *sv = qr.iter().zip(kr).map(|(a, b)| a * b).sum();
        }
    }
}

/// `acc[r] = acc[r] * corr[r] + sum_j p[r * n_k + j] * v[j]` for each query row `r` (`hd` wide),
/// with `n_k = v.len() / hd` value rows.
pub fn accumulate(isa: Isa, acc: &mut [f32], corr: &[f32], p: &[f32], v: &[f32], hd: usize) {
    let (n_q, n_k) = (corr.len(), v.len() / hd.max(1));
    assert!(acc.len() == n_q * hd && v.len() == n_k * hd && p.len() >= n_q * n_k);
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx2 && Isa::Avx2.is_available() {
        // SAFETY: the CPU supports AVX2 and FMA (checked just above); shapes asserted.
        return unsafe { x86::accumulate(acc, corr, p, v, hd) };
    }
    let _ = isa;
    for ((ar, &c), pr) in acc.chunks_exact_mut(hd).zip(corr).zip(p.chunks(n_k.max(1))) {
        ar.iter_mut().for_each(|a| *a *= c);
        for (&w, vr) in pr.iter().zip(v.chunks_exact(hd)) {
            if w != 0.0 {
                ar.iter_mut().zip(vr).for_each(|(a, x)| *a += w * x);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    fn hsum(x: __m256) -> f32 {
        let r = _mm_add_ps(_mm256_extractf128_ps(x, 1), _mm256_castps256_ps128(x));
        let r = _mm_add_ps(r, _mm_movehl_ps(r, r));
        let r = _mm_add_ss(r, _mm_movehdup_ps(r));
        _mm_cvtss_f32(r)
    }

    #[target_feature(enable = "avx2,fma")]
    fn load(x: &[f32], i: usize) -> __m256 {
        let s = &x[i..i + 8];
        // SAFETY: `s` is 8 readable floats; `loadu` has no alignment requirement.
        unsafe { _mm256_loadu_ps(s.as_ptr()) }
    }

    /// Four keys per step: each 8-float chunk of the query row is loaded once for four FMAs.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn scores(q: &[f32], k: &[f32], hd: usize, s: &mut [f32]) {
        let n_k = k.len() / hd;
        let hd8 = hd & !7;
        for (qr, sr) in q.chunks_exact(hd).zip(s.chunks_exact_mut(n_k)) {
            let mut j = 0;
            while j + 4 <= n_k {
                let kr: [&[f32]; 4] = std::array::from_fn(|i| &k[(j + i) * hd..(j + i + 1) * hd]);
                let mut a = [_mm256_setzero_ps(); 4];
                for d in (0..hd8).step_by(8) {
                    let qv = load(qr, d);
                    for (ai, ki) in a.iter_mut().zip(kr) {
                        *ai = _mm256_fmadd_ps(qv, load(ki, d), *ai);
                    }
                }
                for (i, ki) in kr.iter().enumerate() {
                    let tail: f32 = qr[hd8..].iter().zip(&ki[hd8..]).map(|(x, y)| x * y).sum();
                    sr[j + i] = hsum(a[i]) + tail;
                }
                j += 4;
            }
            for (jj, sv) in sr.iter_mut().enumerate().take(n_k).skip(j) {
                let kr = &k[jj * hd..(jj + 1) * hd];
                let mut a = _mm256_setzero_ps();
                for d in (0..hd8).step_by(8) {
                    a = _mm256_fmadd_ps(load(qr, d), load(kr, d), a);
                }
                let tail: f32 = qr[hd8..].iter().zip(&kr[hd8..]).map(|(x, y)| x * y).sum();
                *sv = hsum(a) + tail;
            }
        }
    }

    /// Per query row, 64 columns (8 registers) at a time stay in registers across the values.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn accumulate(acc: &mut [f32], corr: &[f32], p: &[f32], v: &[f32], hd: usize) {
        let n_k = v.len() / hd;
        let hd8 = hd & !7;
        for (r, (ar, &c)) in acc.chunks_exact_mut(hd).zip(corr).enumerate() {
            let pr = &p[r * n_k..(r + 1) * n_k];
            let cv = _mm256_set1_ps(c);
            let mut d0 = 0;
            while d0 < hd8 {
                let width = (hd8 - d0).min(64);
                let mut regs = [_mm256_setzero_ps(); 8];
                for (i, reg) in regs.iter_mut().enumerate().take(width / 8) {
                    *reg = _mm256_mul_ps(load(ar, d0 + 8 * i), cv);
                }
                for (j, &w) in pr.iter().enumerate() {
                    if w == 0.0 {
                        continue;
                    }
                    let wv = _mm256_set1_ps(w);
                    let vr = &v[j * hd..(j + 1) * hd];
                    for (i, reg) in regs.iter_mut().enumerate().take(width / 8) {
                        *reg = _mm256_fmadd_ps(wv, load(vr, d0 + 8 * i), *reg);
                    }
                }
                for (i, reg) in regs.iter().enumerate().take(width / 8) {
                    let out = &mut ar[d0 + 8 * i..d0 + 8 * i + 8];
                    // SAFETY: `out` is 8 writable floats; `storeu` has no alignment requirement.
                    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), *reg) };
                }
                d0 += width;
            }
            for d in hd8..hd {
                let mut a = ar[d] * c;
                for (j, &w) in pr.iter().enumerate() {
                    a += w * v[j * hd + d];
                }
                ar[d] = a;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    fn random(rng: &mut StdRng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.random_range(-2.0f32..2.0)).collect()
    }

    fn close(a: &[f32], b: &[f32], what: &str) {
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{what}[{i}]: {x} vs {y}");
        }
    }

    #[test]
    fn simd_matches_scalar_on_odd_shapes() {
        if !Isa::Avx2.is_available() {
            return;
        }
        let mut rng = StdRng::seed_from_u64(11);
        for (n_q, n_k, hd) in [(1, 1, 8), (3, 5, 64), (48, 64, 64), (7, 13, 256), (5, 9, 44)] {
            let q = random(&mut rng, n_q * hd);
            let k = random(&mut rng, n_k * hd);
            let (mut s0, mut s1) = (vec![0.0; n_q * n_k], vec![0.0; n_q * n_k]);
            scores(Isa::Scalar, &q, &k, hd, &mut s0);
            scores(Isa::Avx2, &q, &k, hd, &mut s1);
            close(&s1, &s0, "scores");

            let mut p = random(&mut rng, n_q * n_k);
            p.iter_mut().step_by(3).for_each(|x| *x = 0.0);
            let corr: Vec<f32> = (0..n_q).map(|_| rng.random_range(0.0f32..1.0)).collect();
            let acc = random(&mut rng, n_q * hd);
            let (mut a0, mut a1) = (acc.clone(), acc);
            accumulate(Isa::Scalar, &mut a0, &corr, &p, &k, hd);
            accumulate(Isa::Avx2, &mut a1, &corr, &p, &k, hd);
            close(&a1, &a0, "accumulate");
        }
    }

    #[test]
    fn scalar_reference_by_hand() {
        let q = [1.0, 2.0, 3.0, 4.0];
        let k = [1.0, 0.0, 0.0, 1.0, 2.0, 2.0];
        let mut s = [0.0; 6];
        scores(Isa::Scalar, &q, &k, 2, &mut s);
        assert_eq!(s, [1.0, 2.0, 6.0, 3.0, 4.0, 14.0]);
        // Row 0: 0.5 * [1, 1] + 1 * [1, 0] + 2 * [0, 1]; row 1: 0 * acc + 1 * [2, 2].
        let mut acc = [1.0, 1.0, 5.0, 5.0];
        let p = [1.0, 2.0, 0.0, 0.0, 0.0, 1.0];
        accumulate(Isa::Scalar, &mut acc, &[0.5, 0.0], &p, &k, 2);
        assert_eq!(acc, [1.5, 2.5, 2.0, 2.0]);
    }
}

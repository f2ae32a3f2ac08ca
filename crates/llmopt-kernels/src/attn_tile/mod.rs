//! f32 steps of tiled prefill attention: scores of a tile of query rows against a block of keys
//! (held transposed), the online-softmax update of a row, and the weighted sum of a block of
//! values.
//!
//! The scalar functions are the reference; the AVX2+FMA versions block several query rows x
//! several 8-key (or 8-column) vectors in registers, and take `exp` from a polynomial, so their
//! results differ from the reference by float reassociation and a few ulp of `exp` (tested).

#[cfg(target_arch = "x86_64")]
mod avx2;

use std::ops::Range;

use half::f16;

use crate::Isa;

/// Whether the AVX2 path takes a call with head size `hd` (whole 8-float vectors).
fn simd(isa: Isa, hd: usize) -> bool {
    isa == Isa::Avx2 && hd.is_multiple_of(8) && hd > 0 && Isa::Avx2.is_available()
}

/// `s[r * ld + j] = dot(q[r * hd..][..hd], key j)` for every query row `r` and `j < n_k`, with the
/// keys transposed in `kt`: element `d` of key `j` at `kt[d * ld + j]`. `ld` must be a multiple of
/// 8, at least `n_k`; entries `n_k..` of a row of `s` (up to the next multiple of 8) may be
/// overwritten, and `kt`'s columns there must hold finite values.
pub fn scores(isa: Isa, q: &[f32], kt: &[f32], hd: usize, n_k: usize, ld: usize, s: &mut [f32]) {
    let n_q = q.len() / hd.max(1);
    assert!(q.len() == n_q * hd && n_k <= ld && ld.is_multiple_of(8));
    assert!(kt.len() >= hd * ld && s.len() >= n_q * ld);
    #[cfg(target_arch = "x86_64")]
    if simd(isa, hd) {
        // SAFETY: the CPU supports AVX2 and FMA (checked by `simd`); shapes asserted above.
        return unsafe { avx2::scores(q, kt, hd, n_k, ld, s) };
    }
    let _ = isa;
    for (qr, sr) in q.chunks_exact(hd.max(1)).zip(s.chunks_exact_mut(ld)) {
        for (j, sv) in sr[..n_k].iter_mut().enumerate() {
            *sv = qr.iter().enumerate().map(|(d, x)| x * kt[d * ld + j]).sum();
        }
    }
}

/// One online-softmax step of a row of scores `s` against a block: entries outside `visible` are
/// masked. With `m_new = max(m, max s[visible])`, sets `s[j] = exp(s[j] - m_new)` (0 when masked),
/// `l = l * exp(m - m_new) + sum(s)`, `m = m_new`, and returns the correction `exp(m - m_new)` for
/// the row's accumulator. A row with nothing visible yet (`m_new = -inf`) becomes zeros, with 1.
pub fn softmax_row(
    isa: Isa,
    s: &mut [f32],
    visible: Range<usize>,
    m: &mut f32,
    l: &mut f32,
) -> f32 {
    let end = visible.end.min(s.len());
    let visible = visible.start.min(end)..end;
    let mb = s[visible.clone()].iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
    let m_new = m.max(mb);
    if m_new == f32::NEG_INFINITY {
        s.fill(0.0);
        return 1.0;
    }
    let corr = exp_ref(*m - m_new);
    s[..visible.start].fill(0.0);
    s[visible.end..].fill(0.0);
    let row = &mut s[visible];
    #[cfg(target_arch = "x86_64")]
    let sum = if simd(isa, 8) {
        // SAFETY: the CPU supports AVX2 and FMA (checked by `simd`).
        unsafe { avx2::exp_sub_sum(row, m_new) }
    } else {
        exp_sub_sum(row, m_new)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let sum = {
        let _ = isa;
        exp_sub_sum(row, m_new)
    };
    *l = *l * corr + sum;
    *m = m_new;
    corr
}

fn exp_ref(x: f32) -> f32 {
    x.exp()
}

/// `s[j] = exp(s[j] - m)`, returning their sum (the reference).
fn exp_sub_sum(s: &mut [f32], m: f32) -> f32 {
    let mut sum = 0.0;
    for v in s.iter_mut() {
        *v = exp_ref(*v - m);
        sum += *v;
    }
    sum
}

/// `acc[r] = acc[r] * corr[r] + sum_j p[r * ld + j] * v[j]` for each query row `r` (`hd` wide),
/// with `n_k = v.len() / hd` value rows.
pub fn accumulate(
    isa: Isa,
    acc: &mut [f32],
    corr: &[f32],
    p: &[f32],
    ld: usize,
    v: &[f32],
    hd: usize,
) {
    let (n_q, n_k) = (corr.len(), v.len() / hd.max(1));
    assert!(acc.len() == n_q * hd && v.len() == n_k * hd && n_k <= ld);
    assert!(n_q == 0 || p.len() >= (n_q - 1) * ld + n_k);
    #[cfg(target_arch = "x86_64")]
    if simd(isa, hd) {
        // SAFETY: the CPU supports AVX2 and FMA (checked by `simd`); shapes asserted above.
        return unsafe { avx2::accumulate(acc, corr, p, ld, v, hd) };
    }
    let _ = isa;
    for (r, (ar, &c)) in acc.chunks_exact_mut(hd.max(1)).zip(corr).enumerate() {
        ar.iter_mut().for_each(|a| *a *= c);
        for (&w, vr) in p[r * ld..r * ld + n_k].iter().zip(v.chunks_exact(hd)) {
            ar.iter_mut().zip(vr).for_each(|(a, x)| *a += w * x);
        }
    }
}

/// Converts a block of f16 cache rows to the tile's f32 layout: key `j` (the `hd` f16s of `k` at
/// byte `rows[j] + head`) into column `j` of `kt` (element `d` at `kt[d * ld + j]`), and the value
/// at the same place of `v` into row `j` of `vb`. Exact: every f16 is an f32.
#[allow(clippy::too_many_arguments)]
pub fn load_f16_block(
    isa: Isa,
    (k, v): (&[u8], &[u8]),
    rows: &[usize],
    head: usize,
    hd: usize,
    kt: &mut [f32],
    ld: usize,
    vb: &mut [f32],
) {
    let n_k = rows.len();
    assert!(n_k <= ld && kt.len() >= hd * ld && vb.len() >= n_k * hd);
    for &r in rows {
        assert!(r + head + 2 * hd <= k.len().min(v.len()), "a cache row past the layer");
    }
    #[cfg(target_arch = "x86_64")]
    if simd(isa, hd) {
        // SAFETY: AVX2 (checked by `simd`, F16C with it: `Isa::Avx2` requires both); every row is
        // in bounds and the outputs hold the block (asserted above).
        return unsafe { avx2::load_f16_block((k, v), rows, head, hd, kt, ld, vb) };
    }
    let _ = isa;
    let f = |b: &[u8], i: usize| f16::from_le_bytes([b[i], b[i + 1]]).to_f32();
    for (j, &r) in rows.iter().enumerate() {
        for d in 0..hd {
            kt[d * ld + j] = f(k, r + head + 2 * d);
            vb[j * hd + d] = f(v, r + head + 2 * d);
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

    fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{what}[{i}]: {x} vs {y}");
        }
    }

    /// Keys `n_k x hd` transposed into `hd x ld`, the padding columns zero.
    fn transpose(k: &[f32], n_k: usize, hd: usize, ld: usize) -> Vec<f32> {
        let mut kt = vec![0.0; hd * ld];
        for j in 0..n_k {
            for d in 0..hd {
                kt[d * ld + j] = k[j * hd + d];
            }
        }
        kt
    }

    #[test]
    fn f16_blocks_load_exactly_in_both_paths() {
        let mut rng = StdRng::seed_from_u64(5);
        for (n_k, hd) in
            [(1usize, 8usize), (7, 64), (8, 64), (9, 64), (64, 64), (13, 128), (17, 40)]
        {
            // Rows of 3 heads; the block reads head 1 of rows in scrambled order.
            let row = 3 * 2 * hd;
            let n_rows = n_k + 5;
            let bytes = |rng: &mut StdRng| -> Vec<u8> {
                (0..n_rows * row / 2)
                    .flat_map(|_| f16::from_f32(rng.random_range(-8.0f32..8.0)).to_le_bytes())
                    .collect()
            };
            let (k, v) = (bytes(&mut rng), bytes(&mut rng));
            let rows: Vec<usize> = (0..n_k).map(|j| ((j * 7 + 3) % n_rows) * row).collect();
            let ld = n_k.next_multiple_of(8);
            let mut want = (vec![0f32; hd * ld], vec![0f32; n_k * hd]);
            let mut got = (vec![0f32; hd * ld], vec![0f32; n_k * hd]);
            let head = 2 * hd;
            load_f16_block(Isa::Scalar, (&k, &v), &rows, head, hd, &mut want.0, ld, &mut want.1);
            load_f16_block(Isa::best(), (&k, &v), &rows, head, hd, &mut got.0, ld, &mut got.1);
            assert_eq!(got, want, "n_k {n_k}, hd {hd}");
            let at = |b: &[u8], i: usize| f16::from_le_bytes([b[i], b[i + 1]]).to_f32();
            let (j, d) = (n_k - 1, hd - 1);
            assert_eq!(want.0[d * ld + j], at(&k, rows[j] + head + 2 * d));
            assert_eq!(want.1[j * hd + d], at(&v, rows[j] + head + 2 * d));
        }
    }

    #[test]
    fn simd_matches_scalar_on_odd_shapes() {
        if !Isa::Avx2.is_available() {
            return;
        }
        let mut rng = StdRng::seed_from_u64(11);
        for (n_q, n_k, hd) in [
            (1usize, 1usize, 8usize),
            (3, 5, 64),
            (48, 64, 64),
            (7, 13, 256),
            (5, 9, 44),
            (10, 61, 72),
            (2, 33, 16),
        ] {
            let ld = n_k.next_multiple_of(8);
            let q = random(&mut rng, n_q * hd);
            let k = random(&mut rng, n_k * hd);
            let kt = transpose(&k, n_k, hd, ld);
            let (mut s0, mut s1) = (vec![0.0; n_q * ld], vec![0.0; n_q * ld]);
            scores(Isa::Scalar, &q, &kt, hd, n_k, ld, &mut s0);
            scores(Isa::Avx2, &q, &kt, hd, n_k, ld, &mut s1);
            for r in 0..n_q {
                close(&s1[r * ld..r * ld + n_k], &s0[r * ld..r * ld + n_k], 1e-4, "scores");
            }

            let p = random(&mut rng, n_q * ld);
            let corr: Vec<f32> = (0..n_q).map(|_| rng.random_range(0.0f32..1.0)).collect();
            let acc = random(&mut rng, n_q * hd);
            let (mut a0, mut a1) = (acc.clone(), acc);
            accumulate(Isa::Scalar, &mut a0, &corr, &p, ld, &k, hd);
            accumulate(Isa::Avx2, &mut a1, &corr, &p, ld, &k, hd);
            close(&a1, &a0, 1e-4, "accumulate");
        }
    }

    #[test]
    fn softmax_row_simd_matches_scalar_and_masks() {
        let mut rng = StdRng::seed_from_u64(5);
        for (n, vis) in [
            (64, 0..64),
            (61, 3..40),
            (13, 12..13),
            (9, 0..0),
            (64, 20..64),
            (70, 1..69),
            #[allow(clippy::reversed_empty_ranges)] // a window past the block: nothing visible
            (8, 5..2),
        ] {
            let mut row: Vec<f32> = random(&mut rng, n).iter().map(|x| x * 20.0).collect();
            row[n / 2] = -90.0; // far below the max: exp underflows towards 0, not garbage
            for isa in [Isa::Scalar, Isa::Avx2] {
                if !isa.is_available() {
                    continue;
                }
                let (mut s, mut m, mut l) = (row.clone(), 1.5f32, 2.0f32);
                let corr = softmax_row(isa, &mut s, vis.clone(), &mut m, &mut l);
                let seen = row.iter().enumerate().filter(|(j, _)| vis.contains(j));
                let mb = seen.fold(f32::NEG_INFINITY, |a, (_, &v)| a.max(v));
                let m_new = mb.max(1.5);
                assert_eq!(m, m_new, "{isa:?}");
                assert!((corr - (1.5 - m_new).exp()).abs() <= 1e-6);
                let mut sum = 0.0;
                for (j, (&got, &x)) in s.iter().zip(&row).enumerate() {
                    let want = if vis.contains(&j) { (x - m_new).exp() } else { 0.0 };
                    assert!(
                        (got - want).abs() <= 2e-6 * want.max(1e-30),
                        "{isa:?} {j}: {got} vs {want}"
                    );
                    sum += want;
                }
                assert!((l - (2.0 * corr + sum)).abs() <= 1e-5 * l, "{isa:?} l {l}");
            }
        }
        // Nothing visible yet: the row stays empty and the accumulator unscaled.
        let (mut s, mut m, mut l) = (vec![3.0; 8], f32::NEG_INFINITY, 0.0);
        assert_eq!(softmax_row(Isa::best(), &mut s, 2..2, &mut m, &mut l), 1.0);
        assert_eq!((s, m, l), (vec![0.0; 8], f32::NEG_INFINITY, 0.0));
    }

    #[test]
    fn scalar_reference_by_hand() {
        let q = [1.0, 2.0, 3.0, 4.0];
        // Keys [1, 0], [0, 1], [2, 2] transposed with ld 8.
        let mut kt = [0.0; 16];
        kt[..3].copy_from_slice(&[1.0, 0.0, 2.0]);
        kt[8..11].copy_from_slice(&[0.0, 1.0, 2.0]);
        let mut s = [0.0; 16];
        scores(Isa::Scalar, &q, &kt, 2, 3, 8, &mut s);
        assert_eq!(s[..3], [1.0, 2.0, 6.0]);
        assert_eq!(s[8..11], [3.0, 4.0, 14.0]);
        // Row 0: 0.5 * [1, 1] + 1 * [1, 0] + 2 * [0, 1]; row 1: 0 * acc + 1 * [2, 2].
        let v = [1.0, 0.0, 0.0, 1.0, 2.0, 2.0];
        let mut acc = [1.0, 1.0, 5.0, 5.0];
        let p = [1.0, 2.0, 0.0, 9.0, 0.0, 0.0, 1.0];
        accumulate(Isa::Scalar, &mut acc, &[0.5, 0.0], &p, 4, &v, 2);
        assert_eq!(acc, [1.5, 2.5, 2.0, 2.0]);
    }
}

//! AVX2+FMA versions of the attention tile steps: register blocks of up to 3 query rows x 4
//! vectors of 8 (keys for scores, value columns for the sum), and a Cephes-style `exp` on 8 lanes.

use std::arch::x86_64::*;

/// Query rows per register block.
const R: usize = 3;
/// 8-float vectors per register block.
const V: usize = 4;

/// One block of `RB` rows x `VB` vectors of scores: `s[i * ld + 8v + l] = sum_d q[i * hd + d] *
/// kt[d * ld + 8v + l]`.
///
/// # Safety
/// AVX2 + FMA; `q` readable for `RB` rows of `hd`, `kt` for `hd` rows of `ld` from column 0 to
/// `8 VB`, `s` writable likewise.
#[target_feature(enable = "avx2,fma")]
unsafe fn scores_block<const RB: usize, const VB: usize>(
    q: *const f32,
    kt: *const f32,
    hd: usize,
    ld: usize,
    s: *mut f32,
) {
    let mut acc = [[_mm256_setzero_ps(); VB]; RB];
    for d in 0..hd {
        // SAFETY: row d of `kt`, vectors 0..VB (caller).
        let k: [__m256; VB] =
            std::array::from_fn(|v| unsafe { _mm256_loadu_ps(kt.add(d * ld + 8 * v)) });
        for (i, acc_i) in acc.iter_mut().enumerate() {
            // SAFETY: element d of query row i (caller).
            let qv = unsafe { _mm256_broadcast_ss(&*q.add(i * hd + d)) };
            for (a, kv) in acc_i.iter_mut().zip(&k) {
                *a = _mm256_fmadd_ps(qv, *kv, *a);
            }
        }
    }
    for (i, acc_i) in acc.iter().enumerate() {
        for (v, a) in acc_i.iter().enumerate() {
            // SAFETY: row i of `s`, vector v (caller).
            unsafe { _mm256_storeu_ps(s.add(i * ld + 8 * v), *a) };
        }
    }
}

/// Calls `$f::<rb, vb>($args)` for run-time `rb` in 1..=3 and `vb` in 1..=4.
macro_rules! blocks {
    ($f:ident, $rb:expr, $vb:expr, $($args:expr),*) => {
        match ($rb, $vb) {
            (3, 4) => $f::<3, 4>($($args),*),
            (3, 3) => $f::<3, 3>($($args),*),
            (3, 2) => $f::<3, 2>($($args),*),
            (3, _) => $f::<3, 1>($($args),*),
            (2, 4) => $f::<2, 4>($($args),*),
            (2, 3) => $f::<2, 3>($($args),*),
            (2, 2) => $f::<2, 2>($($args),*),
            (2, _) => $f::<2, 1>($($args),*),
            (_, 4) => $f::<1, 4>($($args),*),
            (_, 3) => $f::<1, 3>($($args),*),
            (_, 2) => $f::<1, 2>($($args),*),
            (_, _) => $f::<1, 1>($($args),*),
        }
    };
}

/// [`super::scores`] on AVX2: every 8-key vector up to `n_k` rounded up.
///
/// # Safety
/// AVX2 + FMA; the shapes [`super::scores`] asserts, and `hd` a multiple of 8.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn scores(
    q: &[f32],
    kt: &[f32],
    hd: usize,
    n_k: usize,
    ld: usize,
    s: &mut [f32],
) {
    let (n_q, n_v) = (q.len() / hd, n_k.div_ceil(8));
    for r in (0..n_q).step_by(R) {
        let rb = (n_q - r).min(R);
        for v0 in (0..n_v).step_by(V) {
            let vb = (n_v - v0).min(V);
            // SAFETY: rows r..r + rb of q and s, columns 8 v0..8 (v0 + vb) <= ld of kt and s
            // (asserted by the caller: ld is a multiple of 8 and at least n_k).
            unsafe {
                let (qp, kp, sp) = (
                    q.as_ptr().add(r * hd),
                    kt.as_ptr().add(8 * v0),
                    s.as_mut_ptr().add(r * ld + 8 * v0),
                );
                blocks!(scores_block, rb, vb, qp, kp, hd, ld, sp)
            }
        }
    }
}

/// One block of `RB` rows x `VB` column vectors of the weighted value sum (see
/// [`super::accumulate`]), starting at column `8 v0` that the pointers already include.
///
/// # Safety
/// AVX2 + FMA; `acc` rows of `hd`, `p` rows of `ld` (`n_k` read), `v` rows of `hd`, all in bounds
/// for `RB` rows / `n_k` value rows and `8 VB` columns.
#[target_feature(enable = "avx2,fma")]
unsafe fn accumulate_block<const RB: usize, const VB: usize>(
    acc: *mut f32,
    corr: *const f32,
    p: *const f32,
    ld: usize,
    v: *const f32,
    n_k: usize,
    hd: usize,
) {
    let mut a = [[_mm256_setzero_ps(); VB]; RB];
    for (i, a_i) in a.iter_mut().enumerate() {
        // SAFETY: corr[i] and row i of acc (caller).
        let c = unsafe { _mm256_broadcast_ss(&*corr.add(i)) };
        for (vv, x) in a_i.iter_mut().enumerate() {
            // SAFETY: row i of acc, vector vv (caller).
            let old = unsafe { _mm256_loadu_ps(acc.add(i * hd + 8 * vv)) };
            *x = _mm256_mul_ps(old, c);
        }
    }
    for j in 0..n_k {
        // SAFETY: value row j, vectors 0..VB (caller).
        let vr: [__m256; VB] =
            std::array::from_fn(|vv| unsafe { _mm256_loadu_ps(v.add(j * hd + 8 * vv)) });
        for (i, a_i) in a.iter_mut().enumerate() {
            // SAFETY: p[i * ld + j], j < n_k (caller).
            let w = unsafe { _mm256_broadcast_ss(&*p.add(i * ld + j)) };
            for (x, y) in a_i.iter_mut().zip(&vr) {
                *x = _mm256_fmadd_ps(w, *y, *x);
            }
        }
    }
    for (i, a_i) in a.iter().enumerate() {
        for (vv, x) in a_i.iter().enumerate() {
            // SAFETY: row i of acc, vector vv (caller).
            unsafe { _mm256_storeu_ps(acc.add(i * hd + 8 * vv), *x) };
        }
    }
}

/// [`super::accumulate`] on AVX2.
///
/// # Safety
/// AVX2 + FMA; the shapes [`super::accumulate`] asserts, and `hd` a multiple of 8.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn accumulate(
    acc: &mut [f32],
    corr: &[f32],
    p: &[f32],
    ld: usize,
    v: &[f32],
    hd: usize,
) {
    let (n_q, n_k, n_v) = (corr.len(), v.len() / hd, hd / 8);
    for r in (0..n_q).step_by(R) {
        let rb = (n_q - r).min(R);
        for v0 in (0..n_v).step_by(V) {
            let vb = (n_v - v0).min(V);
            // SAFETY: rows r..r + rb of acc, corr and p; columns 8 v0..8 (v0 + vb) <= hd of acc
            // and of the n_k value rows (asserted by the caller).
            unsafe {
                let (ap, cp, pp, vp) = (
                    acc.as_mut_ptr().add(r * hd + 8 * v0),
                    corr.as_ptr().add(r),
                    p.as_ptr().add(r * ld),
                    v.as_ptr().add(8 * v0),
                );
                blocks!(accumulate_block, rb, vb, ap, cp, pp, ld, vp, n_k, hd)
            }
        }
    }
}

/// `exp(x)` on 8 lanes (Cephes `expf`: `x = n ln 2 + r`, a degree-7 polynomial in `r`, then `2^n`
/// through the exponent bits), within 2 ulp of `f32::exp`; 0 below -87.3, and `exp(-inf)` = 0.
#[target_feature(enable = "avx2,fma")]
pub(super) fn exp8(x: __m256) -> __m256 {
    let under = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(-87.33654));
    let x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.33654)), _mm256_set1_ps(88.37626));
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        x,
        _mm256_set1_ps(std::f32::consts::LOG2_E),
    ));
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
    let mut y = _mm256_set1_ps(1.987_569_1e-4);
    for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5] {
        y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(c));
    }
    let r2 = _mm256_mul_ps(r, r);
    let y = _mm256_add_ps(_mm256_fmadd_ps(y, r2, r), _mm256_set1_ps(1.0));
    let e =
        _mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)));
    _mm256_andnot_ps(under, _mm256_mul_ps(y, _mm256_castsi256_ps(e)))
}

/// `s[j] = exp(s[j] - m)` on 8 lanes at a time, returning their sum.
///
/// # Safety
/// AVX2 + FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn exp_sub_sum(s: &mut [f32], m: f32) -> f32 {
    let mv = _mm256_set1_ps(m);
    let mut sum = _mm256_setzero_ps();
    let mut chunks = s.chunks_exact_mut(8);
    for c in &mut chunks {
        // SAFETY: `c` is 8 floats; unaligned loads and stores.
        unsafe {
            let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(c.as_ptr()), mv));
            _mm256_storeu_ps(c.as_mut_ptr(), e);
            sum = _mm256_add_ps(sum, e);
        }
    }
    let tail = chunks.into_remainder();
    let mut buf = [f32::NEG_INFINITY; 8];
    buf[..tail.len()].copy_from_slice(tail);
    // SAFETY: `buf` is 8 floats; the padding lanes are exp(-inf) = 0.
    unsafe {
        let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(buf.as_ptr()), mv));
        _mm256_storeu_ps(buf.as_mut_ptr(), e);
        sum = _mm256_add_ps(sum, e);
    }
    tail.copy_from_slice(&buf[..tail.len()]);
    let h = _mm_add_ps(_mm256_extractf128_ps::<1>(sum), _mm256_castps256_ps128(sum));
    let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)))
}

/// The 8 f32s of the 8 f16s at `p`.
///
/// # Safety
/// AVX2 + F16C; 16 bytes readable at `p`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn f16x8(p: *const u8) -> __m256 {
    // SAFETY: the caller's; `loadu` needs no alignment.
    unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.cast())) }
}

/// Rows become columns: `r[i][m]` moves to `out[m][i]`.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
    let t: [__m256; 8] = std::array::from_fn(|i| {
        let (a, b) = (r[i & !1], r[(i & !1) + 1]);
        if i % 2 == 0 {
            _mm256_unpacklo_ps(a, b)
        } else {
            _mm256_unpackhi_ps(a, b)
        }
    });
    // t[0] = r0,r1 lo pairs, t[1] = r0,r1 hi, t[2], t[3] for r2,r3, t[4..8] for r4..r7.
    let u = [
        _mm256_shuffle_ps::<0x44>(t[0], t[2]),
        _mm256_shuffle_ps::<0xEE>(t[0], t[2]),
        _mm256_shuffle_ps::<0x44>(t[1], t[3]),
        _mm256_shuffle_ps::<0xEE>(t[1], t[3]),
        _mm256_shuffle_ps::<0x44>(t[4], t[6]),
        _mm256_shuffle_ps::<0xEE>(t[4], t[6]),
        _mm256_shuffle_ps::<0x44>(t[5], t[7]),
        _mm256_shuffle_ps::<0xEE>(t[5], t[7]),
    ];
    std::array::from_fn(|m| {
        if m < 4 {
            _mm256_permute2f128_ps::<0x20>(u[m], u[m + 4])
        } else {
            _mm256_permute2f128_ps::<0x31>(u[m - 4], u[m])
        }
    })
}

/// [`super::load_f16_block`] on AVX2 + F16C: 8 keys at a time, 8 elements each converted by one
/// `vcvtph2ps` and transposed in registers.
///
/// # Safety
/// AVX2 + F16C; the bounds [`super::load_f16_block`] asserts, and `hd` a multiple of 8.
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn load_f16_block(
    (k, v): (&[u8], &[u8]),
    rows: &[usize],
    head: usize,
    hd: usize,
    kt: &mut [f32],
    ld: usize,
    vb: &mut [f32],
) {
    let n_k = rows.len();
    let (kp, vp, ktp, vbp) = (k.as_ptr(), v.as_ptr(), kt.as_mut_ptr(), vb.as_mut_ptr());
    let mut j = 0;
    while j + 8 <= n_k {
        // The next 8 keys' and values' lines: 1.09x serving at 32 streams with the cache on
        // 2 MiB pages (16 ahead was slower; on 4 KiB pages it gained nothing).
        for &r in rows.iter().skip(j + 8).take(8) {
            for o in (0..2 * hd).step_by(64) {
                // SAFETY: prefetches are hints (never fault); the addresses are in bounds anyway.
                unsafe {
                    _mm_prefetch::<_MM_HINT_T0>(kp.add(r + head + o).cast());
                    _mm_prefetch::<_MM_HINT_T0>(vp.add(r + head + o).cast());
                }
            }
        }
        for d in (0..hd).step_by(8) {
            // SAFETY: key j + i's elements d..d + 8 lie in its row (caller).
            let r = std::array::from_fn(|i| unsafe { f16x8(kp.add(rows[j + i] + head + 2 * d)) });
            for (m, col) in transpose8(r).into_iter().enumerate() {
                // SAFETY: row d + m < hd of `kt`, columns j..j + 8 <= n_k <= ld (caller).
                unsafe { _mm256_storeu_ps(ktp.add((d + m) * ld + j), col) };
            }
        }
        // The same 8 keys' values, so their rows load alongside the keys' (more misses in flight).
        for (i, &r) in rows[j..j + 8].iter().enumerate() {
            for d in (0..hd).step_by(8) {
                // SAFETY: value j + i's elements d..d + 8 and row j + i of `vb` (caller).
                unsafe {
                    _mm256_storeu_ps(vbp.add((j + i) * hd + d), f16x8(vp.add(r + head + 2 * d)))
                };
            }
        }
        j += 8;
    }
    // The last 1..7 keys one at a time, each with its value.
    for (j, &r) in rows.iter().enumerate().skip(j) {
        for d in (0..hd).step_by(8) {
            let mut x = [0f32; 8];
            // SAFETY: key and value j's elements d..d + 8, and row j of `vb` (caller).
            unsafe {
                _mm256_storeu_ps(x.as_mut_ptr(), f16x8(kp.add(r + head + 2 * d)));
                _mm256_storeu_ps(vbp.add(j * hd + d), f16x8(vp.add(r + head + 2 * d)));
            }
            for (m, &xm) in x.iter().enumerate() {
                kt[(d + m) * ld + j] = xm;
            }
        }
    }
}

//! AVX2 tiles of R weight rows x T tokens for Q4_K and Q6_K with Q8_K activations: scales and
//! nibbles are decoded once per row and reused across tokens; float ops per pair as `kquants.rs`.

use std::arch::x86_64::*;

use super::util::*;

const Q8K: usize = 292;

fn q8k_d(y: &[u8]) -> f32 {
    f32::from_le_bytes([y[0], y[1], y[2], y[3]])
}

/// Q8_K's 16 block sums as 16 i16 lanes.
#[target_feature(enable = "avx2,fma,f16c")]
fn bsums(y: &[u8]) -> __m256i {
    let s = &y[260..292];
    // SAFETY: `s` is 32 readable bytes; `loadu` needs no alignment.
    unsafe { _mm256_loadu_si256(s.as_ptr().cast()) }
}

/// Q4_K x Q8_K, R rows x T tokens (see `TileFn`).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn tile_q4_k_q8_k<const R: usize, const T: usize>(
    n: usize,
    w: &[u8],
    w_row: usize,
    a: &[u8],
    a_row: usize,
    out: &mut [f32],
) {
    let nb = n / 256;
    check_tile::<R, T>((w, w_row, nb * 144), (a, a_row, nb * Q8K), out);
    let m4 = _mm256_set1_epi8(0x0f);
    let mut acc = [[_mm256_setzero_ps(); R]; T];
    let mut acc_m = [[0.0f32; R]; T];
    for b in 0..nb {
        let xs: [&[u8]; R] = std::array::from_fn(|r| &w[r * w_row + b * 144..][..144]);
        let ys: [&[u8]; T] = std::array::from_fn(|t| &a[t * a_row + b * Q8K..][..Q8K]);
        let mut sc = [[0u8; 8]; R];
        let mut mins = [_mm256_setzero_si256(); R];
        for r in 0..R {
            let (s, m) = scales_mins_k4(&xs[r][4..16]);
            sc[r] = s;
            // Each min twice: lanes 2j, 2j + 1 meet Q8_K's two block sums of sub-block j.
            let m = _mm_cvtsi64_si128(i64::from_le_bytes(m));
            mins[r] = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m, m));
        }
        // sum_j m_j * (b_2j + b_2j+1): the same exact integer as the per-pair scalar loop.
        for (t, acc_m_t) in acc_m.iter_mut().enumerate() {
            let (yd, bs) = (q8k_d(ys[t]), bsums(ys[t]));
            for r in 0..R {
                let summ = hsum_i32_8(_mm256_madd_epi16(bs, mins[r]));
                let dmin = yd * f16_at(xs[r], 2);
                acc_m_t[r] -= dmin * summ as f32;
            }
        }
        let mut sumi = [[_mm256_setzero_si256(); R]; T];
        for j in 0..4 {
            for r in 0..R {
                let q4 = load32(xs[r], 16 + 32 * j);
                let q4l = _mm256_and_si256(q4, m4);
                let q4h = _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4);
                let sl = _mm256_set1_epi16(i16::from(sc[r][2 * j]));
                let sh = _mm256_set1_epi16(i16::from(sc[r][2 * j + 1]));
                for (t, sumi_t) in sumi.iter_mut().enumerate() {
                    let pl = _mm256_maddubs_epi16(q4l, load32(ys[t], 4 + 64 * j));
                    let ph = _mm256_maddubs_epi16(q4h, load32(ys[t], 4 + 64 * j + 32));
                    let pl = _mm256_madd_epi16(sl, pl);
                    let ph = _mm256_madd_epi16(sh, ph);
                    sumi_t[r] = _mm256_add_epi32(sumi_t[r], _mm256_add_epi32(pl, ph));
                }
            }
        }
        for (t, acc_t) in acc.iter_mut().enumerate() {
            let yd = q8k_d(ys[t]);
            for r in 0..R {
                let d = _mm256_set1_ps(yd * f16_at(xs[r], 0));
                acc_t[r] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi[t][r]), acc_t[r]);
            }
        }
    }
    for t in 0..T {
        for r in 0..R {
            out[t * R + r] = hsum_f32_8(acc[t][r]) + acc_m[t][r];
        }
    }
}

/// Q6_K x Q8_K, R rows x T tokens.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn tile_q6_k_q8_k<const R: usize, const T: usize>(
    n: usize,
    w: &[u8],
    w_row: usize,
    a: &[u8],
    a_row: usize,
    out: &mut [f32],
) {
    let nb = n / 256;
    check_tile::<R, T>((w, w_row, nb * 210), (a, a_row, nb * Q8K), out);
    let m3 = _mm256_set1_epi8(3);
    let m15 = _mm256_set1_epi8(15);
    let mut acc = [[_mm256_setzero_ps(); R]; T];
    for b in 0..nb {
        let xs: [&[u8]; R] = std::array::from_fn(|r| &w[r * w_row + b * 210..][..210]);
        let ys: [&[u8]; T] = std::array::from_fn(|t| &a[t * a_row + b * Q8K..][..Q8K]);
        // Start each pair at -32 * sum(scale * bsum) (the weights are stored +32); the integer
        // total equals the per-pair kernel's `sumi - offset` exactly.
        let mut sumi = [[_mm256_setzero_si256(); R]; T];
        for r in 0..R {
            let sc = &xs[r][192..208];
            // SAFETY: `sc` is 16 readable bytes; `loadu` needs no alignment.
            let scales = _mm256_cvtepi8_epi16(unsafe { _mm_loadu_si128(sc.as_ptr().cast()) });
            for (t, sumi_t) in sumi.iter_mut().enumerate() {
                let offset = _mm256_slli_epi32(_mm256_madd_epi16(bsums(ys[t]), scales), 5);
                sumi_t[r] = _mm256_sub_epi32(sumi_t[r], offset);
            }
        }
        for j in 0..2 {
            for k in 0..4 {
                for r in 0..R {
                    let x = xs[r];
                    let ql = load32(x, 64 * j + 32 * (k % 2));
                    let qh = load32(x, 128 + 32 * j);
                    let q = match k {
                        0 => _mm256_or_si256(
                            _mm256_and_si256(ql, m15),
                            _mm256_slli_epi16(_mm256_and_si256(qh, m3), 4),
                        ),
                        1 => _mm256_or_si256(
                            _mm256_and_si256(ql, m15),
                            _mm256_slli_epi16(_mm256_and_si256(qh, _mm256_set1_epi8(12)), 2),
                        ),
                        2 => _mm256_or_si256(
                            _mm256_and_si256(_mm256_srli_epi16(ql, 4), m15),
                            _mm256_and_si256(qh, _mm256_set1_epi8(48)),
                        ),
                        _ => _mm256_or_si256(
                            _mm256_and_si256(_mm256_srli_epi16(ql, 4), m15),
                            _mm256_srli_epi16(_mm256_and_si256(qh, _mm256_set1_epi8(-64)), 2),
                        ),
                    };
                    let s0 = i16::from(x[192 + 8 * j + 2 * k] as i8);
                    let s1 = i16::from(x[192 + 8 * j + 2 * k + 1] as i8);
                    let s = _mm256_set_m128i(_mm_set1_epi16(s1), _mm_set1_epi16(s0));
                    for (t, sumi_t) in sumi.iter_mut().enumerate() {
                        let p = _mm256_maddubs_epi16(q, load32(ys[t], 4 + 128 * j + 32 * k));
                        sumi_t[r] = _mm256_add_epi32(sumi_t[r], _mm256_madd_epi16(s, p));
                    }
                }
            }
        }
        for (t, acc_t) in acc.iter_mut().enumerate() {
            let yd = q8k_d(ys[t]);
            for r in 0..R {
                let d = _mm256_set1_ps(yd * f16_at(xs[r], 208));
                acc_t[r] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi[t][r]), acc_t[r]);
            }
        }
    }
    for t in 0..T {
        for r in 0..R {
            out[t * R + r] = hsum_f32_8(acc[t][r]);
        }
    }
}

//! AVX2 dots of Q4_K, Q5_K and Q6_K with Q8_K activations: `maddubs` of unsigned weight bytes with
//! int8 activations, `madd` by the broadcast sub-block scale, i32 lanes per super-block, one FMA
//! per super-block. The mins (Q4_K) and the -32 offset (Q6_K) come from Q8_K's block sums.

use std::arch::x86_64::*;

use super::util::*;

fn q8k_d(y: &[u8]) -> f32 {
    f32::from_le_bytes([y[0], y[1], y[2], y[3]])
}

/// Q4_K x Q8_K.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn vec_dot_q4_k_q8_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = n / 256;
    assert!(w.len() >= nb * 144 && a.len() >= nb * 292);
    let m4 = _mm256_set1_epi8(0x0f);
    let mut acc = _mm256_setzero_ps();
    let mut acc_m = 0.0f32;
    for (x, y) in w.chunks_exact(144).zip(a.chunks_exact(292)).take(nb) {
        let yd = q8k_d(y);
        let d = yd * f16_at(x, 0);
        let dmin = yd * f16_at(x, 2);
        let (sc, mins) = scales_mins_k4(&x[4..16]);
        let mut summ = 0i32;
        for (j, &m) in mins.iter().enumerate() {
            let b0 = i16::from_le_bytes([y[260 + 4 * j], y[261 + 4 * j]]);
            let b1 = i16::from_le_bytes([y[262 + 4 * j], y[263 + 4 * j]]);
            summ += i32::from(m) * (i32::from(b0) + i32::from(b1));
        }
        acc_m -= dmin * summ as f32;
        let mut sumi = _mm256_setzero_si256();
        for j in 0..4 {
            let q4 = load32(x, 16 + 32 * j);
            let q4l = _mm256_and_si256(q4, m4);
            let q4h = _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4);
            let pl = _mm256_maddubs_epi16(q4l, load32(y, 4 + 64 * j));
            let ph = _mm256_maddubs_epi16(q4h, load32(y, 4 + 64 * j + 32));
            let pl = _mm256_madd_epi16(_mm256_set1_epi16(i16::from(sc[2 * j])), pl);
            let ph = _mm256_madd_epi16(_mm256_set1_epi16(i16::from(sc[2 * j + 1])), ph);
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(pl, ph));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_f32_8(acc) + acc_m
}

/// Q5_K x Q8_K: Q4_K's loop with the fifth bit of each weight from `qh` (bit `2j` for the
/// low nibbles of 64-element group `j`, bit `2j + 1` for the high ones).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn vec_dot_q5_k_q8_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = n / 256;
    assert!(w.len() >= nb * 176 && a.len() >= nb * 292);
    let m4 = _mm256_set1_epi8(0x0f);
    let one = _mm256_set1_epi8(1);
    let mut acc = _mm256_setzero_ps();
    let mut acc_m = 0.0f32;
    for (x, y) in w.chunks_exact(176).zip(a.chunks_exact(292)).take(nb) {
        let yd = q8k_d(y);
        let d = yd * f16_at(x, 0);
        let dmin = yd * f16_at(x, 2);
        let (sc, mins) = scales_mins_k4(&x[4..16]);
        let mut summ = 0i32;
        for (j, &m) in mins.iter().enumerate() {
            let b0 = i16::from_le_bytes([y[260 + 4 * j], y[261 + 4 * j]]);
            let b1 = i16::from_le_bytes([y[262 + 4 * j], y[263 + 4 * j]]);
            summ += i32::from(m) * (i32::from(b0) + i32::from(b1));
        }
        acc_m -= dmin * summ as f32;
        let mut hbits = load32(x, 16); // Shifted right by 2 per group: bit 0 is then bit 2j.
        let mut sumi = _mm256_setzero_si256();
        for j in 0..4 {
            let q4 = load32(x, 48 + 32 * j);
            let hl = _mm256_and_si256(hbits, one);
            let hh = _mm256_and_si256(_mm256_srli_epi16(hbits, 1), one);
            hbits = _mm256_srli_epi16(hbits, 2);
            let q5l = _mm256_or_si256(_mm256_and_si256(q4, m4), _mm256_slli_epi16(hl, 4));
            let q5h = _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4),
                _mm256_slli_epi16(hh, 4),
            );
            let pl = _mm256_maddubs_epi16(q5l, load32(y, 4 + 64 * j));
            let ph = _mm256_maddubs_epi16(q5h, load32(y, 4 + 64 * j + 32));
            let pl = _mm256_madd_epi16(_mm256_set1_epi16(i16::from(sc[2 * j])), pl);
            let ph = _mm256_madd_epi16(_mm256_set1_epi16(i16::from(sc[2 * j + 1])), ph);
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(pl, ph));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_f32_8(acc) + acc_m
}

/// Q6_K x Q8_K.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn vec_dot_q6_k_q8_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = n / 256;
    assert!(w.len() >= nb * 210 && a.len() >= nb * 292);
    let m3 = _mm256_set1_epi8(3);
    let m15 = _mm256_set1_epi8(15);
    let mut acc = _mm256_setzero_ps();
    for (x, y) in w.chunks_exact(210).zip(a.chunks_exact(292)).take(nb) {
        let d = q8k_d(y) * f16_at(x, 208);
        let sc = &x[192..208];
        // SAFETY: `sc` is 16 readable bytes and `y[260..292]` 32; `loadu` needs no alignment.
        let (scales, bsums) = unsafe {
            (_mm_loadu_si128(sc.as_ptr().cast()), _mm256_loadu_si256(y[260..292].as_ptr().cast()))
        };
        // 32 * sum(scale * bsum): the weights are stored +32, so subtract that at the end.
        let offset = _mm256_slli_epi32(_mm256_madd_epi16(bsums, _mm256_cvtepi8_epi16(scales)), 5);
        let mut sumi = _mm256_setzero_si256();
        for j in 0..2 {
            let ql1 = load32(x, 64 * j);
            let ql2 = load32(x, 64 * j + 32);
            let qh = load32(x, 128 + 32 * j);
            let h0 = _mm256_slli_epi16(_mm256_and_si256(qh, m3), 4);
            let h1 = _mm256_slli_epi16(_mm256_and_si256(qh, _mm256_set1_epi8(12)), 2);
            let h2 = _mm256_and_si256(qh, _mm256_set1_epi8(48));
            let h3 = _mm256_srli_epi16(_mm256_and_si256(qh, _mm256_set1_epi8(-64)), 2);
            let q = [
                _mm256_or_si256(_mm256_and_si256(ql1, m15), h0),
                _mm256_or_si256(_mm256_and_si256(ql2, m15), h1),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m15), h2),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql2, 4), m15), h3),
            ];
            for (k, qk) in q.into_iter().enumerate() {
                let p = _mm256_maddubs_epi16(qk, load32(y, 4 + 128 * j + 32 * k));
                let s0 = i16::from(sc[8 * j + 2 * k] as i8);
                let s1 = i16::from(sc[8 * j + 2 * k + 1] as i8);
                let s = _mm256_set_m128i(_mm_set1_epi16(s1), _mm_set1_epi16(s0));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(s, p));
            }
        }
        let sumi = _mm256_sub_epi32(sumi, offset);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_f32_8(acc)
}

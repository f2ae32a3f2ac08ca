//! AVX2 activation quantizers. They produce exactly the bytes of the scalar references in
//! `reference`: for Q8_0/Q8_1 ggml's x86 `quantize_row_q8_0/1` (multiplier `127 / amax`, round half
//! to even — what llama.cpp runs on this CPU, so activations match it), INT8_PC the same over a
//! whole row, for Q8_K ggml's `_ref` (round half to even), which its x86 build also uses; INT16_PC
//! the tensor codec's (`32767 / amax` over the row, round half to even, clamped to ±32767).

use std::arch::x86_64::*;

use super::util::hsum_i32_8;

#[target_feature(enable = "avx2,fma,f16c")]
fn ld(x: &[f32], i: usize) -> __m256 {
    let s = &x[i..i + 8];
    // SAFETY: `s` is 8 readable floats; `loadu` needs no alignment.
    unsafe { _mm256_loadu_ps(s.as_ptr()) }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn max_abs(v: &[__m256; 4]) -> f32 {
    let sign = _mm256_set1_ps(-0.0);
    let mut m = _mm256_andnot_ps(sign, v[0]);
    for x in &v[1..] {
        m = _mm256_max_ps(m, _mm256_andnot_ps(sign, *x));
    }
    let m4 = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
    let m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    let m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    _mm_cvtss_f32(m4)
}

/// Pack 4 x 8 i32 (each in -128..=127) into 32 bytes in order.
#[target_feature(enable = "avx2,fma,f16c")]
fn pack_i8(i: [__m256i; 4], out: &mut [u8]) {
    let a = _mm256_packs_epi32(i[0], i[1]);
    let b = _mm256_packs_epi32(i[2], i[3]);
    let p = _mm256_packs_epi16(a, b);
    let p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    let out = &mut out[..32];
    // SAFETY: `out` is 32 writable bytes; `storeu` needs no alignment.
    unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), p) }
}

fn f16_bytes(v: f32) -> [u8; 2] {
    llmopt_tensor::f32_to_f16(v).to_le_bytes()
}

/// One 32-element block to `qs` (multiplier `127 / amax`, round half to even); returns
/// `(d, sum of qs)`.
#[target_feature(enable = "avx2,fma,f16c")]
fn q8_block(x: &[f32], qs: &mut [u8]) -> (f32, i32) {
    let v = [ld(x, 0), ld(x, 8), ld(x, 16), ld(x, 24)];
    let amax = max_abs(&v);
    let d = amax / 127.0;
    let id = _mm256_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
    let i = v.map(|v| {
        _mm256_cvtps_epi32(_mm256_round_ps(
            _mm256_mul_ps(v, id),
            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
        ))
    });
    let sum =
        hsum_i32_8(_mm256_add_epi32(_mm256_add_epi32(i[0], i[1]), _mm256_add_epi32(i[2], i[3])));
    pack_i8(i, qs);
    (d, sum)
}

/// Q8_0 activations; `x.len()` a multiple of 32, `y.len() == x.len() / 32 * 34`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn quantize_row_q8_0(x: &[f32], y: &mut [u8]) {
    assert!(x.len().is_multiple_of(32) && y.len() == x.len() / 32 * 34);
    for (xb, yb) in x.chunks_exact(32).zip(y.chunks_exact_mut(34)) {
        let (d, _) = q8_block(xb, &mut yb[2..]);
        yb[..2].copy_from_slice(&f16_bytes(d));
    }
}

/// Q8_1 activations; `y.len() == x.len() / 32 * 36`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn quantize_row_q8_1(x: &[f32], y: &mut [u8]) {
    assert!(x.len().is_multiple_of(32) && y.len() == x.len() / 32 * 36);
    for (xb, yb) in x.chunks_exact(32).zip(y.chunks_exact_mut(36)) {
        let (d, sum) = q8_block(xb, &mut yb[4..]);
        yb[..2].copy_from_slice(&f16_bytes(d));
        yb[2..4].copy_from_slice(&f16_bytes(sum as f32 * d));
    }
}

/// INT8_PC activations (one row: f32 `d = amax / 127`, then int8 quants by the multiplier
/// `127 / amax`, round half to even); `x.len()` a multiple of 32, `y.len() == 4 + x.len()`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn quantize_row_int8_pc(x: &[f32], y: &mut [u8]) {
    assert!(x.len().is_multiple_of(32) && y.len() == 4 + x.len());
    let sign = _mm256_set1_ps(-0.0);
    let mut m = [_mm256_setzero_ps(); 4];
    for i in (0..x.len()).step_by(32) {
        for (k, m) in m.iter_mut().enumerate() {
            *m = _mm256_max_ps(*m, _mm256_andnot_ps(sign, ld(x, i + 8 * k)));
        }
    }
    let amax = max_abs(&m);
    let id = _mm256_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
    for (i, qs) in (0..x.len()).step_by(32).zip(y[4..].chunks_exact_mut(32)) {
        let q: [__m256i; 4] = std::array::from_fn(|k| {
            _mm256_cvtps_epi32(_mm256_round_ps(
                _mm256_mul_ps(ld(x, i + 8 * k), id),
                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
            ))
        });
        pack_i8(q, qs);
    }
    y[..4].copy_from_slice(&(amax / 127.0).to_le_bytes());
}

/// INT16_PC activations (one row: f32 `d = amax / 32767`, then int16 values `x * (32767 / amax)`
/// rounded half to even and clamped to ±32767, NaN to 0, as the codec's `clamp(..) as i16`);
/// `x.len()` a multiple of 32, `y.len() == 4 + 2 * x.len()`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn quantize_row_int16_pc(x: &[f32], y: &mut [u8]) {
    assert!(x.len().is_multiple_of(32) && y.len() == 4 + 2 * x.len());
    let sign = _mm256_set1_ps(-0.0);
    let mut m = [_mm256_setzero_ps(); 4];
    for i in (0..x.len()).step_by(32) {
        for (k, m) in m.iter_mut().enumerate() {
            // `max` returns its second operand where one is NaN: a NaN `x` is skipped, as the
            // codec's `f32::max` skips it.
            *m = _mm256_max_ps(_mm256_andnot_ps(sign, ld(x, i + 8 * k)), *m);
        }
    }
    let amax = max_abs(&m);
    let id = _mm256_set1_ps(if amax != 0.0 { 32767.0 / amax } else { 0.0 });
    let (lo, hi) = (_mm256_set1_ps(-32767.0), _mm256_set1_ps(32767.0));
    for (i, qs) in (0..x.len()).step_by(16).zip(y[4..].chunks_exact_mut(32)) {
        let q: [__m256i; 2] = std::array::from_fn(|k| {
            let r = _mm256_round_ps(
                _mm256_mul_ps(ld(x, i + 8 * k), id),
                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
            );
            // Clamped (a NaN passes `max` and `min` as their second operand), then NaN to 0.
            let r = _mm256_min_ps(hi, _mm256_max_ps(lo, r));
            _mm256_cvtps_epi32(_mm256_and_ps(r, _mm256_cmp_ps::<_CMP_ORD_Q>(r, r)))
        });
        let p = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packs_epi32(q[0], q[1]));
        // SAFETY: `qs` is 32 writable bytes; `storeu` needs no alignment.
        unsafe { _mm256_storeu_si256(qs.as_mut_ptr().cast(), p) }
    }
    y[..4].copy_from_slice(&(amax / 32767.0).to_le_bytes());
}

/// Q8_K activations; `x.len()` a multiple of 256, `y.len() == x.len() / 256 * 292`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn quantize_row_q8_k(x: &[f32], y: &mut [u8]) {
    assert!(x.len().is_multiple_of(256) && y.len() == x.len() / 256 * 292);
    let sign = _mm256_set1_ps(-0.0);
    for (xb, yb) in x.chunks_exact(256).zip(y.chunks_exact_mut(292)) {
        let mut m = _mm256_setzero_ps();
        for i in (0..256).step_by(8) {
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, ld(xb, i)));
        }
        let m4 = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
        let m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        let amax = _mm_cvtss_f32(_mm_max_ss(m4, _mm_movehdup_ps(m4)));
        if amax == 0.0 {
            yb.fill(0);
            continue;
        }
        // The first element whose magnitude is amax fixes the sign, like the scalar scan. A NaN
        // (from a broken model file) makes amax NaN and matches nothing: garbage in, no panic.
        let max = xb.iter().copied().find(|v| v.abs() == amax).unwrap_or(amax);
        let iscale = -127.0 / max;
        let vs = _mm256_set1_ps(iscale);
        for g in 0..8 {
            let i: [__m256i; 4] = std::array::from_fn(|k| {
                let r = _mm256_round_ps(
                    _mm256_mul_ps(vs, ld(xb, 32 * g + 8 * k)),
                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
                );
                _mm256_min_epi32(_mm256_cvtps_epi32(r), _mm256_set1_epi32(127))
            });
            let s0 = hsum_i32_8(_mm256_add_epi32(i[0], i[1]));
            let s1 = hsum_i32_8(_mm256_add_epi32(i[2], i[3]));
            yb[260 + 4 * g..262 + 4 * g].copy_from_slice(&(s0 as i16).to_le_bytes());
            yb[262 + 4 * g..264 + 4 * g].copy_from_slice(&(s1 as i16).to_le_bytes());
            pack_i8(i, &mut yb[4 + 32 * g..]);
        }
        yb[..4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
    }
}

/// F16 activations (round to nearest even, as the scalar path).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn quantize_row_f16(x: &[f32], y: &mut [u8]) {
    assert!(y.len() == 2 * x.len());
    let n8 = x.len() / 8 * 8;
    for i in (0..n8).step_by(8) {
        let h = _mm256_cvtps_ph(ld(x, i), _MM_FROUND_TO_NEAREST_INT);
        let out = &mut y[2 * i..2 * i + 16];
        // SAFETY: `out` is 16 writable bytes; `storeu` needs no alignment.
        unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), h) }
    }
    for i in n8..x.len() {
        y[2 * i..2 * i + 2].copy_from_slice(&f16_bytes(x[i]));
    }
}

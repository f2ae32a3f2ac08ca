//! Packed Q4_1 and Q8_0 on 512-bit registers: two consecutive 8-row groups at once, group `g` in
//! the low 8 lanes and group `g + 1` in the high 8, so each `vpdpbusd` multiplies 16 rows by a
//! token's 4 activation bytes. Per lane the operations are those of the 8-row kernels
//! ([`super::packed_vnni`]), so the results are the same bits (tested); CPUs with two 512-bit FMA
//! ports (Intel server parts) run twice the products per instruction, others (Zen 4) at least
//! issue half the instructions.

use std::arch::x86_64::*;

use super::packed::{check, record, REC_Q4_1, REC_Q8_0};

/// Whether this CPU runs these kernels: AVX-512 F, BW (byte-wise shifts and masks), VL and VNNI.
pub(crate) fn available() -> bool {
    super::packed_vnni::available() && is_x86_feature_detected!("avx512bw")
}

/// The 16 bytes at `lo` in the low half and those at `hi` in the high half: the two groups' 8
/// f16 scales, for one `vcvtph2ps` to 16 f32.
///
/// # Safety
/// 16 bytes readable at each pointer.
#[target_feature(enable = "avx2,avx512f")]
#[inline]
unsafe fn pair16(lo: *const u8, hi: *const u8) -> __m256i {
    // SAFETY: the caller's; unaligned loads.
    unsafe { _mm256_loadu2_m128i(hi.cast(), lo.cast()) }
}

/// The 32 bytes at `lo` in the low half and those at `hi` in the high half.
///
/// # Safety
/// 32 bytes readable at each pointer; AVX-512 F (the caller's target features).
#[target_feature(enable = "avx2,avx512f")]
#[inline]
unsafe fn pair32(lo: *const u8, hi: *const u8) -> __m512i {
    // SAFETY: the caller's; unaligned loads.
    unsafe {
        let l = _mm512_castsi256_si512(_mm256_loadu_si256(lo.cast()));
        _mm512_inserti64x4::<1>(l, _mm256_loadu_si256(hi.cast()))
    }
}

/// The shapes the pair kernels rely on: both groups' `nb` records of `rec` bytes (the second
/// `gb` bytes on), and as the 8-row kernels' [`check`] for `T` tokens (activation blocks of `ab`
/// bytes, `T x nb` records in `sums`), `16 T` results.
#[allow(clippy::too_many_arguments)]
fn check_groups<const T: usize>(
    nb: usize,
    (w, gb): (&[u8], usize),
    rec: usize,
    a: &[u8],
    a_row: usize,
    ab: usize,
    sums: &[u8],
    out: &[f32],
) {
    assert!(gb >= nb * rec && w.len() >= gb + nb * rec && out.len() >= 16 * T);
    check::<T>(nb, &w[..nb * rec], rec, a, a_row, ab, Some(sums), &out[..8 * T]);
}

/// Writes the `T` tokens' 16-row results: `out[t * 16 + r]`.
#[target_feature(enable = "avx512f")]
#[inline]
fn store16<const T: usize>(acc: &[__m512; T], out: &mut [f32]) {
    for (o, a) in out.chunks_exact_mut(16).zip(acc) {
        // SAFETY: `o` is 16 writable floats; `storeu` has no alignment requirement.
        unsafe { _mm512_storeu_ps(o.as_mut_ptr(), *a) };
    }
}

/// Q4_1 x Q8_1 for 16 rows (the two 8-row groups at `w` and `w[gb..]`, `nb` records each) and
/// `T` tokens into `out[t * 16 + r]` (rows `0..8` the first group's, `8..16` the second's).
/// Low and high nibbles go into one i32 chain per token (the 8-row kernel keeps two and adds
/// them: the same exact sum, and 1.075x here at 128 tokens without the add).
/// `sums` as [`super::packed_vnni::packed_q4_1`]'s.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) fn packed_q4_1_x2<const T: usize>(
    nb: usize,
    (w, gb): (&[u8], usize),
    a: &[u8],
    a_row: usize,
    sums: &[u8],
    out: &mut [f32],
) {
    check_groups::<T>(nb, (w, gb), REC_Q4_1, a, a_row, 36, sums, out);
    let m4 = _mm512_set1_epi8(0x0f);
    let mut acc = [_mm512_setzero_ps(); T];
    for b in 0..nb {
        let (r0, r1) = (w[b * REC_Q4_1..].as_ptr(), w[gb + b * REC_Q4_1..].as_ptr());
        // SAFETY: each record holds 16 bytes of `d`, 16 of `m`, then 128 nibble bytes (asserted
        // above: both groups' `nb` records lie in `w`).
        let (d, m) = unsafe {
            (_mm512_cvtph_ps(pair16(r0, r1)), _mm512_cvtph_ps(pair16(r0.add(16), r1.add(16))))
        };
        let mut sum = [_mm512_setzero_si512(); T];
        for c in 0..4 {
            // SAFETY: chunk c of both records' nibble bytes.
            let v = unsafe { pair32(r0.add(32 + 32 * c), r1.add(32 + 32 * c)) };
            let lo = _mm512_and_si512(v, m4);
            let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(v), m4);
            for (t, s) in sum.iter_mut().enumerate() {
                // SAFETY: bytes 4c..4c+4 and 16+4c..20+4c of token t's block quants (`check`).
                unsafe {
                    let yt = a.as_ptr().add(t * a_row + b * 36 + 4);
                    let y_lo = std::ptr::read_unaligned(yt.add(4 * c).cast::<i32>());
                    let y_hi = std::ptr::read_unaligned(yt.add(16 + 4 * c).cast::<i32>());
                    *s = _mm512_dpbusd_epi32(*s, lo, _mm512_set1_epi32(y_lo));
                    *s = _mm512_dpbusd_epi32(*s, hi, _mm512_set1_epi32(y_hi));
                }
            }
        }
        for t in 0..T {
            // SAFETY: `check` asserted `sums` holds `T * nb` records of (d, s) as f32.
            let [dy, sy] =
                unsafe { record(sums, nb, t, b) }.map(|x| _mm512_set1_ps(f32::from_bits(x)));
            let v = _mm512_fmadd_ps(_mm512_mul_ps(d, dy), _mm512_cvtepi32_ps(sum[t]), acc[t]);
            acc[t] = _mm512_fmadd_ps(m, sy, v);
        }
    }
    store16(&acc, out);
}

/// Q8_0 x Q8_0 for 16 rows as [`packed_q4_1_x2`]: weights offset to unsigned (`xor 0x80`), the
/// even and odd chunks in two i32 chains, the first starting at `128 x` minus the block sum
/// (from the block records), as [`super::packed_vnni::packed_q8_0`].
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) fn packed_q8_0_x2<const T: usize>(
    nb: usize,
    (w, gb): (&[u8], usize),
    a: &[u8],
    a_row: usize,
    sums: &[u8],
    out: &mut [f32],
) {
    check_groups::<T>(nb, (w, gb), REC_Q8_0, a, a_row, 34, sums, out);
    let flip = _mm512_set1_epi8(i8::MIN);
    let mut acc = [_mm512_setzero_ps(); T];
    for b in 0..nb {
        let (r0, r1) = (w[b * REC_Q8_0..].as_ptr(), w[gb + b * REC_Q8_0..].as_ptr());
        // SAFETY: each record holds 16 bytes of `d`, then 256 quant bytes (asserted above).
        let d = unsafe { _mm512_cvtph_ps(pair16(r0, r1)) };
        let mut s = [[_mm512_setzero_si512(); T]; 2];
        for (t, c) in s[0].iter_mut().enumerate() {
            // SAFETY: `check` asserted `sums` holds `T * nb` records (minus the quant sum first).
            let [neg, _] = unsafe { record(sums, nb, t, b) };
            *c = _mm512_slli_epi32::<7>(_mm512_set1_epi32(neg as i32));
        }
        for c in 0..8 {
            // SAFETY: chunk c of both records' quant bytes.
            let u =
                _mm512_xor_si512(unsafe { pair32(r0.add(16 + 32 * c), r1.add(16 + 32 * c)) }, flip);
            for (t, s) in s[c & 1].iter_mut().enumerate() {
                // SAFETY: bytes 4c..4c+4 of token t's block quants (`check`).
                let y = unsafe {
                    std::ptr::read_unaligned(
                        a.as_ptr().add(t * a_row + b * 34 + 2 + 4 * c).cast::<i32>(),
                    )
                };
                *s = _mm512_dpbusd_epi32(*s, u, _mm512_set1_epi32(y));
            }
        }
        for t in 0..T {
            // SAFETY: as above; the record's f32 scale.
            let [_, d_bits] = unsafe { record(sums, nb, t, b) };
            let dy = _mm512_set1_ps(f32::from_bits(d_bits));
            let s32 = _mm512_add_epi32(s[0][t], s[1][t]);
            acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(d, dy), _mm512_cvtepi32_ps(s32), acc[t]);
        }
    }
    store16(&acc, out);
}

#[cfg(test)]
mod tests {
    use llmopt_tensor::GgmlType;

    use super::super::packed_vnni::{self as vnni, tests::case};

    /// The 16-row kernels equal the 8-row kernels on each of their groups, bit for bit, for
    /// 1..=5 and 8 tokens and a second group that is padding past the last row (13 rows).
    #[test]
    fn pair_kernels_equal_two_group_calls() {
        if !super::available() {
            return; // Not handed out on this CPU: the 8-row kernels run alone.
        }
        for ty in [GgmlType::Q4_1, GgmlType::Q8_0] {
            for (rows, cols) in [(16usize, 576usize), (13, 640), (16, 32)] {
                check_pair(ty, rows, cols);
            }
        }
    }

    fn check_pair(ty: GgmlType, rows: usize, cols: usize) {
        let nb = cols / 32;
        let vnni::tests::Case { packed, a, a_row, sums } = case(ty, rows, cols, 8);
        let (d, gb) = (packed.data(), packed.group_bytes());
        macro_rules! check_t {
            ($t:literal) => {{
                let (mut one, mut pair) = ([0f32; 8 * $t], [0f32; 16 * $t]);
                let mut want = [0f32; 16 * $t];
                for g in 0..2 {
                    let wg = &d[g * gb..(g + 1) * gb];
                    // SAFETY: `available()` checked by the caller; the kernels check lengths.
                    unsafe {
                        if ty == GgmlType::Q4_1 {
                            vnni::packed_q4_1::<$t>(nb, wg, &a, a_row, &sums, &mut one);
                        } else {
                            vnni::packed_q8_0::<$t>(nb, wg, &a, a_row, &sums, &mut one);
                        }
                    }
                    for t in 0..$t {
                        want[16 * t + 8 * g..][..8].copy_from_slice(&one[8 * t..][..8]);
                    }
                }
                // SAFETY: as above.
                unsafe {
                    if ty == GgmlType::Q4_1 {
                        super::packed_q4_1_x2::<$t>(nb, (d, gb), &a, a_row, &sums, &mut pair);
                    } else {
                        super::packed_q8_0_x2::<$t>(nb, (d, gb), &a, a_row, &sums, &mut pair);
                    }
                }
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&pair), bits(&want), "{ty} {rows}x{cols}, {} tokens", $t);
                assert!(pair.iter().any(|v| *v != 0.0));
            }};
        }
        check_t!(1);
        check_t!(2);
        check_t!(3);
        check_t!(4);
        check_t!(5);
        check_t!(8);
    }
}

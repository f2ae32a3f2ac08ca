//! Packed W8A16 x INT16_PC kernels ([`crate::PackedWeight`]): per chunk of 2 elements the 8 rows'
//! int8 pairs widened to int16, one `vpdpwssd` (VNNI) or `madd` (AVX2) per token with its pair.

use std::arch::x86_64::*;

use super::packed::{check, store};

/// Bytes of one 8-row block record: the 8 rows' f16 scales, then 16 chunks of 16 quant bytes.
pub(crate) const REC_W8A16: usize = 16 + 256;
/// Bytes before an INT16_PC row's values: the f32 token scale.
const A_HEAD: usize = 4;
/// Bytes of one INT16_PC block (32 int16).
const AB: usize = 64;

/// `acc +` the pair products of `w` (8 rows' int16 pairs) with the 2 int16 at `p` broadcast, per
/// i32 lane, by `madd`.
///
/// # Safety
/// `p..p + 4` must be readable.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn pair_madd(acc: __m256i, w: __m256i, p: *const u8) -> __m256i {
    // SAFETY: the caller's; an unaligned read.
    let y = _mm256_set1_epi32(unsafe { std::ptr::read_unaligned(p.cast::<i32>()) });
    _mm256_add_epi32(acc, _mm256_madd_epi16(w, y))
}

/// [`pair_madd`] by `vpdpwssd` (the broadcast folds into its memory operand): the same integers.
///
/// # Safety
/// As [`pair_madd`], and the CPU must have AVX-512 VNNI + VL.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
#[inline]
unsafe fn pair_vnni(acc: __m256i, w: __m256i, p: *const u8) -> __m256i {
    // SAFETY: the caller's; an unaligned read.
    let y = _mm256_set1_epi32(unsafe { std::ptr::read_unaligned(p.cast::<i32>()) });
    _mm256_dpwssd_epi32(acc, w, y)
}

/// The kernels' body with pair sums from `$pair`. Each 16-byte chunk of a record holds elements
/// `2c, 2c + 1` of rows 0..8, so sign-extended it fills one register with one row per i32 lane,
/// and a token's two int16 activations broadcast to every lane (`{1to8}`, straight from memory)
/// give the 8 rows' pair sums in one instruction. Per block the 16 chunks go into `chains(T)` i32
/// chains per token (chunk `c` into chain `c % chains(T)`); added, the lanes hold the rows' exact
/// block sums (at most 32 · 128 · 32767 < 2^27 in magnitude, whatever the chains), converted,
/// times the 8 row scales and added to the token's f32 sum in block order, at the end times the
/// token scale: the reference's float ops, so results equal it bit for bit, whatever `T`.
macro_rules! kernel {
    ($nb:ident, $w:ident, $a:ident, $a_row:ident, $out:ident, $pair:ident) => {{
        check::<T>($nb, $w, REC_W8A16, $a, $a_row, 0, None, $out);
        super::util::assert_rows($a, T, $a_row, A_HEAD + $nb * AB);
        // One token's 16 dots per block in 4 chains, more tokens' in 2 (each token adds its own).
        const fn chains(t: usize) -> usize {
            if t == 1 {
                4
            } else {
                2
            }
        }
        let ap = $a[A_HEAD..].as_ptr();
        let mut acc = [_mm256_setzero_ps(); T];
        for b in 0..$nb {
            let rec = $w[b * REC_W8A16..][..REC_W8A16].as_ptr();
            // SAFETY: `rec` holds 16 scale bytes; `loadu` needs no alignment.
            let d = _mm256_cvtph_ps(unsafe { _mm_loadu_si128(rec.cast()) });
            let mut s = [[_mm256_setzero_si256(); T]; 4];
            // Chunks in runs of `chains(T)`, so every chain's index is a constant (with `c % n`
            // the compiler kept the chains in memory).
            for c0 in (0..16).step_by(chains(T)) {
                for (k, s) in s[..chains(T)].iter_mut().enumerate() {
                    let c = c0 + k;
                    // SAFETY: chunk c of the record's 256 quant bytes.
                    let q = _mm256_cvtepi8_epi16(unsafe {
                        _mm_loadu_si128(rec.add(16 + 16 * c).cast())
                    });
                    for (t, s) in s.iter_mut().enumerate() {
                        // SAFETY: token t's elements 32b + 2c, + 1 (asserted above).
                        *s = unsafe { $pair(*s, q, ap.add(t * $a_row + b * AB + 4 * c)) };
                    }
                }
            }
            for (t, acc) in acc.iter_mut().enumerate() {
                let mut sum = s[0][t];
                for s in &s[1..chains(T)] {
                    sum = _mm256_add_epi32(sum, s[t]);
                }
                *acc = _mm256_add_ps(*acc, _mm256_mul_ps(_mm256_cvtepi32_ps(sum), d));
            }
        }
        for (t, acc) in acc.iter_mut().enumerate() {
            // SAFETY: token t's f32 scale (asserted above); an unaligned read.
            let da = unsafe { std::ptr::read_unaligned($a.as_ptr().add(t * $a_row).cast::<f32>()) };
            *acc = _mm256_mul_ps(*acc, _mm256_set1_ps(da));
        }
        store(&acc, $out);
    }};
}

/// W8A16 x INT16_PC: 8 packed rows x `T` tokens into `out[t * 8 + r]`, by `madd`; `a` holds
/// INT16_PC rows (f32 scale, then int16 values), `sums` is not read.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn packed_w8a16<const T: usize>(
    nb: usize,
    w: &[u8],
    a: &[u8],
    a_row: usize,
    _sums: &[u8],
    out: &mut [f32],
) {
    kernel!(nb, w, a, a_row, out, pair_madd)
}

/// [`packed_w8a16`] by `vpdpwssd` (AVX-512 VNNI + VL): the same bits.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
pub(crate) fn packed_w8a16_vnni<const T: usize>(
    nb: usize,
    w: &[u8],
    a: &[u8],
    a_row: usize,
    _sums: &[u8],
    out: &mut [f32],
) {
    kernel!(nb, w, a, a_row, out, pair_vnni)
}

#[cfg(test)]
mod tests {
    //! Both forms (`madd`; VNNI where the CPU has it), every `T`, against the scalar reference bit
    //! for bit: the dispatcher hands out one form per CPU, so tests/packed.rs sees only one.

    use super::super::util::assert_bitwise;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use crate::reference::vec_dot_w8a16_int16_pc as reference;
    use crate::x86::avx2::{available, packed_vnni};
    use crate::{Isa, PackedWeight, WeightView};
    use llmopt_tensor::GgmlType;

    type Packed = fn(usize, &[u8], &[u8], usize, &[u8], &mut [f32]);

    /// The `T`-token kernels of the forms this CPU runs.
    fn forms<const T: usize>() -> Vec<Packed> {
        // SAFETY: called only after `available()`.
        let madd: Packed =
            |nb, w, a, ar, s, o| unsafe { super::packed_w8a16::<T>(nb, w, a, ar, s, o) };
        // SAFETY: used only where `packed_vnni::available()`.
        let vnni: Packed =
            |nb, w, a, ar, s, o| unsafe { super::packed_w8a16_vnni::<T>(nb, w, a, ar, s, o) };
        let mut v = vec![madd];
        if packed_vnni::available() {
            v.push(vnni);
        }
        v
    }

    /// One 8-row group (`rows` real ones) x `T` tokens of `n`, each form against the reference.
    fn check<const T: usize>(n: usize, rows: usize, rng: &mut StdRng) {
        let (wr, ar) = (n / 32 * 34, 4 + 2 * n);
        let mut w = vec![0u8; rows * wr];
        for b in w.chunks_exact_mut(34) {
            let d = llmopt_tensor::f32_to_f16(rng.random_range(1e-4..1e-1));
            b[..2].copy_from_slice(&d.to_le_bytes());
            b[2..].iter_mut().for_each(|q| *q = rng.random::<u8>());
        }
        let mut a = vec![0u8; T * ar];
        for row in a.chunks_exact_mut(ar) {
            row[..4].copy_from_slice(&rng.random_range(1e-5f32..1e-2).to_le_bytes());
            for q in row[4..].chunks_exact_mut(2) {
                q.copy_from_slice(&rng.random_range(-32767i16..=32767).to_le_bytes());
            }
        }
        // The extremes: row 0 all -128 against token 0 all -32767 (the largest lane sums).
        w[..wr].chunks_exact_mut(34).for_each(|b| b[2..].fill(0x80));
        a[4..ar].chunks_exact_mut(2).for_each(|q| q.copy_from_slice(&(-32767i16).to_le_bytes()));
        let view = WeightView::new(GgmlType::W8A16, rows, n, &w);
        let p = PackedWeight::new(Isa::Avx2, &view).expect("packable");
        for f in forms::<T>() {
            let mut out = [f32::NAN; 32];
            f(n / 32, p.data(), &a, ar, &[], &mut out);
            let want = |r: usize, t: usize| reference(n, &w[r * wr..], &a[t * ar..]);
            assert_bitwise(&out, 8, (rows, T), want, &format!("T={T} n={n}"));
        }
    }

    #[test]
    fn both_forms_equal_the_reference_bitwise() {
        if !available() {
            return;
        }
        let mut rng = StdRng::seed_from_u64(208);
        for n in [32usize, 576, 640, 896, 1536] {
            for rows in [3usize, 8] {
                check::<1>(n, rows, &mut rng);
                check::<2>(n, rows, &mut rng);
                check::<3>(n, rows, &mut rng);
                check::<4>(n, rows, &mut rng);
            }
        }
    }
}

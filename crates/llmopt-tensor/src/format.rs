//! [`GgmlType`] and the one table of format facts, [`FORMATS`].

use std::fmt;

use crate::codec::kquants_encode as kenc;
use crate::codec::{float, int4, kquants, legacy, mx, nf4, perchannel as pc, weighted as w};
use crate::TensorError;

/// A ggml tensor type, with ggml's numeric ids (`enum ggml_type`), as stored in GGUF files.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum GgmlType {
    /// 32-bit float.
    F32 = 0,
    /// IEEE half.
    F16 = 1,
    /// 32 x 4-bit, f16 scale, offset -8.
    Q4_0 = 2,
    /// 32 x 4-bit, f16 scale and min.
    Q4_1 = 3,
    /// 32 x 5-bit, f16 scale, offset -16.
    Q5_0 = 6,
    /// 32 x 5-bit, f16 scale and min.
    Q5_1 = 7,
    /// 32 x int8, f16 scale.
    Q8_0 = 8,
    /// 32 x int8, f16 scale and f16 `d * sum(qs)` (activation format for Q4_1/Q5_1).
    Q8_1 = 9,
    /// 256-element super-block, 2-bit.
    Q2_K = 10,
    /// 256-element super-block, 3-bit.
    Q3_K = 11,
    /// 256-element super-block, 4-bit with 6-bit sub-block scales and mins.
    Q4_K = 12,
    /// 256-element super-block, 5-bit.
    Q5_K = 13,
    /// 256-element super-block, 6-bit with int8 sub-block scales.
    Q6_K = 14,
    /// 256 x int8, f32 scale, 16 block sums (activation format for the K-quants).
    Q8_K = 15,
    /// bfloat16.
    BF16 = 30,
    /// OCP MXFP4: 32 x E2M1, one shared E8M0 scale byte (ggml's `GGML_TYPE_MXFP4`).
    MXFP4 = 39,
    /// llmopt's own (ids from 200, clear of ggml's): OCP MXFP8, 32 x E4M3, one E8M0 scale byte.
    MXFP8 = 200,
    /// llmopt: int8 per output channel, symmetric: an f32 scale per row, then the int8 values.
    INT8_PC = 201,
    /// llmopt: FP8 E4M3 per output channel: an f32 scale per row, then the E4M3 bytes.
    FP8_PC = 202,
    /// llmopt: bitsandbytes' NF4 levels, 64 per block with an f16 absmax scale.
    NF4 = 203,
    /// llmopt: 128 x 4-bit asymmetric, f16 scale and min (Q4_1's layout with 128-element groups).
    INT4_G128 = 204,
    /// llmopt: W8A8 weights, int8 per output channel for a whole-row integer dot with int8
    /// activations quantized per token (INT8_PC rows): an f32 scale and the i32 sum of the
    /// row's quants per row, then the int8 values.
    W8A8 = 205,
    /// llmopt: W8A16 weights, Q8_0's bytes (32 x int8 with an f16 scale per block) dotted with
    /// 16-bit activations quantized per token (INT16_PC rows) instead of Q8_0's 8-bit blocks.
    W8A16 = 206,
    /// llmopt: activations of W8A16, one token's row: an f32 scale (`amax / 32767`), then the
    /// values as int16 (`x * 32767 / amax`, rounded half to even).
    INT16_PC = 207,
}

/// Decode whole blocks of bytes into f32s.
pub type DecodeFn = fn(src: &[u8], dst: &mut [f32]);
/// Encode f32s into whole blocks of bytes.
pub type EncodeFn = fn(src: &[f32], dst: &mut [u8]);
/// Encode one row of f32s into whole blocks, given one importance per column
/// (`weights.len() == src.len()`).
pub type EncodeWeightedFn = fn(src: &[f32], weights: &[f32], dst: &mut [u8]);

/// Everything the workspace needs to know about one storage format.
#[derive(Debug)]
pub struct FormatSpec {
    /// The format this row describes.
    pub ty: GgmlType,
    /// ggml's `type_name` (`"f32"`, `"q4_0"`, `"q4_K"`, ...), as llama.cpp prints it.
    pub name: &'static str,
    /// Elements per block: 1 for float types, 32 for legacy quants, 256 for K-quants.
    pub block_len: usize,
    /// Bytes per block.
    pub block_bytes: usize,
    /// Bytes of a per-row header before the blocks (the per-channel formats' f32 scale); 0 for
    /// every ggml format. A row is `row_header + n / block_len * block_bytes` bytes
    /// ([`GgmlType::row_bytes`]); codecs of a format with a header take exactly one row.
    pub row_header: usize,
    /// Decode whole blocks: `dst.len() == src.len() / block_bytes * block_len` (with a row
    /// header: one whole row). Panics on other lengths; [`GgmlType::to_f32`] checks them first.
    pub to_f32: DecodeFn,
    /// Scalar reference encoder (ggml's `quantize_row_*_ref`), if written.
    pub from_f32: Option<EncodeFn>,
    /// Importance-weighted encoder of one row (ggml's `quantize_row_*_impl` given an imatrix), for
    /// the types whose ggml quantizer uses importances, and our own weighted scale searches for
    /// MXFP4 (which llama-quantize encodes without importances), MXFP8, NF4 and INT4_G128.
    pub from_f32_weighted: Option<EncodeWeightedFn>,
    /// The activation format a dot product with this weight type quantizes its input to.
    pub vec_dot_type: GgmlType,
}

macro_rules! row {
    ($ty:ident, $name:literal, $len:expr, $bytes:literal $(+ $hdr:literal)?, $to:expr, $from:expr, $weighted:expr, $vdt:ident) => {
        FormatSpec {
            ty: GgmlType::$ty,
            name: $name,
            block_len: $len,
            block_bytes: $bytes,
            row_header: 0 $(+ $hdr)?,
            to_f32: $to,
            from_f32: $from,
            from_f32_weighted: $weighted,
            vec_dot_type: GgmlType::$vdt,
        }
    };
}

/// The format table, one row per [`GgmlType`] (order is not significant). Block bytes `a + h`:
/// `a` bytes per block plus an `h`-byte header per row.
#[rustfmt::skip]
pub static FORMATS: [FormatSpec; GgmlType::ALL.len()] = [
    row!(F32,  "f32",  1,   4,   float::f32_to_f32,    Some(float::f32_from_f32),   None,                   F32),
    row!(F16,  "f16",  1,   2,   float::f16_to_f32s,   Some(float::f16_from_f32s),  None,                   F16),
    row!(BF16, "bf16", 1,   2,   float::bf16_to_f32s,  Some(float::bf16_from_f32s), None,                   BF16),
    row!(Q4_0, "q4_0", 32,  18,  legacy::q4_0_to_f32,  Some(legacy::q4_0_from_f32), Some(w::q4_0_weighted), Q8_0),
    row!(Q4_1, "q4_1", 32,  20,  legacy::q4_1_to_f32,  Some(legacy::q4_1_from_f32), Some(w::q4_1_weighted), Q8_1),
    row!(Q5_0, "q5_0", 32,  22,  legacy::q5_0_to_f32,  Some(legacy::q5_0_from_f32), Some(w::q5_0_weighted), Q8_0),
    row!(Q5_1, "q5_1", 32,  24,  legacy::q5_1_to_f32,  Some(legacy::q5_1_from_f32), Some(w::q5_1_weighted), Q8_1),
    row!(Q8_0, "q8_0", 32,  34,  legacy::q8_0_to_f32,  Some(legacy::q8_0_from_f32), None,                   Q8_0),
    row!(Q8_1, "q8_1", 32,  36,  legacy::q8_1_to_f32,  Some(legacy::q8_1_from_f32), None,                   Q8_1),
    row!(Q2_K, "q2_K", 256, 84,  kquants::q2_k_to_f32, Some(kenc::q2_k_from_f32),   Some(w::q2_k_weighted), Q8_K),
    row!(Q3_K, "q3_K", 256, 110, kquants::q3_k_to_f32, Some(kenc::q3_k_from_f32),   Some(w::q3_k_weighted), Q8_K),
    row!(Q4_K, "q4_K", 256, 144, kquants::q4_k_to_f32, Some(kenc::q4_k_from_f32),   Some(w::q4_k_weighted), Q8_K),
    row!(Q5_K, "q5_K", 256, 176, kquants::q5_k_to_f32, Some(kenc::q5_k_from_f32),   Some(w::q5_k_weighted), Q8_K),
    row!(Q6_K, "q6_K", 256, 210, kquants::q6_k_to_f32, Some(kenc::q6_k_from_f32),   Some(w::q6_k_weighted), Q8_K),
    row!(Q8_K, "q8_K", 256, 292, kquants::q8_k_to_f32, Some(kquants::q8_k_from_f32), None,                 Q8_K),
    row!(MXFP4, "mxfp4", 32, 17, mx::mxfp4_to_f32,     Some(mx::mxfp4_from_f32),    Some(mx::mxfp4_weighted), Q8_0),
    row!(MXFP8, "mxfp8", 32, 33, mx::mxfp8_to_f32,     Some(mx::mxfp8_from_f32),    Some(mx::mxfp8_weighted), F32),
    row!(INT8_PC, "int8_pc", 32, 32 + 4, pc::int8_pc_to_f32, Some(pc::int8_pc_from_f32), None,          Q8_0),
    row!(FP8_PC, "fp8_pc", 32, 32 + 4, pc::fp8_pc_to_f32,   Some(pc::fp8_pc_from_f32),   None,          F32),
    row!(NF4,  "nf4",  64,  34,  nf4::nf4_to_f32,      Some(nf4::nf4_from_f32),     Some(nf4::nf4_weighted), F32),
    row!(INT4_G128, "int4_g128", 128, 68, int4::int4_g128_to_f32, Some(int4::int4_g128_from_f32), Some(int4::int4_g128_weighted), Q8_1),
    row!(W8A8, "w8a8", 32, 32 + 8, pc::w8a8_to_f32, Some(pc::w8a8_from_f32), None,              INT8_PC),
    row!(W8A16, "w8a16", 32, 34, legacy::q8_0_to_f32,  Some(legacy::q8_0_from_f32), None,              INT16_PC),
    row!(INT16_PC, "int16_pc", 32, 64 + 4, pc::int16_pc_to_f32, Some(pc::int16_pc_from_f32), None,  INT16_PC),
];

impl GgmlType {
    /// Every type in the table, in id order.
    pub const ALL: [GgmlType; 24] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q8_1,
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
        GgmlType::Q8_K,
        GgmlType::BF16,
        GgmlType::MXFP4,
        GgmlType::MXFP8,
        GgmlType::INT8_PC,
        GgmlType::FP8_PC,
        GgmlType::NF4,
        GgmlType::INT4_G128,
        GgmlType::W8A8,
        GgmlType::W8A16,
        GgmlType::INT16_PC,
    ];

    /// Whether this is one of llmopt's own formats (ids from 200), which llama.cpp does not read:
    /// its GGUF loader refuses a tensor type id at or past its `GGML_TYPE_COUNT` (43 in 0.3.36).
    pub fn is_llmopt_only(self) -> bool {
        self as u32 >= 200
    }

    /// The type with ggml id `v`, if the table has it.
    pub fn from_u32(v: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|t| *t as u32 == v)
    }

    /// This type's row of [`FORMATS`].
    pub fn spec(self) -> &'static FormatSpec {
        // The table is small; a linear scan over 22 rows compiles to a handful of compares.
        FORMATS.iter().find(|s| s.ty == self).expect("every GgmlType has a FORMATS row")
    }

    /// ggml's lowercase `type_name` (`"q4_K"`, `"bf16"`). `Display` prints the uppercase form
    /// (`"Q4_K"`, `"BF16"`), as llama.cpp's file-type names do.
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// Whether this is a block-quantized (not a plain float) format.
    pub fn is_quantized(self) -> bool {
        self.spec().block_len > 1
    }

    /// Bytes of a row of `n_elems` elements (its header, if the format has one, and its
    /// blocks); an error unless `n_elems` is whole blocks. Every size in the workspace (GGUF
    /// reader and writer, kernels, models) comes from here.
    pub fn row_bytes(self, n_elems: usize) -> Result<usize, TensorError> {
        let s = self.spec();
        if !n_elems.is_multiple_of(s.block_len) {
            return Err(TensorError::NotBlockMultiple {
                ty: self,
                block_len: s.block_len,
                n_elems,
            });
        }
        Ok(s.row_header + n_elems / s.block_len * s.block_bytes)
    }

    /// Decode `src` into `dst`, checking both lengths: whole blocks, or for a format with a row
    /// header exactly one row of `dst.len()` elements (use [`GgmlType::rows_to_f32`] for more).
    pub fn to_f32(self, src: &[u8], dst: &mut [f32]) -> Result<(), TensorError> {
        let expected = self.row_bytes(dst.len())?;
        check_len("quantized source", expected, src.len(), "bytes")?;
        (self.spec().to_f32)(src, dst);
        Ok(())
    }

    /// Decode whole rows of `ncols` elements (`dst.len()` a multiple of `ncols`).
    pub fn rows_to_f32(self, src: &[u8], dst: &mut [f32], ncols: usize) -> Result<(), TensorError> {
        if self.spec().row_header == 0 || dst.is_empty() {
            return self.to_f32(src, dst);
        }
        let rb = self.rows_check(src.len(), dst.len(), ncols)?;
        for (s, d) in src.chunks_exact(rb).zip(dst.chunks_exact_mut(ncols)) {
            (self.spec().to_f32)(s, d);
        }
        Ok(())
    }

    /// Encode whole rows of `ncols` elements with the reference encoder.
    pub fn rows_from_f32(
        self,
        src: &[f32],
        dst: &mut [u8],
        ncols: usize,
    ) -> Result<(), TensorError> {
        if self.spec().row_header == 0 || src.is_empty() {
            return self.from_f32(src, dst);
        }
        let rb = self.rows_check(dst.len(), src.len(), ncols)?;
        for (s, d) in src.chunks_exact(ncols).zip(dst.chunks_exact_mut(rb)) {
            self.from_f32(s, d)?;
        }
        Ok(())
    }

    /// Row bytes, after checking that `n_bytes` and `n_elems` hold the same whole rows.
    fn rows_check(
        self,
        n_bytes: usize,
        n_elems: usize,
        ncols: usize,
    ) -> Result<usize, TensorError> {
        let rb = self.row_bytes(ncols)?;
        let rows = n_elems.checked_div(ncols).unwrap_or(0);
        check_len("elements (whole rows)", rows * ncols, n_elems, "elements")?;
        check_len("quantized rows", rows * rb, n_bytes, "bytes")?;
        Ok(rb)
    }

    /// Encode `src` into `dst` with the reference quantizer, checking both lengths. For the ggml
    /// formats this is also what `ggml_quantize_chunk` (llama-quantize) writes without an imatrix.
    pub fn from_f32(self, src: &[f32], dst: &mut [u8]) -> Result<(), TensorError> {
        let enc = self.spec().from_f32.ok_or(TensorError::NoQuantizer(self))?;
        let expected = self.row_bytes(src.len())?;
        check_len("quantized destination", expected, dst.len(), "bytes")?;
        enc(src, dst);
        Ok(())
    }

    /// Encode one row with per-column importances (an imatrix entry: `weights.len() ==
    /// src.len()`), writing what llama.cpp's `ggml_quantize_chunk` writes when given them.
    ///
    /// Types without a weighted encoder in [`FORMATS`] (floats, Q8_0, and the activation formats)
    /// ignore the importances, as ggml's `quantize_q8_0` does, and use [`GgmlType::from_f32`].
    /// For the others the row boundary matters: Q4_0..Q5_1 mix in the mean square of the whole
    /// row, so encode each row with its own call. Importances are used as given (llama-quantize
    /// rejects non-finite imatrix values when it loads them).
    pub fn quantize_row_weighted(
        self,
        src: &[f32],
        weights: &[f32],
        dst: &mut [u8],
    ) -> Result<(), TensorError> {
        check_len("importance weights", src.len(), weights.len(), "elements")?;
        let Some(enc) = self.spec().from_f32_weighted else {
            return self.from_f32(src, dst);
        };
        let expected = self.row_bytes(src.len())?;
        check_len("quantized destination", expected, dst.len(), "bytes")?;
        enc(src, weights, dst);
        Ok(())
    }
}

fn check_len(
    what: &'static str,
    expected: usize,
    found: usize,
    unit: &'static str,
) -> Result<(), TensorError> {
    if expected == found {
        Ok(())
    } else {
        Err(TensorError::LengthMismatch { what, expected, found, unit })
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name().to_ascii_uppercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_one_row_per_type_and_ids_round_trip() {
        for t in GgmlType::ALL {
            assert_eq!(FORMATS.iter().filter(|s| s.ty == t).count(), 1, "{t:?}");
            assert_eq!(GgmlType::from_u32(t as u32), Some(t));
        }
        assert_eq!(GgmlType::from_u32(4), None);
        assert_eq!(GgmlType::from_u32(16), None);
    }

    #[test]
    fn names_and_sizes_match_ggml() {
        assert_eq!(GgmlType::Q4_K.name(), "q4_K");
        assert_eq!(GgmlType::Q4_K.to_string(), "Q4_K");
        assert_eq!(GgmlType::BF16.to_string(), "BF16");
        assert_eq!(GgmlType::Q4_0.row_bytes(576), Ok(18 * 18));
        assert_eq!(GgmlType::Q6_K.row_bytes(768), Ok(3 * 210));
        assert_eq!(GgmlType::F16.row_bytes(3), Ok(6));
        assert_eq!(GgmlType::MXFP4.row_bytes(576), Ok(18 * 17));
        assert_eq!(GgmlType::MXFP8.row_bytes(576), Ok(18 * 33));
        assert_eq!(GgmlType::INT8_PC.row_bytes(576), Ok(4 + 576));
        assert_eq!(GgmlType::FP8_PC.row_bytes(64), Ok(4 + 64));
        assert_eq!(GgmlType::NF4.row_bytes(576), Ok(9 * 34));
        assert_eq!(GgmlType::INT4_G128.row_bytes(1536), Ok(12 * 68));
        assert!(
            GgmlType::NF4.row_bytes(96).is_err() && GgmlType::INT4_G128.row_bytes(576).is_err()
        );
        assert_eq!(GgmlType::MXFP4 as u32, 39);
        assert!(GgmlType::ALL.iter().all(|t| t.is_llmopt_only() == (*t as u32 >= 200)));
        assert!(!GgmlType::MXFP4.is_llmopt_only() && GgmlType::MXFP8.is_llmopt_only());
        assert!(matches!(
            GgmlType::Q4_K.row_bytes(576),
            Err(TensorError::NotBlockMultiple { block_len: 256, n_elems: 576, .. })
        ));
    }

    #[test]
    fn per_channel_rows_decode_and_encode_row_by_row() {
        let x: Vec<f32> =
            (0..3 * 64).map(|i| (i as f32 * 0.37).sin() * (1 + i / 64) as f32).collect();
        for ty in [GgmlType::INT8_PC, GgmlType::FP8_PC, GgmlType::Q8_0] {
            let mut q = vec![0u8; 3 * ty.row_bytes(64).unwrap()];
            ty.rows_from_f32(&x, &mut q, 64).unwrap();
            let mut y = vec![0.0f32; 3 * 64];
            ty.rows_to_f32(&q, &mut y, 64).unwrap();
            for (a, b) in x.iter().zip(&y) {
                assert!((a - b).abs() < a.abs() / 16.0 + 0.02, "{ty}: {a} {b}");
            }
            // Three rows are not one row of 192 when each row has its own header.
            let whole = ty.to_f32(&q, &mut y);
            assert_eq!(whole.is_ok(), ty.spec().row_header == 0, "{ty}");
        }
        assert!(GgmlType::INT8_PC.rows_to_f32(&[0; 67], &mut [0.0; 64], 64).is_err());
    }

    #[test]
    fn vec_dot_types_follow_ggml() {
        use GgmlType::*;
        for (w, a) in [
            (F32, F32),
            (F16, F16),
            (BF16, BF16),
            (Q4_0, Q8_0),
            (Q5_0, Q8_0),
            (Q8_0, Q8_0),
            (Q4_1, Q8_1),
            (Q5_1, Q8_1),
            (Q2_K, Q8_K),
            (Q3_K, Q8_K),
            (Q4_K, Q8_K),
            (Q5_K, Q8_K),
            (Q6_K, Q8_K),
            (MXFP4, Q8_0),
            (INT8_PC, Q8_0),
            (INT4_G128, Q8_1),
            (MXFP8, F32),
            (FP8_PC, F32),
            (NF4, F32),
        ] {
            assert_eq!(w.spec().vec_dot_type, a, "{w}");
        }
    }
}

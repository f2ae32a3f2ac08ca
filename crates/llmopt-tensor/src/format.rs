//! [`GgmlType`] and the one table of format facts, [`FORMATS`].

use std::fmt;

use crate::codec::kquants_encode as kenc;
use crate::codec::{float, kquants, legacy, weighted as w};
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
    /// Decode whole blocks: `dst.len() == src.len() / block_bytes * block_len`.
    /// Panics on other lengths; [`GgmlType::to_f32`] checks them first.
    pub to_f32: DecodeFn,
    /// Scalar reference encoder (ggml's `quantize_row_*_ref`), if written.
    pub from_f32: Option<EncodeFn>,
    /// Importance-weighted encoder of one row (ggml's `quantize_row_*_impl` given an imatrix), for
    /// the types whose ggml quantizer uses importances.
    pub from_f32_weighted: Option<EncodeWeightedFn>,
    /// The activation format a dot product with this weight type quantizes its input to.
    pub vec_dot_type: GgmlType,
}

macro_rules! row {
    ($ty:ident, $name:literal, $len:expr, $bytes:expr, $to:expr, $from:expr, $weighted:expr, $vdt:ident) => {
        FormatSpec {
            ty: GgmlType::$ty,
            name: $name,
            block_len: $len,
            block_bytes: $bytes,
            to_f32: $to,
            from_f32: $from,
            from_f32_weighted: $weighted,
            vec_dot_type: GgmlType::$vdt,
        }
    };
}

/// The format table, one row per [`GgmlType`] (order is not significant).
#[rustfmt::skip]
pub static FORMATS: [FormatSpec; 15] = [
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
];

impl GgmlType {
    /// Every type in the table, in id order.
    pub const ALL: [GgmlType; 15] = [
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
    ];

    /// The type with ggml id `v`, if the table has it.
    pub fn from_u32(v: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|t| *t as u32 == v)
    }

    /// This type's row of [`FORMATS`].
    pub fn spec(self) -> &'static FormatSpec {
        // The table is small; a linear scan over 15 rows compiles to a handful of compares.
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

    /// Bytes of a row of `n_elems` elements; an error unless `n_elems` is whole blocks.
    pub fn row_bytes(self, n_elems: usize) -> Result<usize, TensorError> {
        let s = self.spec();
        if !n_elems.is_multiple_of(s.block_len) {
            return Err(TensorError::NotBlockMultiple {
                ty: self,
                block_len: s.block_len,
                n_elems,
            });
        }
        Ok(n_elems / s.block_len * s.block_bytes)
    }

    /// Decode `src` (whole blocks) into `dst`, checking both lengths.
    pub fn to_f32(self, src: &[u8], dst: &mut [f32]) -> Result<(), TensorError> {
        let expected = self.row_bytes(dst.len())?;
        check_len("quantized source", expected, src.len(), "bytes")?;
        (self.spec().to_f32)(src, dst);
        Ok(())
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
        assert!(matches!(
            GgmlType::Q4_K.row_bytes(576),
            Err(TensorError::NotBlockMultiple { block_len: 256, n_elems: 576, .. })
        ));
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
        ] {
            assert_eq!(w.spec().vec_dot_type, a, "{w}");
        }
    }
}

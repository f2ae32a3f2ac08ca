//! Re-encoding rows: the source format's decoder to f32, then the target format's encoder from the
//! format table: its importance-weighted one when there is importance and the format has one,
//! GPTQ's block-wise error feedback, else its reference encoder (ggml's `quantize_row_*_ref`).

use llmopt_tensor::GgmlType;

use crate::{awq::Transform, gptq::Prepared, QuantError};

/// An importance-weighted encoder: one row `src` into `dst`, `weights[j]` the importance of
/// column `j` (`weights.len() == src.len()`): the format table's `EncodeWeightedFn`.
pub type WeightedEncodeFn = llmopt_tensor::EncodeWeightedFn;

/// The format table's importance-weighted encoder for `ty` (what llama-quantize runs with an
/// imatrix), if it has one: Q4_0, Q4_1, Q5_0, Q5_1 and Q2_K..Q6_K do; Q8_0 and float formats
/// round to nearest with or without importance, as in llama.cpp.
pub fn weighted_encoder(ty: GgmlType) -> Option<WeightedEncodeFn> {
    ty.spec().from_f32_weighted
}

/// How one tensor's rows are re-encoded.
#[derive(Clone, Copy, Debug)]
pub struct RowCodec<'a> {
    /// The tensor's name, for messages.
    pub name: &'a str,
    pub source: GgmlType,
    pub target: GgmlType,
    /// Elements per row.
    pub ncols: usize,
    pub mode: Encoding<'a>,
    /// Factors applied to the decoded values before encoding (AWQ's scales).
    pub transform: Option<&'a Transform>,
}

/// How rows are encoded.
#[derive(Clone, Copy, Debug)]
pub enum Encoding<'a> {
    /// The format's reference encoder (round to nearest).
    Nearest,
    /// Per-column importance with the encoder that uses it.
    Weighted(&'a [f32], WeightedEncodeFn),
    /// GPTQ with the factor of the rows' input Hessian.
    Gptq(&'a Prepared),
}

impl RowCodec<'_> {
    /// Re-encodes whole rows: `src` (source format) into `dst` (target format), with `scratch`
    /// for the decoded values. `first_row` numbers the rows in messages. Fails on a non-finite
    /// decoded value: the source is damaged, and the encoders would write garbage.
    pub fn convert(
        &self,
        src: &[u8],
        dst: &mut [u8],
        scratch: &mut Vec<f32>,
        first_row: usize,
    ) -> Result<(), QuantError> {
        let src_row = self.source.row_bytes(self.ncols)?;
        let dst_row = self.target.row_bytes(self.ncols)?;
        let rows = src.len() / src_row.max(1);
        scratch.resize(rows * self.ncols, 0.0);
        self.source.rows_to_f32(src, scratch, self.ncols)?;
        if let Some(i) = scratch.iter().position(|v| !v.is_finite()) {
            return Err(QuantError::NonFinite {
                tensor: self.name.to_string(),
                row: first_row + i / self.ncols,
                value: scratch[i],
            });
        }
        if let Some(t) = self.transform {
            t.apply(scratch, self.ncols, first_row);
        }
        match self.mode {
            Encoding::Nearest => self.target.rows_from_f32(scratch, dst, self.ncols)?,
            Encoding::Weighted(weights, encode) => {
                for (x, q) in scratch.chunks_exact(self.ncols).zip(dst.chunks_exact_mut(dst_row)) {
                    encode(x, weights, q);
                }
            }
            Encoding::Gptq(p) => p.quantize_rows(scratch, dst),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_rows_and_refuses_non_finite_values() {
        let x: Vec<f32> = (0..64).map(|i| (i as f32 - 31.5) / 8.0).collect();
        let mut src = vec![0u8; GgmlType::Q8_0.row_bytes(64).unwrap()];
        GgmlType::Q8_0.from_f32(&x, &mut src).unwrap();
        let codec = RowCodec {
            name: "w",
            source: GgmlType::Q8_0,
            target: GgmlType::Q4_0,
            ncols: 32,
            mode: Encoding::Nearest,
            transform: None,
        };
        let mut dst = vec![0u8; 2 * 18];
        let mut scratch = Vec::new();
        codec.convert(&src, &mut dst, &mut scratch, 0).unwrap();
        let mut back = vec![0f32; 64];
        GgmlType::Q4_0.to_f32(&dst, &mut back).unwrap();
        let err = x.iter().zip(&back).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(err < 0.3, "{err}");

        // A NaN scale in the second block (its f16 scale is the block's first two bytes).
        src[34..36].copy_from_slice(&0x7e00u16.to_le_bytes());
        match codec.convert(&src, &mut dst, &mut scratch, 10) {
            Err(QuantError::NonFinite { row: 11, .. }) => {}
            other => panic!("{other:?}"),
        }
    }
}

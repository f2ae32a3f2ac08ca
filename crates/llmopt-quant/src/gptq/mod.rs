//! GPTQ (Frantar et al. 2022) for ggml block formats: a weight's rows are encoded block by block
//! with the format's own encoder, and each block's error, scaled by the inverse Hessian's upper
//! Cholesky factor, moves onto the columns not yet encoded (lazy batches of 128 or 256 columns).
//!
//! Rows are independent given the Hessian `H = 2/n · XᵀX` of the weight's input, so a tensor is
//! encoded in slabs of rows on several threads like any other. Activation order permutes whole
//! format blocks (by decreasing Hessian diagonal), never columns inside a block: a block is stored
//! and scaled as one unit, so only a block-level order stays consistent with what is written.

pub mod hessian;
pub mod linalg;

use llmopt_tensor::{EncodeFn, EncodeWeightedFn, GgmlType};

pub use hessian::{capture_hessians, hessian_key, sees, Hessian, Hessians};

use crate::QuantError;

/// The knobs of GPTQ.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GptqConfig {
    /// Dampening: this fraction of the Hessian's mean diagonal is added to its diagonal.
    pub damp: f64,
    /// Encode format blocks in order of decreasing Hessian diagonal (summed over the block).
    pub act_order: bool,
    /// Encode each block with the format's importance-weighted encoder, the Hessian diagonal as
    /// importance (where the format has one), instead of its reference encoder.
    pub weighted: bool,
}

impl Default for GptqConfig {
    fn default() -> Self {
        Self { damp: 0.01, act_order: false, weighted: true }
    }
}

/// Columns per lazy batch: 128, or one block when blocks are longer.
const LAZY_BATCH: usize = 128;
/// Rows processed together, so each row of the factor is read once per group.
const ROW_GROUP: usize = 8;

/// Why GPTQ cannot write `ty`, where it cannot: a format with one scale per row (GPTQ here encodes
/// block by block). Callers check a plan's formats with it before calibrating.
pub fn refusal(ty: GgmlType) -> Option<String> {
    (ty.spec().row_header > 0).then(|| {
        format!(
            "{ty} keeps one scale per row, and GPTQ here encodes block by block (use --method rtn \
             or imatrix)"
        )
    })
}

/// Everything GPTQ needs for the weights of one Hessian in one format: the factor `U` (upper,
/// `UᵀU = H⁻¹`, in encoding order, f32), the block order and the importances.
#[derive(Clone, Debug)]
pub struct Prepared {
    ty: GgmlType,
    n: usize,
    block_len: usize,
    /// Stored block index of each encoding position's block (identity without act-order).
    block_order: Vec<usize>,
    /// `U`, n x n row-major, in encoding order.
    u: Vec<f32>,
    encode: EncodeFn,
    /// The weighted encoder with the Hessian diagonal (encoding order), when used.
    weighted: Option<(EncodeWeightedFn, Vec<f32>)>,
}

impl Prepared {
    /// Factors `h` for rows of `h.n()` columns encoded in `ty`, on up to `threads` threads. Fails when `ty` has no encoder, has a
    /// per-row header (a per-channel scale), or its blocks do not tile a row, or when `H` is not positive definite even after dampening.
    pub fn new(
        name: &str,
        h: &Hessian,
        ty: GgmlType,
        cfg: &GptqConfig,
        threads: usize,
    ) -> Result<Self, QuantError> {
        let spec = ty.spec();
        let n = h.n();
        let encode = spec
            .from_f32
            .ok_or(QuantError::NoEncoder { ty, available: crate::ftype::encodable_names() })?;
        if let Some(reason) = refusal(ty) {
            return Err(QuantError::Gptq { tensor: name.to_string(), reason });
        }
        let block_len = spec.block_len;
        ty.row_bytes(n)?;
        let mut full = h.to_f64();
        let mean = (0..n).map(|i| full[i * n + i]).sum::<f64>() / n.max(1) as f64;
        let mean = if mean > 0.0 { mean } else { 1.0 };
        for i in 0..n {
            // A column no calibration token touched: its weights cannot be judged; give it an
            // average diagonal so the factor exists and no error is pushed through it.
            if full[i * n + i] <= 0.0 {
                full[i * n + i] = mean;
            }
            full[i * n + i] += cfg.damp * mean;
        }
        let n_blocks = n / block_len;
        let mut block_order: Vec<usize> = (0..n_blocks).collect();
        if cfg.act_order {
            let weight = |b: usize| {
                (b * block_len..(b + 1) * block_len).map(|i| full[i * n + i]).sum::<f64>()
            };
            block_order.sort_by(|&a, &b| weight(b).total_cmp(&weight(a)));
        }
        let perm: Vec<usize> =
            block_order.iter().flat_map(|&b| b * block_len..(b + 1) * block_len).collect();
        let permuted: Vec<f64> = perm
            .iter()
            .flat_map(|&i| perm.iter().map(move |&j| (i, j)))
            .map(|(i, j)| full[i.min(j) * n + i.max(j)])
            .collect();
        let u = linalg::inverse_upper_cholesky(&permuted, n, threads).map_err(|e| {
            QuantError::Gptq {
                tensor: name.to_string(),
                reason: format!(
                    "its Hessian is not positive definite after dampening (pivot {} is {:.3e}); \
                 raise --gptq-damp",
                    e.index, e.pivot
                ),
            }
        })?;
        let weighted = match (cfg.weighted, spec.from_f32_weighted) {
            (true, Some(enc)) => {
                Some((enc, perm.iter().map(|&i| full[i * n + i] as f32).collect()))
            }
            _ => None,
        };
        Ok(Self {
            ty,
            n,
            block_len,
            block_order,
            u: u.into_iter().map(|x| x as f32).collect(),
            encode,
            weighted,
        })
    }

    /// The format the rows are encoded in.
    pub fn format(&self) -> GgmlType {
        self.ty
    }

    /// Whether blocks are encoded with the importance-weighted encoder.
    pub fn is_weighted(&self) -> bool {
        self.weighted.is_some()
    }

    /// Encodes whole rows `w` (f32) into `dst` (the format's rows).
    pub fn quantize_rows(&self, w: &[f32], dst: &mut [u8]) {
        let (n, bl) = (self.n, self.block_len);
        let block_bytes = self.ty.spec().block_bytes;
        let row_bytes = n / bl * block_bytes;
        let batch = LAZY_BATCH.max(bl) / bl * bl;
        let mut work = vec![0f32; ROW_GROUP * n];
        let mut err = vec![0f32; ROW_GROUP * batch];
        let mut q = vec![0f32; bl];
        for (rows, out) in w.chunks(ROW_GROUP * n).zip(dst.chunks_mut(ROW_GROUP * row_bytes)) {
            let g = rows.len() / n;
            let work = &mut work[..g * n];
            for (wr, r) in work.chunks_exact_mut(n).zip(rows.chunks_exact(n)) {
                for (k, &b) in self.block_order.iter().enumerate() {
                    wr[k * bl..(k + 1) * bl].copy_from_slice(&r[b * bl..(b + 1) * bl]);
                }
            }
            for i1 in (0..n).step_by(batch) {
                let i2 = (i1 + batch).min(n);
                for (r, wr) in work.chunks_exact_mut(n).enumerate() {
                    let e = &mut err[r * batch..];
                    for b0 in (i1..i2).step_by(bl) {
                        let stored = self.block_order[b0 / bl];
                        let out = &mut out[r * row_bytes + stored * block_bytes..][..block_bytes];
                        let x = &wr[b0..b0 + bl];
                        match &self.weighted {
                            Some((enc, imp)) => enc(x, &imp[b0..b0 + bl], out),
                            None => (self.encode)(x, out),
                        }
                        (self.ty.spec().to_f32)(out, &mut q);
                        for j in b0..b0 + bl {
                            let uj = &self.u[j * n..(j + 1) * n];
                            let ej = (wr[j] - q[j - b0]) / uj[j];
                            e[j - i1] = ej;
                            for (x, &u) in wr[j + 1..i2].iter_mut().zip(&uj[j + 1..i2]) {
                                *x -= ej * u;
                            }
                        }
                    }
                }
                // The batch's errors reach the later columns at once (GPTQ's lazy update).
                for j in i1..i2 {
                    let uj = &self.u[j * n + i2..(j + 1) * n];
                    for (r, wr) in work.chunks_exact_mut(n).enumerate() {
                        let ej = err[r * batch + j - i1];
                        for (x, &u) in wr[i2..].iter_mut().zip(uj) {
                            *x -= ej * u;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;

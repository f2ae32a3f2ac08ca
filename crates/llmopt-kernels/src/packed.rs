//! Row-interleaved ("repacked") weights, built once at load time, as ggml's `q4_0_8x8` repack:
//! rows in groups of 8, and per group and block (32 elements; Q4_K: 256) one record
//!
//! - Q4_0: the 8 rows' f16 `d` (16 bytes), then 4 chunks of 32 bytes, chunk `c` holding bytes
//!   `qs[4c..4c + 4]` of row 0, row 1, ... row 7 (low nibbles: elements `4c..4c + 4`, high
//!   nibbles: elements `16 + 4c..`), 144 bytes;
//! - Q4_1: the 8 `d`, the 8 `m`, then the nibbles as Q4_0, 160 bytes;
//! - Q8_0: the 8 `d`, then 8 chunks of 32 bytes, chunk `c` holding `qs[4c..4c + 4]` of the 8
//!   rows, 272 bytes;
//! - Q5_0: the 8 `d`, the nibbles as Q4_0, then 32 bytes of 5th bits, byte `4r + i` holding
//!   in bit `2c` the 5th bit of element `4c + i` of row `r` and in bit `2c + 1` that of element
//!   `16 + 4c + i` (c = 0..4): 176 bytes, and one shift and mask puts any chunk's bits at bit 4.
//! - W8A8 (per-row scale, no blocks): per group a 32-byte head, the 8 rows' f32 scales, then per
//!   32 elements a 256-byte record of 8 chunks as Q8_0's (bytes `4c..4c + 4` of the 8 rows), the
//!   quants made unsigned (`q + 128`, `xor 0x80`), so `vpdpbusd` takes them as they are and the
//!   signed activations straight from memory (the kernel takes off `128 x` the activation sum).
//! - W8A16 (Q8_0's blocks, int16 activations): the 8 `d`, then 16 chunks of 16 bytes, chunk `c`
//!   holding `qs[2c..2c + 2]` of the 8 rows, 272 bytes: widened to int16, one row per i32 lane.
//!
//! Records run block by block within a group, groups one after another. A last group with
//! fewer than 8 rows is padded with zero rows (scale 0: their results are never written out).
//! So one 32-byte load gives 4 consecutive elements of 8 rows, and a token's 4 activation bytes
//! broadcast to all lanes multiply into 8 rows at once.

use llmopt_tensor::GgmlType;

use crate::{huge::HugeBytes, Isa, Kernels, WeightView};

/// Rows per interleaved group.
pub const PACK_ROWS: usize = 8;

/// A weight matrix in the 8-row interleaved layout (see the module docs), owning its bytes, and
/// a fingerprint of the [`WeightView`] it was built from: [`crate::matmul`] uses it only for a
/// view with the same type, shape and byte range ([`PackedWeight::matches`]), so a weight whose
/// bytes were swapped never runs on stale packed data.
pub struct PackedWeight {
    ty: GgmlType,
    rows: usize,
    cols: usize,
    src_ptr: usize,
    src_len: usize,
    data: HugeBytes,
}

impl std::fmt::Debug for PackedWeight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedWeight({} {}x{}, {} bytes)", self.ty, self.rows, self.cols, self.n_bytes())
    }
}

/// Sizes of a type's packed layout: an 8-row group is `head` bytes (W8A8: the 8 row scales),
/// then one `record` per block; the generic fill copies each row's quants `chunk` bytes at a
/// time (4: one i32 lane of `vpdpbusd`; W8A16 2: one int16 pair of `vpdpwssd`).
#[derive(Clone, Copy)]
struct Layout {
    head: usize,
    record: usize,
    chunk: usize,
}

/// The layout of `ty`, for the types that have one.
fn layout(ty: GgmlType) -> Option<Layout> {
    let (head, record, chunk) = match ty {
        GgmlType::Q4_0 => (0, 16 + 128, 4),
        GgmlType::Q4_1 => (0, 32 + 128, 4),
        GgmlType::Q8_0 => (0, 16 + 256, 4),
        GgmlType::Q5_0 => (0, 16 + 128 + 32, 4),
        GgmlType::Q4_K => (0, 32 + 64 + 64 + 1024, 4),
        GgmlType::Q6_K => (0, 16 + 128 + 8 * 192, 4),
        GgmlType::W8A8 => (32, 256, 4),
        GgmlType::W8A16 => (0, 16 + 256, 2),
        _ => return None,
    };
    Some(Layout { head, record, chunk })
}

/// Row `r` of a W8A8 group (`src`: f32 scale, i32 Σq, `n` quants) into the group's bytes `dst`.
fn pack_w8a8(src: &[u8], r: usize, dst: &mut [u8]) {
    dst[4 * r..4 * r + 4].copy_from_slice(&src[..4]);
    for (c, qc) in src[8..].chunks_exact(4).enumerate() {
        for (d, &q) in dst[32 + 32 * c + 4 * r..][..4].iter_mut().zip(qc) {
            *d = q ^ 0x80;
        }
    }
}

/// Row `r`'s Q4_K block `src` (d, dmin, 12 bytes of 6-bit scales and mins, 128 nibble bytes) into
/// its 8-row record (see the module docs).
fn pack_q4_k(src: &[u8], r: usize, dst: &mut [u8]) {
    dst[2 * r..2 * r + 2].copy_from_slice(&src[0..2]);
    dst[16 + 2 * r..16 + 2 * r + 2].copy_from_slice(&src[2..4]);
    for j in 0..8 {
        let (sc, m) = llmopt_tensor::get_scale_min_k4(j, &src[4..16]);
        dst[32 + 8 * j + r] = sc;
        dst[96 + 8 * j + r] = m;
    }
    for j in 0..4 {
        for c in 0..8 {
            let o = 160 + 256 * j + 32 * c + 4 * r;
            dst[o..o + 4].copy_from_slice(&src[16 + 32 * j + 4 * c..][..4]);
        }
    }
}

/// Row `r`'s Q6_K block `src` (128 bytes of low nibbles, 64 of top 2 bits, 16 i8 scales, f16 d)
/// into its 8-row record (see the module docs).
fn pack_q6_k(src: &[u8], r: usize, dst: &mut [u8]) {
    dst[2 * r..2 * r + 2].copy_from_slice(&src[208..210]);
    for p in 0..8 {
        dst[16 + 16 * p + 2 * r] = src[192 + 2 * p];
        dst[16 + 16 * p + 2 * r + 1] = src[192 + 2 * p + 1];
    }
    for e in 0..256 {
        // ggml's layout: halves of 128, each 4 runs of 32 (k) sharing `qh[l]`'s bit pairs.
        let (n, k, l) = (e / 128, (e % 128) / 32, e % 32);
        let ql = src[64 * n + l + 32 * (k % 2)];
        let nib = if k < 2 { ql & 0x0f } else { ql >> 4 };
        let top = (src[128 + 32 * n + l] >> (2 * k)) & 3;
        // Ours: group e / 32; its first 16 elements are chunks c (low nibbles, bits 2c of h0),
        // the next 16 chunks c + 4 (high nibbles, bits 2c of h1).
        let (g, x) = (e / 32, e % 32);
        let (half, c, i) = (x / 16, (x % 16) / 4, x % 4);
        let base = 144 + 192 * g;
        dst[base + 32 * c + 4 * r + i] |= nib << (4 * half);
        dst[base + 128 + 32 * half + 4 * r + i] |= top << (2 * c);
    }
}

impl PackedWeight {
    /// Whether [`PackedWeight::new`] would pack weights of type `ty` for `isa`: the layout exists
    /// and `isa` has kernels for it (false for [`Isa::Scalar`], or an unavailable `isa`).
    pub fn supports(isa: Isa, ty: GgmlType) -> bool {
        layout(ty).is_some() && Kernels::get(isa).is_ok_and(|k| k.has_packed(ty))
    }

    /// Repacks `w` for `isa`'s packed kernels; `None` where [`PackedWeight::supports`] says no,
    /// or `w`'s bytes do not fit its shape (the caller keeps using the plain layout).
    pub fn new(isa: Isa, w: &WeightView<'_>) -> Option<PackedWeight> {
        Self::new_many(isa, std::slice::from_ref(w)).pop().flatten()
    }

    /// [`PackedWeight::new`] for each of `ws`, their bytes one after another in one mapping on
    /// huge pages ([`HugeBytes::cut`]), in the order given: a model's weights in the order decode
    /// reads them make one stream.
    pub fn new_many(isa: Isa, ws: &[WeightView<'_>]) -> Vec<Option<PackedWeight>> {
        let lens: Vec<usize> = ws.iter().map(|w| Self::packed_len(isa, w).unwrap_or(0)).collect();
        ws.iter()
            .zip(&lens)
            .zip(HugeBytes::cut(&lens))
            .map(|((w, &len), mut data)| {
                if len == 0 {
                    return None;
                }
                Self::fill(w, data.as_mut_slice());
                Some(PackedWeight {
                    ty: w.ty,
                    rows: w.rows,
                    cols: w.cols,
                    src_ptr: w.data.as_ptr() as usize,
                    src_len: w.data.len(),
                    data,
                })
            })
            .collect()
    }

    /// Bytes of `w` packed for `isa`; `None` where it is not packed (see [`PackedWeight::new`]).
    fn packed_len(isa: Isa, w: &WeightView<'_>) -> Option<usize> {
        if !Self::supports(isa, w.ty) {
            return None;
        }
        let l = layout(w.ty)?;
        let w_row = w.ty.row_bytes(w.cols).ok()?;
        if w.data.len() != w.rows * w_row {
            return None;
        }
        let nb = w.cols / w.ty.spec().block_len;
        let len = w.rows.div_ceil(PACK_ROWS) * (l.head + nb * l.record);
        (len > 0).then_some(len)
    }

    /// Writes `w`'s records into `data` (zeroed, [`PackedWeight::packed_len`] bytes).
    fn fill(w: &WeightView<'_>, data: &mut [u8]) {
        let Some(Layout { head, record: rec, chunk: cw }) = layout(w.ty) else { return };
        let spec = w.ty.spec();
        let (bl, bb) = (spec.block_len, spec.block_bytes);
        let w_row = w.data.len() / w.rows;
        let nb = w.cols / bl;
        // (offset of the scales in a ggml block, their offset in the record), and the quants.
        let (scales, q_src): (&[(usize, usize)], usize) = match w.ty {
            GgmlType::Q4_1 => (&[(0, 0), (2, 16)], 4),
            _ => (&[(0, 0)], 2),
        };
        let q_dst = 16 * scales.len();
        let chunks = (bb - q_src) / cw;
        for (g, gdata) in data.chunks_exact_mut(head + nb * rec).enumerate() {
            for r in 0..PACK_ROWS.min(w.rows - g * PACK_ROWS) {
                let row = &w.data[(g * PACK_ROWS + r) * w_row..][..w_row];
                if w.ty == GgmlType::W8A8 {
                    pack_w8a8(row, r, gdata);
                    continue;
                }
                for (src, dst) in row.chunks_exact(bb).zip(gdata.chunks_exact_mut(rec)) {
                    if w.ty == GgmlType::Q4_K {
                        pack_q4_k(src, r, dst);
                        continue;
                    }
                    if w.ty == GgmlType::Q6_K {
                        pack_q6_k(src, r, dst);
                        continue;
                    }
                    for &(s, d) in scales {
                        dst[d + 2 * r..d + 2 * r + 2].copy_from_slice(&src[s..s + 2]);
                    }
                    if w.ty == GgmlType::Q5_0 {
                        let qh = u32::from_le_bytes([src[2], src[3], src[4], src[5]]);
                        for c in 0..4 {
                            let o = 16 + 32 * c + 4 * r;
                            dst[o..o + 4].copy_from_slice(&src[6 + 4 * c..6 + 4 * c + 4]);
                            for i in 0..4 {
                                let (lo, hi) =
                                    ((qh >> (4 * c + i)) & 1, (qh >> (16 + 4 * c + i)) & 1);
                                dst[144 + 4 * r + i] |= ((lo | hi << 1) << (2 * c)) as u8;
                            }
                        }
                        continue;
                    }
                    for c in 0..chunks {
                        let o = q_dst + PACK_ROWS * cw * c + cw * r;
                        dst[o..o + cw].copy_from_slice(&src[q_src + cw * c..][..cw]);
                    }
                }
            }
        }
    }

    /// Whether this was built from `w`'s bytes (same type, shape and byte range).
    pub fn matches(&self, w: &WeightView<'_>) -> bool {
        (self.ty, self.rows, self.cols) == (w.ty, w.rows, w.cols)
            && self.src_ptr == w.data.as_ptr() as usize
            && self.src_len == w.data.len()
    }

    /// Storage format of the source rows.
    pub fn ty(&self) -> GgmlType {
        self.ty
    }

    /// Bytes held (the rows padded to a multiple of 8).
    pub fn n_bytes(&self) -> usize {
        self.data.as_slice().len()
    }

    /// Bytes of one group's records.
    pub(crate) fn group_bytes(&self) -> usize {
        self.data.as_slice().len() / self.rows.div_ceil(PACK_ROWS).max(1)
    }

    /// The packed bytes.
    pub(crate) fn data(&self) -> &[u8] {
        self.data.as_slice()
    }
}

#[cfg(test)]
mod tests {
    use llmopt_tensor::GgmlType;

    use super::PackedWeight;
    use crate::{Isa, WeightView};

    /// Bytes of `rows x cols` weights of `ty` with varied quants and scales (not zeros).
    fn weights(ty: GgmlType, rows: usize, cols: usize, seed: u32) -> Vec<u8> {
        let x: Vec<f32> = (0..rows * cols)
            .map(|i| ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 20) as f32)
            .map(|v| v / 2048.0 - 1.0)
            .collect();
        let mut w = vec![0u8; rows * ty.row_bytes(cols).unwrap()];
        ty.from_f32(&x, &mut w).unwrap();
        w
    }

    #[test]
    fn many_weights_pack_as_one_by_one_in_one_ordered_run() {
        let isa = Isa::best();
        let shapes = [(GgmlType::Q4_0, 13, 64), (GgmlType::F32, 8, 32), (GgmlType::Q8_0, 24, 96)];
        let data: Vec<Vec<u8>> =
            shapes.iter().enumerate().map(|(i, &(ty, r, c))| weights(ty, r, c, i as u32)).collect();
        let views: Vec<WeightView<'_>> =
            shapes.iter().zip(&data).map(|(&(ty, r, c), d)| WeightView::new(ty, r, c, d)).collect();
        let many = PackedWeight::new_many(isa, &views);
        assert_eq!(many.len(), views.len());
        let mut last_end = 0usize;
        for (v, p) in views.iter().zip(&many) {
            let one = PackedWeight::new(isa, v);
            assert_eq!(p.is_some(), one.is_some(), "{}", v.ty);
            let (Some(p), Some(one)) = (p, one) else { continue };
            assert!(p.matches(v));
            assert_eq!(p.data(), one.data(), "{}", v.ty);
            let start = p.data().as_ptr() as usize;
            assert!(start >= last_end, "{} packed after the weight before it", v.ty);
            last_end = start + p.n_bytes();
        }
        // F32 has no packed layout; Q4_0 and Q8_0 have one wherever the ISA has kernels.
        assert!(many[1].is_none());
        assert_eq!(many[0].is_some(), PackedWeight::supports(isa, GgmlType::Q4_0));
    }
}

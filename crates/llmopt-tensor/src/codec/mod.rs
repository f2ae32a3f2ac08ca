//! Scalar codecs, one file per family. Each function works on whole blocks given as byte slices
//! and panics if the lengths disagree (the checked entry points are on `GgmlType`).

pub(crate) mod float;
pub(crate) mod int4;
pub(crate) mod kquants;
pub(crate) mod kquants_encode;
pub(crate) mod legacy;
pub(crate) mod mx;
pub(crate) mod nf4;
pub(crate) mod perchannel;
pub(crate) mod scale_search;
pub(crate) mod weighted;

use half::f16;

/// The f16 at byte offset `off`, widened to f32 (exact).
#[inline(always)]
pub(crate) fn rd_f16(b: &[u8], off: usize) -> f32 {
    f16::from_le_bytes([b[off], b[off + 1]]).to_f32()
}

/// Store `v` as f16 (round to nearest even, like ggml's `GGML_FP32_TO_FP16`) at `off`.
#[inline(always)]
pub(crate) fn wr_f16(b: &mut [u8], off: usize, v: f32) {
    b[off..off + 2].copy_from_slice(&f16::from_f32(v).to_le_bytes());
}

/// Split `src`/`dst` into matching blocks, panicking on a length mismatch.
#[inline(always)]
pub(crate) fn check_blocks(n_src_bytes: usize, n_dst: usize, block_bytes: usize, block_len: usize) {
    assert!(
        n_src_bytes.is_multiple_of(block_bytes) && n_src_bytes / block_bytes * block_len == n_dst,
        "codec: {n_src_bytes} bytes of {block_bytes}-byte blocks do not hold {n_dst} elements"
    );
}

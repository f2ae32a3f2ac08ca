//! AVX2 + FMA + F16C kernels. Every function here is `#[target_feature]`; the only way to reach
//! them is [`table`], which checks the CPU first.

mod float;
mod kquants;
mod legacy;
mod mx;
mod packed;
mod packed_vnni;
mod packed_vnni512;
mod packed_vnni_k;
mod packed_w8a16;
mod quantize;
mod tile_float;
mod tile_int4;
mod tile_kquants;
mod tile_legacy;
mod tile_own;
mod util;
mod w8a16;
mod w8a8;

use llmopt_tensor::GgmlType;

use crate::dispatch::{
    PackedFn, PackedKernel, PackedPairFn, QuantizeFn, TileFn, TileKernel, VecDotFn,
};

/// Whether this CPU runs these kernels.
pub(crate) fn available() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
}

macro_rules! safe {
    (dot $f:path) => {{
        fn wrapped(n: usize, w: &[u8], a: &[u8]) -> f32 {
            // SAFETY: `wrapped` is only handed out by `table`, after `available()` said yes.
            unsafe { $f(n, w, a) }
        }
        wrapped as VecDotFn
    }};
    (vnni dot $f:path) => {{
        fn wrapped(n: usize, w: &[u8], a: &[u8]) -> f32 {
            // SAFETY: only handed out by `vec_dot` after `packed_vnni::available()` (AVX-512
            // VNNI + VL) said yes, on top of `available()`.
            unsafe { $f(n, w, a) }
        }
        wrapped as VecDotFn
    }};
    (quant $f:path) => {{
        fn wrapped(x: &[f32], y: &mut [u8]) {
            // SAFETY: as above, only reachable once the CPU features were detected.
            unsafe { $f(x, y) }
        }
        wrapped as QuantizeFn
    }};
    (tile $f:ident, $r:literal, $t:literal) => {{
        fn wrapped(n: usize, w: &[u8], w_row: usize, a: &[u8], a_row: usize, out: &mut [f32]) {
            // SAFETY: as above, only reachable once the CPU features were detected.
            unsafe { $f::<$r, $t>(n, w, w_row, a, a_row, out) }
        }
        TileKernel { rows: $r, toks: $t, f: wrapped as TileFn }
    }};
    (wide tile $f:ident, $r:literal, $t:literal) => {{
        fn wrapped(n: usize, w: &[u8], w_row: usize, a: &[u8], a_row: usize, out: &mut [f32]) {
            // SAFETY: only handed out by `tile` after `tile_float::wide_available()` said yes.
            unsafe { $f::<$r, $t>(n, w, w_row, a, a_row, out) }
        }
        TileKernel { rows: $r, toks: $t, f: wrapped as TileFn }
    }};
    (vnni tile $f:ident, $r:literal, $t:literal) => {{
        fn wrapped(n: usize, w: &[u8], w_row: usize, a: &[u8], a_row: usize, out: &mut [f32]) {
            // SAFETY: only handed out by `tile` after `packed_vnni::available()` said yes.
            unsafe { $f::<$r, $t>(n, w, w_row, a, a_row, out) }
        }
        TileKernel { rows: $r, toks: $t, f: wrapped as TileFn }
    }};
    (packed $m:ident $f:ident, $t:literal) => {{
        fn wrapped(nb: usize, w: &[u8], a: &[u8], a_row: usize, sums: &[u8], out: &mut [f32]) {
            // SAFETY: as above, only reachable once the CPU features were detected (for
            // `packed_vnni` and the `_vnni` forms, also AVX-512 VNNI + VL: see `packed`).
            unsafe { $m::$f::<$t>(nb, w, a, a_row, sums, out) }
        }
        wrapped as PackedFn
    }};
    (pair $f:ident, $t:literal) => {{
        fn wrapped(
            nb: usize,
            w: (&[u8], usize),
            a: &[u8],
            a_row: usize,
            sums: &[u8],
            out: &mut [f32],
        ) {
            // SAFETY: only handed out by `packed` after `packed_vnni512::available()` said yes.
            unsafe { packed_vnni512::$f::<$t>(nb, w, a, a_row, sums, out) }
        }
        wrapped as PackedPairFn
    }};
    (pair8 $f:ident) => {
        [
            safe!(pair $f, 1),
            safe!(pair $f, 2),
            safe!(pair $f, 3),
            safe!(pair $f, 4),
            safe!(pair $f, 5),
            safe!(pair $f, 6),
            safe!(pair $f, 7),
            safe!(pair $f, 8),
        ]
    };
    (packed4 $f:ident) => {
        safe!(packed4 packed $f)
    };
    (packed4 $m:ident $f:ident) => {
        [
            safe!(packed $m $f, 1),
            safe!(packed $m $f, 2),
            safe!(packed $m $f, 3),
            safe!(packed $m $f, 4),
        ]
    };
}

/// The AVX2 vec_dot for weight type `ty`, if one is written (else the caller uses scalar).
pub(crate) fn vec_dot(ty: GgmlType) -> Option<VecDotFn> {
    use GgmlType::*;
    Some(match ty {
        F32 => safe!(dot float::vec_dot_f32_f32),
        F16 => safe!(dot float::vec_dot_f16_f16),
        Q4_0 => safe!(dot legacy::vec_dot_q4_0_q8_0),
        Q4_1 => safe!(dot legacy::vec_dot_q4_1_q8_1),
        Q5_0 => safe!(dot legacy::vec_dot_q5_0_q8_0),
        Q5_1 => safe!(dot legacy::vec_dot_q5_1_q8_1),
        Q8_0 => safe!(dot legacy::vec_dot_q8_0_q8_0),
        Q4_K => safe!(dot kquants::vec_dot_q4_k_q8_k),
        Q5_K => safe!(dot kquants::vec_dot_q5_k_q8_k),
        Q6_K => safe!(dot kquants::vec_dot_q6_k_q8_k),
        MXFP4 => safe!(dot mx::vec_dot_mxfp4_q8_0),
        MXFP8 => safe!(dot mx::vec_dot_mxfp8_f32),
        INT8_PC => safe!(dot mx::vec_dot_int8_pc_q8_0),
        FP8_PC => safe!(dot mx::vec_dot_fp8_pc_f32),
        NF4 => safe!(dot mx::vec_dot_nf4_f32),
        INT4_G128 => safe!(dot mx::vec_dot_int4_g128_q8_1),
        W8A8 if packed_vnni::available() => safe!(vnni dot w8a8::vec_dot_w8a8_int8_pc_vnni),
        W8A8 => safe!(dot w8a8::vec_dot_w8a8_int8_pc),
        W8A16 if packed_vnni::available() => safe!(vnni dot w8a16::vec_dot_w8a16_int16_pc_vnni),
        W8A16 => safe!(dot w8a16::vec_dot_w8a16_int16_pc),
        _ => return None,
    })
}

/// The AVX2 quantizer producing activation format `ty`, if one is written.
pub(crate) fn quantize(ty: GgmlType) -> Option<QuantizeFn> {
    use GgmlType::*;
    Some(match ty {
        Q8_0 => safe!(quant quantize::quantize_row_q8_0),
        Q8_1 => safe!(quant quantize::quantize_row_q8_1),
        Q8_K => safe!(quant quantize::quantize_row_q8_k),
        INT8_PC => safe!(quant quantize::quantize_row_int8_pc),
        INT16_PC => safe!(quant quantize::quantize_row_int16_pc),
        F16 => safe!(quant quantize::quantize_row_f16),
        _ => return None,
    })
}

/// The AVX2 multi-row x multi-token kernel for weight type `ty`, if one is written. Shapes are
/// the fastest of 1x1 .. 4x4 and 2x8 by min-of-200 timings of a 64-row x 16-token task on AVX2
/// Zen (x 4 tokens throughout, so batches of 4+ tokens already take the tile path); W8A8's of 13
/// shapes up to 16 pairs at widths 576 and 1536 on Zen 4 (VNNI: 3x4, 1.1x faster than 4x4), W8A16's
/// of 12 the same way (4x4 in both forms, see `w8a16.rs`);
/// llmopt's own formats' (`tile_own.rs`, `tile_float.rs`, `tile_int4.rs`) by the same task at widths 640 and
/// 2048 on Zen 4, the f32-activation ones in a `wide` form (AVX-512 F + VL: 32 registers) where
/// the CPU has it.
pub(crate) fn tile(ty: GgmlType) -> Option<TileKernel> {
    use tile_float::*;
    use tile_int4::*;
    use tile_kquants::*;
    use tile_legacy::*;
    use tile_own::*;
    use w8a16::{tile_w8a16_int16_pc, tile_w8a16_int16_pc_vnni};
    use w8a8::{tile_w8a8_int8_pc, tile_w8a8_int8_pc_vnni};
    use GgmlType::*;
    Some(match ty {
        Q4_0 => safe!(tile tile_q4_0_q8_0, 3, 4),
        Q4_1 => safe!(tile tile_q4_1_q8_1, 2, 4),
        Q5_0 => safe!(tile tile_q5_0_q8_0, 3, 4),
        Q8_0 => safe!(tile tile_q8_0_q8_0, 3, 4),
        Q4_K => safe!(tile tile_q4_k_q8_k, 4, 4),
        Q6_K => safe!(tile tile_q6_k_q8_k, 2, 4),
        INT8_PC if packed_vnni::available() => safe!(vnni tile tile_int8_pc_q8_0_vnni, 3, 4),
        INT8_PC => safe!(tile tile_int8_pc_q8_0, 3, 4),
        MXFP4 if packed_vnni::available() => safe!(vnni tile tile_mxfp4_q8_0_vnni, 4, 4),
        MXFP4 => safe!(tile tile_mxfp4_q8_0, 2, 8),
        MXFP8 if wide_available() => safe!(wide tile tile_mxfp8_f32_wide, 2, 8),
        MXFP8 => safe!(tile tile_mxfp8_f32, 2, 8),
        FP8_PC if wide_available() => safe!(wide tile tile_fp8_pc_f32_wide, 2, 8),
        FP8_PC => safe!(tile tile_fp8_pc_f32, 2, 4),
        NF4 if wide_available() => safe!(wide tile tile_nf4_f32_wide, 2, 8),
        NF4 => safe!(tile tile_nf4_f32, 3, 4),
        INT4_G128 if packed_vnni::available() => safe!(vnni tile tile_int4_g128_q8_1_vnni, 2, 8),
        INT4_G128 => safe!(tile tile_int4_g128_q8_1, 2, 8),
        W8A8 if packed_vnni::available() => {
            safe!(vnni tile tile_w8a8_int8_pc_vnni, 3, 4)
        }
        W8A8 => safe!(tile tile_w8a8_int8_pc, 4, 4),
        W8A16 if packed_vnni::available() => safe!(vnni tile tile_w8a16_int16_pc_vnni, 4, 4),
        W8A16 => safe!(tile tile_w8a16_int16_pc, 4, 4),
        _ => return None,
    })
}

/// The AVX2 kernels over 8-row interleaved weights (`crate::PackedWeight`) for weight type `ty`;
/// Q4_0, Q4_1, Q5_0 and Q8_0 take the VNNI forms where the CPU has AVX-512 VNNI + VL, and Q4_1
/// and Q8_0 also the 16-row forms (`packed_vnni512`) where it has AVX-512 BW too. W8A8 packs on
/// VNNI CPUs only: a 64-row x 16-token task (`task64x16`, one run, Zen 4) took 6.2 / 13.5 µs at
/// widths 576 / 1536 packed against 8.3 / 15.2 µs for the 3x4 VNNI tiles. W8A16 packs in both
/// forms (`packed_w8a16.rs`); on Zen 4, VNNI: decode from memory as fast as packed Q8_0 (25-27
/// GiB/s, one thread; plain rows 21-22), `task64x16` 9.2 / 23.3 µs against 13.5 / 33 µs for the
/// tiles, 128-token prefill 1.5-1.7x faster than the tiles; the AVX2 form there 1.2-1.6x faster
/// than the AVX2 tiles and `vec_dot`.
pub(crate) fn packed(ty: GgmlType) -> Option<PackedKernel> {
    use GgmlType::*;
    let vnni = packed_vnni::available();
    // 8-row kernels only; `pairs` adds the 16-row ones where the CPU runs them.
    let one = |needs_sums, f| PackedKernel { needs_sums, f, f2: None };
    let pairs = |k: PackedKernel, f2: fn() -> [PackedPairFn; 8]| PackedKernel {
        f2: packed_vnni512::available().then(f2),
        ..k
    };
    Some(match ty {
        Q4_0 if vnni => one(true, safe!(packed4 packed_vnni packed_q4_0)),
        Q8_0 if vnni => {
            pairs(one(true, safe!(packed4 packed_vnni packed_q8_0)), || safe!(pair8 packed_q8_0_x2))
        }
        Q4_K if vnni => one(false, safe!(packed4 packed_vnni_k packed_q4_k)),
        Q6_K if vnni => one(false, safe!(packed4 packed_vnni_k packed_q6_k)),
        Q5_0 if vnni => one(true, safe!(packed4 packed_vnni packed_q5_0)),
        Q4_0 => one(true, safe!(packed4 packed_q4_0)),
        Q4_1 if vnni => {
            pairs(one(true, safe!(packed4 packed_vnni packed_q4_1)), || safe!(pair8 packed_q4_1_x2))
        }
        Q4_1 => one(true, safe!(packed4 packed_q4_1)),
        Q8_0 => one(false, safe!(packed4 packed_q8_0)),
        Q5_0 => one(true, safe!(packed4 packed_q5_0)),
        W8A8 if vnni => one(false, safe!(packed4 packed_vnni packed_w8a8)),
        W8A16 if vnni => one(false, safe!(packed4 packed_w8a16 packed_w8a16_vnni)),
        W8A16 => one(false, safe!(packed4 packed_w8a16 packed_w8a16)),
        _ => return None,
    })
}

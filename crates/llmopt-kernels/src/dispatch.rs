//! Run-time kernel selection: one table of fn pointers per [`Isa`], built once.

use std::sync::OnceLock;

use llmopt_tensor::GgmlType;

use crate::{reference, KernelError};

/// `dot(n, weight_row_bytes, activation_row_bytes)` over `n` elements.
pub type VecDotFn = fn(n: usize, w: &[u8], a: &[u8]) -> f32;
/// Quantize a row of f32 activations into a format's bytes.
pub type QuantizeFn = fn(x: &[f32], y: &mut [u8]);
/// `tile(n, w, w_row, a, a_row, out)`: the dots of `rows` weight rows (row `r` at
/// `w[r * w_row..]`) with `toks` activation rows (token `t` at `a[t * a_row..]`), each over `n`
/// elements, into `out[t * rows + r]`; `rows` and `toks` are the [`TileKernel`]'s. Each result
/// equals the same [`Isa`]'s [`VecDotFn`] on that pair, bit for bit.
pub type TileFn = fn(n: usize, w: &[u8], w_row: usize, a: &[u8], a_row: usize, out: &mut [f32]);

/// `packed(nb, w, a, a_row, sums, out)`: the dots of one 8-row group of a [`crate::PackedWeight`]
/// (`nb` block records at `w`) with `T` activation rows (token `t` at `a[t * a_row..]`) into
/// `out[t * 8 + r]`; `sums` holds `nb` records of [`BLOCK_INFO`] bytes per token where the kernel
/// needs them (Q4_0, Q4_1, Q5_0; Q8_0 on VNNI), else is ignored.
pub(crate) type PackedFn =
    fn(nb: usize, w: &[u8], a: &[u8], a_row: usize, sums: &[u8], out: &mut [f32]);

/// Bytes per token and activation block in a packed kernel's `sums`, little-endian: for a Q8_0
/// block minus the sum of its 32 quants (i32), then its scale `d` as f32; for Q8_1, its `d` and
/// `s` as f32. Kernels add `k x` the Q8_0 sum to their unsigned-weight integer dot (so no
/// subtraction), and read the scales without an f16 conversion per block and row group.
pub(crate) const BLOCK_INFO: usize = 8;

/// `packed2(nb, (w, gb), a, a_row, sums, out)`: as [`PackedFn`] for two consecutive 8-row groups
/// at once (the second at `w[gb..]`, `gb` the bytes of a group), into `out[t * 16 + r]`; each
/// result the same bits as the one-group kernel's.
pub(crate) type PackedPairFn =
    fn(nb: usize, w: (&[u8], usize), a: &[u8], a_row: usize, sums: &[u8], out: &mut [f32]);

/// The packed kernels of one weight type: 8-row `f[T - 1]` for `T` = 1..=4 tokens per call, and
/// where written 16-row `f2`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PackedKernel {
    /// Whether the kernel reads the activations' block records (`sums`, see [`BLOCK_INFO`]).
    pub(crate) needs_sums: bool,
    /// By tokens per call.
    pub(crate) f: [PackedFn; 4],
    /// Two groups per call (16 rows on 512-bit registers), `f2[T - 1]` for `T` = 1..=8 tokens
    /// per call, where written.
    pub(crate) f2: Option<[PackedPairFn; 8]>,
}

/// A [`TileFn`] and its fixed tile shape: weight blocks are unpacked once per tile and reused
/// across `toks` tokens, activation blocks reused across `rows` rows (prefill).
#[derive(Clone, Copy, Debug)]
pub struct TileKernel {
    /// Weight rows per call.
    pub rows: usize,
    /// Tokens per call.
    pub toks: usize,
    /// The kernel.
    pub f: TileFn,
}

/// An instruction set to run kernels with. Pass [`Isa::Scalar`] to force the reference path
/// (tests do); [`Isa::best`] is what `matmul` uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Portable scalar reference kernels.
    Scalar,
    /// x86-64 AVX2 + FMA + F16C (falls back to scalar per format where none is written).
    Avx2,
}

impl Isa {
    /// The fastest instruction set this CPU supports (detected once).
    pub fn best() -> Isa {
        static BEST: OnceLock<Isa> = OnceLock::new();
        *BEST.get_or_init(|| if Isa::Avx2.is_available() { Isa::Avx2 } else { Isa::Scalar })
    }

    /// Whether this CPU can run `self`.
    pub fn is_available(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => crate::x86::avx2::available(),
            #[cfg(not(target_arch = "x86_64"))]
            Isa::Avx2 => false,
        }
    }
}

/// The kernels of one [`Isa`], indexed by ggml type.
#[derive(Debug)]
pub struct Kernels {
    isa: Isa,
    vec_dot: [Option<VecDotFn>; N],
    quantize: [Option<QuantizeFn>; N],
    tile: [Option<TileKernel>; N],
    packed: [Option<PackedKernel>; N],
    simd_dot: [bool; N],
    simd_quant: [bool; N],
}

/// Types in the table.
const N: usize = GgmlType::ALL.len();

fn slot(ty: GgmlType) -> usize {
    GgmlType::ALL.iter().position(|t| *t == ty).expect("every type is in ALL")
}

fn scalar_vec_dot(ty: GgmlType) -> Option<VecDotFn> {
    use GgmlType::*;
    Some(match ty {
        F32 => reference::vec_dot_f32_f32,
        F16 => reference::vec_dot_f16_f16,
        BF16 => reference::vec_dot_bf16_bf16,
        Q4_0 => reference::vec_dot_q4_0_q8_0,
        Q4_1 => reference::vec_dot_q4_1_q8_1,
        Q5_0 => reference::vec_dot_q5_0_q8_0,
        Q5_1 => reference::vec_dot_q5_1_q8_1,
        Q8_0 => reference::vec_dot_q8_0_q8_0,
        Q2_K => reference::vec_dot_q2_k_q8_k,
        Q3_K => reference::vec_dot_q3_k_q8_k,
        Q4_K => reference::vec_dot_q4_k_q8_k,
        Q5_K => reference::vec_dot_q5_k_q8_k,
        Q6_K => reference::vec_dot_q6_k_q8_k,
        MXFP4 => reference::vec_dot_mxfp4_q8_0,
        MXFP8 => reference::vec_dot_mxfp8_f32,
        INT8_PC => reference::vec_dot_int8_pc_q8_0,
        FP8_PC => reference::vec_dot_fp8_pc_f32,
        NF4 => reference::vec_dot_nf4_f32,
        INT4_G128 => reference::vec_dot_int4_g128_q8_1,
        W8A8 => reference::vec_dot_w8a8_int8_pc,
        W8A16 => reference::vec_dot_w8a16_int16_pc,
        Q8_1 | Q8_K | INT16_PC => return None,
    })
}

fn build(isa: Isa) -> Kernels {
    let mut k = Kernels {
        isa,
        vec_dot: [None; N],
        quantize: [None; N],
        tile: [None; N],
        packed: [None; N],
        simd_dot: [false; N],
        simd_quant: [false; N],
    };
    for ty in GgmlType::ALL {
        let s = slot(ty);
        k.vec_dot[s] = scalar_vec_dot(ty);
        k.quantize[s] = match ty {
            // Activations are quantized as llama.cpp's x86 build does (not with the weight codec).
            GgmlType::Q8_0 => Some(reference::quantize_row_q8_0 as QuantizeFn),
            GgmlType::Q8_1 => Some(reference::quantize_row_q8_1 as QuantizeFn),
            GgmlType::INT8_PC => Some(reference::quantize_row_int8_pc as QuantizeFn),
            _ => ty.spec().from_f32,
        };
        #[cfg(target_arch = "x86_64")]
        if isa == Isa::Avx2 {
            if let Some(f) = crate::x86::avx2::vec_dot(ty) {
                (k.vec_dot[s], k.simd_dot[s]) = (Some(f), true);
            }
            k.tile[s] = crate::x86::avx2::tile(ty);
            k.packed[s] = crate::x86::avx2::packed(ty);
            if let Some(f) = crate::x86::avx2::quantize(ty) {
                (k.quantize[s], k.simd_quant[s]) = (Some(f), true);
            }
        }
    }
    k
}

impl Kernels {
    /// The table for `isa`, built on first use; an error if this CPU lacks it.
    pub fn get(isa: Isa) -> Result<&'static Kernels, KernelError> {
        static SCALAR: OnceLock<Kernels> = OnceLock::new();
        static AVX2: OnceLock<Kernels> = OnceLock::new();
        if !isa.is_available() {
            return Err(KernelError::IsaUnavailable(isa));
        }
        Ok(match isa {
            Isa::Scalar => SCALAR.get_or_init(|| build(Isa::Scalar)),
            Isa::Avx2 => AVX2.get_or_init(|| build(Isa::Avx2)),
        })
    }

    /// The instruction set these kernels were built for.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Dot of a weight row of type `ty` with an activation row of `ty.spec().vec_dot_type`.
    pub fn vec_dot(&self, ty: GgmlType) -> Option<VecDotFn> {
        self.vec_dot[slot(ty)]
    }

    /// Quantizer into activation format `ty`.
    pub fn quantize(&self, ty: GgmlType) -> Option<QuantizeFn> {
        self.quantize[slot(ty)]
    }

    /// The multi-row x multi-token kernel for weight type `ty`, where one is written (else
    /// callers loop over [`Kernels::vec_dot`], which gives the same numbers).
    pub fn tile(&self, ty: GgmlType) -> Option<TileKernel> {
        self.tile[slot(ty)]
    }

    /// Whether weights of type `ty` have kernels over the 8-row interleaved layout
    /// ([`crate::PackedWeight`]) with this instruction set.
    pub fn has_packed(&self, ty: GgmlType) -> bool {
        self.packed[slot(ty)].is_some()
    }

    pub(crate) fn packed(&self, ty: GgmlType) -> Option<PackedKernel> {
        self.packed[slot(ty)]
    }

    /// Whether `vec_dot(ty)` is a SIMD kernel (false: the scalar reference).
    pub fn is_simd_vec_dot(&self, ty: GgmlType) -> bool {
        self.simd_dot[slot(ty)]
    }

    /// Whether `quantize(ty)` is a SIMD kernel.
    pub fn is_simd_quantize(&self, ty: GgmlType) -> bool {
        self.simd_quant[slot(ty)]
    }
}

//! F32, F16 and BF16 "codecs": plain little-endian arrays, block length 1.

use half::f16;

use super::check_blocks;

/// f16 bits to f32 (exact).
#[inline]
pub fn f16_to_f32(bits: u16) -> f32 {
    f16::from_bits(bits).to_f32()
}

/// f32 to f16 bits, round to nearest even (ggml's `GGML_FP32_TO_FP16`, F16C's `vcvtps2ph`).
#[inline]
pub fn f32_to_f16(v: f32) -> u16 {
    f16::from_f32(v).to_bits()
}

/// bf16 bits to f32 (exact: the high half of the f32).
#[inline]
pub fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

/// f32 to bf16 bits exactly as ggml's `ggml_compute_fp32_to_bf16`: NaN becomes a quiet NaN
/// keeping its sign and top payload bits, everything else rounds to nearest even (overflowing to
/// infinity).
#[inline]
pub fn f32_to_bf16(v: f32) -> u16 {
    let u = v.to_bits();
    if (u & 0x7fff_ffff) > 0x7f80_0000 {
        return ((u >> 16) | 64) as u16;
    }
    (u.wrapping_add(0x7fff + ((u >> 16) & 1)) >> 16) as u16
}

pub(crate) fn f32_to_f32(src: &[u8], dst: &mut [f32]) {
    check_blocks(src.len(), dst.len(), 4, 1);
    for (d, s) in dst.iter_mut().zip(src.chunks_exact(4)) {
        *d = f32::from_le_bytes([s[0], s[1], s[2], s[3]]);
    }
}

pub(crate) fn f32_from_f32(src: &[f32], dst: &mut [u8]) {
    check_blocks(dst.len(), src.len(), 4, 1);
    for (d, s) in dst.chunks_exact_mut(4).zip(src) {
        d.copy_from_slice(&s.to_le_bytes());
    }
}

pub(crate) fn f16_to_f32s(src: &[u8], dst: &mut [f32]) {
    check_blocks(src.len(), dst.len(), 2, 1);
    for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *d = f16_to_f32(u16::from_le_bytes([s[0], s[1]]));
    }
}

pub(crate) fn f16_from_f32s(src: &[f32], dst: &mut [u8]) {
    check_blocks(dst.len(), src.len(), 2, 1);
    for (d, s) in dst.chunks_exact_mut(2).zip(src) {
        d.copy_from_slice(&f32_to_f16(*s).to_le_bytes());
    }
}

pub(crate) fn bf16_to_f32s(src: &[u8], dst: &mut [f32]) {
    check_blocks(src.len(), dst.len(), 2, 1);
    for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *d = bf16_to_f32(u16::from_le_bytes([s[0], s[1]]));
    }
}

pub(crate) fn bf16_from_f32s(src: &[f32], dst: &mut [u8]) {
    check_blocks(dst.len(), src.len(), 2, 1);
    for (d, s) in dst.chunks_exact_mut(2).zip(src) {
        d.copy_from_slice(&f32_to_bf16(*s).to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_rounds_to_nearest_even_and_quiets_nan() {
        assert_eq!(f32_to_bf16(1.0), 0x3f80);
        // 1 + 2^-8 is exactly halfway between two bf16 values: ties to even (down).
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8000)), 0x3f80);
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f81_8000)), 0x3f82);
        assert_eq!(f32_to_bf16(f32::from_bits(0x7f80_0001)), 0x7fc0);
        assert_eq!(f32_to_bf16(f32::INFINITY), 0x7f80);
        assert_eq!(bf16_to_f32(0xc000), -2.0);
    }
}

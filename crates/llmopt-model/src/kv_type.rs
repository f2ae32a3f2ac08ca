//! The element type of the KV cache: f16 (llama.cpp's default) or a block format of
//! `llmopt_tensor::FORMATS` (Q8_0, Q4_0, as llama.cpp's `-ctk`/`-ctv`), chosen when a cache is made.

use std::{fmt, str::FromStr};

use llmopt_tensor::GgmlType;

/// The types a KV cache can hold: their rows, bytes and codecs are `FORMATS` rows.
pub const KV_TYPES: [GgmlType; 3] = [GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_0];

/// One of [`KV_TYPES`]; f16 by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KvType(GgmlType);

impl Default for KvType {
    fn default() -> Self {
        Self::F16
    }
}

impl KvType {
    /// f16 keys and values (llama.cpp's default cache).
    pub const F16: KvType = KvType(GgmlType::F16);

    /// `ty` as a KV type, if the cache supports it.
    pub fn new(ty: GgmlType) -> Option<Self> {
        KV_TYPES.contains(&ty).then_some(Self(ty))
    }

    /// The format of the cache's rows.
    pub fn ggml(self) -> GgmlType {
        self.0
    }

    /// Bytes of `n` values; `n` must be whole blocks (head sizes are multiples of 32; the model
    /// checks this when the type is set, see `ModelConfig::with_kv_type`).
    pub fn row_bytes(self, n: usize) -> usize {
        let s = self.0.spec();
        n / s.block_len * s.block_bytes
    }

    /// Values per block of the format.
    pub fn block_len(self) -> usize {
        self.0.spec().block_len
    }

    /// Chunk sizes of the Walsh-Hadamard rotations llama.cpp applies around a quantized cache of
    /// heads of `head_dim` (`attn_rot_k`/`attn_rot_v`: only when the head is a multiple of 64):
    /// queries and keys in chunks of the largest power of two dividing the head (at least 64),
    /// values and the attention output in chunks of 64. None for f16.
    pub fn rotation(self, head_dim: usize) -> Option<(usize, usize)> {
        if !self.0.is_quantized() || !head_dim.is_multiple_of(64) {
            return None;
        }
        let mut k = 64;
        while head_dim.is_multiple_of(2 * k) {
            k *= 2;
        }
        Some((k, 64))
    }

    /// The names [`KvType::from_str`] accepts, for help and error messages.
    pub fn names() -> String {
        KV_TYPES.iter().map(|t| t.name()).collect::<Vec<_>>().join(", ")
    }
}

impl fmt::Display for KvType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.name())
    }
}

/// An unknown KV type name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown KV cache type '{0}' (supported: {names})", names = KvType::names())]
pub struct UnknownKvType(pub String);

impl FromStr for KvType {
    type Err = UnknownKvType;

    /// ggml's type names, any case: `f16`, `q8_0`, `q4_0`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KV_TYPES
            .iter()
            .find(|t| t.name().eq_ignore_ascii_case(s))
            .map(|&t| Self(t))
            .ok_or_else(|| UnknownKvType(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_bytes_and_parsing() {
        let q8: KvType = "q8_0".parse().unwrap();
        assert_eq!(
            (q8.ggml(), q8.row_bytes(64), q8.to_string()),
            (GgmlType::Q8_0, 68, "q8_0".into())
        );
        assert_eq!("Q4_0".parse::<KvType>().unwrap().row_bytes(256), 144);
        assert_eq!(KvType::default().row_bytes(64), 128);
        let e = "q4_k".parse::<KvType>().unwrap_err().to_string();
        assert!(e.contains("f16, q8_0, q4_0"), "{e}");
        assert_eq!(KvType::new(GgmlType::Q4_K), None);
        assert_eq!(q8.rotation(64), Some((64, 64)));
        assert_eq!(q8.rotation(256), Some((256, 64)));
        assert_eq!(q8.rotation(192), Some((64, 64)));
        assert_eq!(q8.rotation(96), None);
        assert_eq!(KvType::F16.rotation(128), None);
    }
}
